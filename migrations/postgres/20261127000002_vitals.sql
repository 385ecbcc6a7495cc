-- Minute and hour summaries of each device's vitals, kept longer than raw samples.
CREATE TABLE vitals_aggregates (
    device_id TEXT             NOT NULL,
    series    TEXT             NOT NULL,
    span      TEXT             NOT NULL,
    start_ms  BIGINT           NOT NULL,
    min       DOUBLE PRECISION NOT NULL,
    max       DOUBLE PRECISION NOT NULL,
    sum       DOUBLE PRECISION NOT NULL,
    count     BIGINT           NOT NULL,
    PRIMARY KEY (device_id, series, span, start_ms)
);

-- Alerts raised by the device rules; one row per episode of a rule.
CREATE TABLE alerts (
    id           TEXT   PRIMARY KEY,
    device_id    TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    priority     TEXT   NOT NULL,
    since_ms     BIGINT NOT NULL,
    raised_ms    BIGINT NOT NULL,
    resolved_ms  BIGINT
);
CREATE INDEX alerts_by_device ON alerts (device_id, raised_ms);

-- Minute and hour summaries of each device's vitals, kept longer than raw samples.
CREATE TABLE vitals_aggregates (
    device_id TEXT             NOT NULL,
    series    TEXT             NOT NULL,
    span      TEXT             NOT NULL,
    start_ms  INTEGER           NOT NULL,
    min       REAL NOT NULL,
    max       REAL NOT NULL,
    sum       REAL NOT NULL,
    count     INTEGER           NOT NULL,
    PRIMARY KEY (device_id, series, span, start_ms)
) STRICT;

-- Alerts raised by the device rules; one row per episode of a rule.
CREATE TABLE alerts (
    id           TEXT   PRIMARY KEY,
    device_id    TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    priority     TEXT   NOT NULL,
    since_ms     INTEGER NOT NULL,
    raised_ms    INTEGER NOT NULL,
    resolved_ms  INTEGER
) STRICT;
CREATE INDEX alerts_by_device ON alerts (device_id, raised_ms);

-- A clinician's acknowledgement of an alert (the first one counts).
CREATE TABLE alert_acks (
    alert_id TEXT    PRIMARY KEY REFERENCES alerts (id),
    by_id    TEXT    NOT NULL,
    at_ms    BIGINT  NOT NULL
);

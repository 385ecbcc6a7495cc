-- API v1 (issue 14): a consult's reason and end notes (PHI: sealed at rest
-- like chat text), when it started and ended, and the request ids that make
-- requestConsult idempotent (the same caller's id gives the same consult,
-- after a restart too). Rows projected before this read back as an empty
-- reason until their actor projects them again (on its next start).
ALTER TABLE consults ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE consults ADD COLUMN notes TEXT;
ALTER TABLE consults ADD COLUMN started_ms INTEGER;
ALTER TABLE consults ADD COLUMN ended_ms INTEGER;

CREATE TABLE consult_requests (
    requester  TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    consult_id TEXT    NOT NULL,
    patient_id TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    PRIMARY KEY (requester, request_id)
) STRICT;

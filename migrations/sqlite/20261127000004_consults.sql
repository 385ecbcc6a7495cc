-- Queryable projections of the consult journals (the journal stays the
-- source of truth; the actor rewrites these rows idempotently).
CREATE TABLE consults (
    id           TEXT   PRIMARY KEY,
    patient_id   TEXT   NOT NULL,
    clinician_id TEXT,
    status       TEXT   NOT NULL,
    requested_ms INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX consults_by_patient ON consults (patient_id, requested_ms);

CREATE TABLE chat_messages (
    consult_id        TEXT   NOT NULL,
    seq               INTEGER NOT NULL,
    author_role       TEXT   NOT NULL,
    author_id         TEXT   NOT NULL,
    client_message_id TEXT   NOT NULL,
    text              TEXT   NOT NULL,
    at_ms             INTEGER NOT NULL,
    PRIMARY KEY (consult_id, seq)
) STRICT;

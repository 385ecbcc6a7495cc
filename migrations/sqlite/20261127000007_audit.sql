-- The PHI audit trail: append-only and hash-chained. Each entry's hash covers
-- its fields and the previous entry's hash, so changing, removing or
-- reordering an entry breaks every link after it (`cardio audit verify`).
-- Entries name records and fields, never their values (no PHI in here).
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    subject    TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    patient_id TEXT,
    fields     TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
) STRICT;
CREATE INDEX audit_by_patient ON audit_log (patient_id, seq);

-- The chain's head, one row: appends lock it, so entries chain in order.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
) STRICT;
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

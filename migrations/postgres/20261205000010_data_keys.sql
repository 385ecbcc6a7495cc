-- Encryption at rest (issue 13): the data keys PHI is sealed with, each
-- stored only wrapped (encrypted) by a key-encryption key that is kept
-- outside the database (the key file or a KMS), named by kek_id. One per
-- node start; `cardio keys rotate` re-wraps them under a new KEK.
-- Sealed columns (src/store/sealed.rs): journal and snapshot payloads, chat
-- text, alert acknowledgement notes, ECG beats, alarm settings. This keeps the
-- promise of 20261127000003_people.sql: PHI is encrypted at rest (patients and
-- clinicians rows hold only ids and times).
CREATE TABLE data_keys (
    id         TEXT    PRIMARY KEY,
    kek_id     TEXT    NOT NULL,
    wrapped    BYTEA   NOT NULL,
    node       TEXT    NOT NULL,
    created_ms BIGINT  NOT NULL
);

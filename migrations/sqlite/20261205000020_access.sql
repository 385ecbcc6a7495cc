-- Access lifecycle (issue 13): accounts' state (deactivated, sessions ended
-- before a time, last activity for the inactivity logoff), revoked tokens by
-- id, and break-glass grants. Shared by every node through the database.
CREATE TABLE accounts (
    subject        TEXT    PRIMARY KEY,
    -- The role the subject last authenticated with.
    role           TEXT    NOT NULL DEFAULT '',
    disabled       INTEGER NOT NULL DEFAULT 0,
    -- Tokens issued (iat, Unix seconds) before this are dead: set by a
    -- logoff, a revocation of every session, and a deactivation.
    not_before_s   INTEGER NOT NULL DEFAULT 0,
    last_active_ms INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL
) STRICT;

CREATE TABLE revoked_tokens (
    jti        TEXT    PRIMARY KEY,
    subject    TEXT    NOT NULL,
    -- The token's own expiry: the row may go after it.
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX revoked_tokens_by_subject ON revoked_tokens (subject);

CREATE TABLE break_glass (
    id           TEXT    PRIMARY KEY,
    clinician_id TEXT    NOT NULL,
    patient_id   TEXT    NOT NULL REFERENCES patients (id),
    -- The clinician's reason: may hold PHI; never logged.
    reason       TEXT    NOT NULL,
    granted_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX break_glass_by_pair ON break_glass (patient_id, clinician_id);

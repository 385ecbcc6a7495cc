-- Event journal: what each actor applied, in order, once per message.
CREATE TABLE journal (
    actor_id   TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    -- The bus message (or client request) that caused the event: applying
    -- the same message twice is refused, which makes redelivery harmless.
    message_id TEXT   NOT NULL,
    -- Ownership epoch of the writer (fencing, for clustered nodes); 0 on a single node.
    epoch      BIGINT NOT NULL DEFAULT 0,
    payload    BYTEA  NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (actor_id, seq),
    UNIQUE (actor_id, message_id)
);

-- Latest snapshot per actor; recovery loads it, then the journal after it.
CREATE TABLE snapshots (
    actor_id TEXT   PRIMARY KEY,
    seq      BIGINT NOT NULL,
    payload  BYTEA  NOT NULL,
    at_ms    BIGINT NOT NULL
);

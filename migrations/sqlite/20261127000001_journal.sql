-- Event journal: what each actor applied, in order, once per message.
CREATE TABLE journal (
    actor_id   TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    -- The bus message (or client request) that caused the event: applying
    -- the same message twice is refused, which makes redelivery harmless.
    message_id TEXT    NOT NULL,
    -- Ownership epoch of the writer (fencing, for clustered nodes); 0 on a single node.
    epoch      INTEGER NOT NULL DEFAULT 0,
    payload    BLOB    NOT NULL,
    at_ms      INTEGER NOT NULL,
    PRIMARY KEY (actor_id, seq),
    UNIQUE (actor_id, message_id)
) STRICT;

-- Latest snapshot per actor; recovery loads it, then the journal after it.
CREATE TABLE snapshots (
    actor_id TEXT    PRIMARY KEY,
    seq      INTEGER NOT NULL,
    payload  BLOB    NOT NULL,
    at_ms    INTEGER NOT NULL
) STRICT;

-- Issue 15, item 4: a device stream may journal the samples of several
-- pushes (those that queued while the previous one was written) as one
-- entry. The entry's message_id is the first push's request id; the others
-- are kept here, each with the entry's sequence, so that a retry of any of
-- them is still known as the duplicate it is once the stream no longer
-- holds it in memory. Written in the transaction of the entry it names,
-- and pruned with it (raw sample retention).
CREATE TABLE journal_aliases (
    actor_id   TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    seq        BIGINT  NOT NULL,
    at_ms      BIGINT  NOT NULL,
    PRIMARY KEY (actor_id, message_id)
);
CREATE INDEX journal_aliases_by_time ON journal_aliases (at_ms);

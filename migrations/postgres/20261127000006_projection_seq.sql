-- The journal sequence a consult row reflects: a row is only ever replaced by
-- one that reflects a later sequence, so a stalled former owner of the
-- consult's shard cannot put an older state back (fencing for projections).
ALTER TABLE consults ADD COLUMN journal_seq BIGINT NOT NULL DEFAULT 0;

-- Issue 16: raw sample retention without scanning the journal.
-- Device streams' entries in time order (partial: consult and session
-- journals are kept for good and stay out of it), so that each hourly
-- prune reads only the rows past the cutoff, in bounded batches, instead of
-- every entry of every actor. The predicate is the one prune_journal
-- writes for the `device/` prefix, literally (a partial index is used only
-- by a query whose WHERE implies its own).
CREATE INDEX journal_device_by_time ON journal (at_ms, actor_id, seq)
    WHERE actor_id >= 'device/' AND actor_id < 'device0';

-- Encryption at rest (issue 13): vitals values are PHI. A keyed node writes
-- an aggregate's min, max and sum, and an alert's reading and threshold,
-- sealed into `sealed` (JSON arrays, AES-256-GCM under a data key, bound to
-- the row) and leaves the numeric columns at 0 / NULL. Rows written before
-- are sealed by the node at start (or `cardio keys encrypt-existing`).
ALTER TABLE vitals_aggregates ADD COLUMN sealed BLOB;
ALTER TABLE alerts ADD COLUMN sealed BLOB;

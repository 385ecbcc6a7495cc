-- The audit chain is keyed (HMAC-SHA-256 under the audit key, issue 13).
-- 0: its entries still carry the unkeyed SHA-256 hashes of earlier versions;
-- the first node started with a key re-hashes them once (after checking them)
-- and sets 1. A database without entries is keyed from its first entry.
ALTER TABLE audit_head ADD COLUMN keyed INTEGER NOT NULL DEFAULT 0;
UPDATE audit_head SET keyed = 1 WHERE seq = 0;

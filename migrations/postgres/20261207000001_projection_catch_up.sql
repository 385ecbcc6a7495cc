-- Issue 16: recovery proportional to state, not history.
-- The last journal sequence whose effects (the consult row and every chat
-- line up to it) the projection holds, written in the same transaction as
-- them: a consult's start catches up from here in batched statements
-- instead of re-inserting its whole chat. 0 for rows projected before this:
-- their next start catches up once from the beginning (idempotent inserts).
ALTER TABLE consults ADD COLUMN projected_seq BIGINT NOT NULL DEFAULT 0;

-- A retried chat line whose client message id left the consult's in-memory
-- window is found here (one indexed lookup), not by keeping the whole chat.
CREATE INDEX chat_messages_by_client ON chat_messages (consult_id, author_role, author_id, client_message_id);

-- Issue 15: a chat line past the consult's in-memory window of recent lines
-- is checked against the projection (Store::chat_seq_of: is it a retry of
-- an older line?). That lookup asks for the first match in sequence order;
-- with `seq` outside the index, SQLite's planner ordered by the primary key
-- (consult_id, seq) instead and read every line of the consult on each new
-- line: chat slowed as a consult grew (64 consults of ~470 lines: 2,500
-- lines/s, against 7,000/s under 256 lines). With `seq` last in the index,
-- the lookup is one seek in it, in order, on either database.
DROP INDEX chat_messages_by_client;
CREATE INDEX chat_messages_by_client ON chat_messages (consult_id, author_role, author_id, client_message_id, seq);

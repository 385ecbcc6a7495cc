-- Issue 15: changes of access are counted. A node reads this one number (at
-- most every half second) instead of each subject's rows on every request:
-- a subject's cached access state stays good while the count it was read
-- under stands, so a change is still seen within half a second without the
-- bus. Triggers count every change that can refuse a token, whoever makes
-- it (the API, an operator's SQL): a deactivation or reactivation, sessions
-- ended, a revoked token, a row deleted. Activity (last_active_ms, role) is
-- not a change of access, and is not counted.
CREATE TABLE access_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    v  INTEGER NOT NULL
) STRICT;
INSERT INTO access_version (id, v) VALUES (1, 0);

CREATE TRIGGER accounts_inserted AFTER INSERT ON accounts
    WHEN NEW.disabled <> 0 OR NEW.not_before_s > 0
BEGIN
    UPDATE access_version SET v = v + 1 WHERE id = 1;
END;
CREATE TRIGGER accounts_updated AFTER UPDATE OF disabled, not_before_s ON accounts
    WHEN OLD.disabled IS NOT NEW.disabled OR OLD.not_before_s IS NOT NEW.not_before_s
BEGIN
    UPDATE access_version SET v = v + 1 WHERE id = 1;
END;
CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts
BEGIN
    UPDATE access_version SET v = v + 1 WHERE id = 1;
END;
CREATE TRIGGER revoked_tokens_inserted AFTER INSERT ON revoked_tokens
BEGIN
    UPDATE access_version SET v = v + 1 WHERE id = 1;
END;
CREATE TRIGGER revoked_tokens_updated AFTER UPDATE ON revoked_tokens
BEGIN
    UPDATE access_version SET v = v + 1 WHERE id = 1;
END;
CREATE TRIGGER revoked_tokens_deleted AFTER DELETE ON revoked_tokens
BEGIN
    UPDATE access_version SET v = v + 1 WHERE id = 1;
END;

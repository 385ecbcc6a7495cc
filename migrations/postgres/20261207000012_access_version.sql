-- Issue 15: changes of access are counted. A node reads this one number (at
-- most every half second) instead of each subject's rows on every request:
-- a subject's cached access state stays good while the count it was read
-- under stands, so a change is still seen within half a second without the
-- bus. Triggers count every change that can refuse a token, whoever makes
-- it (the API, an operator's SQL): a deactivation or reactivation, sessions
-- ended, a revoked token, a row deleted. Activity (last_active_ms, role) is
-- not a change of access, and is not counted.
CREATE TABLE access_version (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    v  BIGINT   NOT NULL
);
INSERT INTO access_version (id, v) VALUES (1, 0);

CREATE FUNCTION count_access_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE access_version SET v = v + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER accounts_inserted AFTER INSERT ON accounts FOR EACH ROW
    WHEN (NEW.disabled <> 0 OR NEW.not_before_s > 0)
    EXECUTE FUNCTION count_access_change();
CREATE TRIGGER accounts_updated AFTER UPDATE OF disabled, not_before_s ON accounts FOR EACH ROW
    WHEN (OLD.disabled IS DISTINCT FROM NEW.disabled OR OLD.not_before_s IS DISTINCT FROM NEW.not_before_s)
    EXECUTE FUNCTION count_access_change();
CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts FOR EACH STATEMENT
    EXECUTE FUNCTION count_access_change();
CREATE TRIGGER revoked_tokens_changed AFTER INSERT OR UPDATE OR DELETE ON revoked_tokens FOR EACH STATEMENT
    EXECUTE FUNCTION count_access_change();

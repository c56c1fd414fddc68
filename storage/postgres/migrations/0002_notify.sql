-- Live changes: every change to what the tracker reads sends a small JSON
-- notification on the channel "chihaya", which the tracker LISTENs to. It
-- then reads the changed row again, so a payload only names the row:
--
--   {"table":"users","op":"upsert","id":5}
--   {"table":"torrents","op":"delete","id":7}
--   {"table":"tokens","op":"upsert","user_id":5,"torrent_id":7}
--   {"table":"whitelist","op":"upsert"}
--
-- Notifications are sent when the transaction commits, never for one that
-- rolls back.

-- chihaya_notify_row is the row-level trigger of users, torrents and
-- tokens; its argument is the table's name in the payload. An UPDATE that
-- changes a row's key announces the old key as deleted too.
CREATE FUNCTION chihaya_notify_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    kind     text := TG_ARGV[0];
    old_key  jsonb;
    new_key  jsonb;
BEGIN
    IF kind = 'tokens' THEN
        IF TG_OP <> 'INSERT' THEN
            old_key := jsonb_build_object('user_id', OLD.user_id, 'torrent_id', OLD.torrent_id);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            new_key := jsonb_build_object('user_id', NEW.user_id, 'torrent_id', NEW.torrent_id);
        END IF;
    ELSE
        IF TG_OP <> 'INSERT' THEN
            old_key := jsonb_build_object('id', OLD.id);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            new_key := jsonb_build_object('id', NEW.id);
        END IF;
    END IF;
    IF old_key IS NOT NULL AND old_key IS DISTINCT FROM new_key THEN
        PERFORM pg_notify('chihaya', (jsonb_build_object('table', kind, 'op', 'delete') || old_key)::text);
    END IF;
    IF new_key IS NOT NULL THEN
        PERFORM pg_notify('chihaya', (jsonb_build_object('table', kind, 'op', 'upsert') || new_key)::text);
    END IF;
    RETURN NULL;
END
$$;

-- chihaya_notify_whitelist is a statement-level trigger: the tracker
-- reloads the whole whitelist, so one notification per statement is
-- enough.
CREATE FUNCTION chihaya_notify_whitelist() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chihaya', jsonb_build_object('table', 'whitelist',
        'op', CASE WHEN TG_OP IN ('DELETE', 'TRUNCATE') THEN 'delete' ELSE 'upsert' END)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_insert_delete_notify AFTER INSERT OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION chihaya_notify_row('users');
CREATE TRIGGER users_update_notify AFTER UPDATE ON users
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)
    EXECUTE FUNCTION chihaya_notify_row('users');

-- Only the columns the tracker reads: a site that adds columns of its own
-- to torrents (a name, a size) does not wake the tracker when they change.
CREATE TRIGGER torrents_insert_delete_notify AFTER INSERT OR DELETE ON torrents
    FOR EACH ROW EXECUTE FUNCTION chihaya_notify_row('torrents');
CREATE TRIGGER torrents_update_notify AFTER UPDATE ON torrents
    FOR EACH ROW WHEN (
        (OLD.id, OLD.info_hash, OLD.info_hash_v2, OLD.leech, OLD.up_multiplier, OLD.down_multiplier)
        IS DISTINCT FROM
        (NEW.id, NEW.info_hash, NEW.info_hash_v2, NEW.leech, NEW.up_multiplier, NEW.down_multiplier))
    EXECUTE FUNCTION chihaya_notify_row('torrents');

-- The tracker itself adds to tokens.downloaded at every flush; only a
-- change of key or of expired matters to it, so only those notify.
CREATE TRIGGER tokens_insert_delete_notify AFTER INSERT OR DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION chihaya_notify_row('tokens');
CREATE TRIGGER tokens_update_notify AFTER UPDATE ON tokens
    FOR EACH ROW WHEN (
        (OLD.user_id, OLD.torrent_id, OLD.expired) IS DISTINCT FROM (NEW.user_id, NEW.torrent_id, NEW.expired))
    EXECUTE FUNCTION chihaya_notify_row('tokens');

CREATE TRIGGER client_whitelist_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON client_whitelist
    FOR EACH STATEMENT EXECUTE FUNCTION chihaya_notify_whitelist();

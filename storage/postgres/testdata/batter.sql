-- A batter-shaped site (wafflesfm/batter, Django): the tables the tracker
-- reads as Django creates them, plus what the site adds for the tracker:
-- an info_hash column, the tracker-owned statistics tables, and triggers
-- that tell the tracker about changes. Nothing of the site's own tables
-- changes but the added column.

-- Django's tables (only the columns that matter here).
CREATE TABLE auth_user (
    id        serial PRIMARY KEY,
    username  varchar(30) NOT NULL UNIQUE,
    is_active boolean NOT NULL DEFAULT true
);
CREATE TABLE profiles_profile (
    id        serial PRIMARY KEY,
    user_id   integer NOT NULL UNIQUE REFERENCES auth_user (id) DEFERRABLE INITIALLY DEFERRED,
    trackerid varchar(32) UNIQUE
);
CREATE TABLE torrents_torrent (
    id         serial PRIMARY KEY,
    name       text NOT NULL,
    pieces     text NOT NULL UNIQUE,
    is_private boolean NOT NULL DEFAULT true,
    length     integer
);

-- Added for the tracker: the SHA-1 of the bencoded info dictionary, set by
-- the site when it saves a torrent.
ALTER TABLE torrents_torrent ADD COLUMN info_hash bytea UNIQUE;

-- Tracker-owned tables.
CREATE TABLE tracker_user_stats (
    user_id    integer PRIMARY KEY REFERENCES auth_user (id) ON DELETE CASCADE,
    uploaded   bigint NOT NULL DEFAULT 0,
    downloaded bigint NOT NULL DEFAULT 0
);
CREATE TABLE tracker_torrent_stats (
    torrent_id  integer PRIMARY KEY REFERENCES torrents_torrent (id) ON DELETE CASCADE,
    seeders     integer NOT NULL DEFAULT 0,
    leechers    integer NOT NULL DEFAULT 0,
    snatches    integer NOT NULL DEFAULT 0,
    balance     bigint NOT NULL DEFAULT 0,
    last_action timestamptz
);
CREATE TABLE tracker_peer (
    torrent_id integer NOT NULL REFERENCES torrents_torrent (id) ON DELETE CASCADE,
    user_id    integer NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    peer_id    bytea NOT NULL,
    ip         inet,
    port       integer NOT NULL,
    uploaded   bigint NOT NULL,
    downloaded bigint NOT NULL,
    remaining  bigint NOT NULL,
    active     boolean NOT NULL,
    announces  integer NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    user_agent text NOT NULL,
    PRIMARY KEY (torrent_id, user_id, peer_id)
);
CREATE TABLE tracker_snatch (
    id         bigserial PRIMARY KEY,
    user_id    integer NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    torrent_id integer NOT NULL REFERENCES torrents_torrent (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL,
    ip         inet
);

-- Live changes: the tracker reads the user or torrent again by id, so the
-- triggers send only that. A user is a row of auth_user and one of
-- profiles_profile, so both notify with the auth_user id.
CREATE FUNCTION tracker_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF TG_TABLE_NAME = 'auth_user' THEN
        PERFORM pg_notify('chihaya', json_build_object('table', 'users', 'id', r.id)::text);
    ELSIF TG_TABLE_NAME = 'profiles_profile' THEN
        PERFORM pg_notify('chihaya', json_build_object('table', 'users', 'id', r.user_id)::text);
    ELSE
        PERFORM pg_notify('chihaya', json_build_object('table', 'torrents', 'id', r.id)::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tracker_notify AFTER INSERT OR DELETE OR UPDATE OF is_active ON auth_user
    FOR EACH ROW EXECUTE FUNCTION tracker_notify();
CREATE TRIGGER tracker_notify AFTER INSERT OR DELETE OR UPDATE OF trackerid ON profiles_profile
    FOR EACH ROW EXECUTE FUNCTION tracker_notify();
CREATE TRIGGER tracker_notify AFTER INSERT OR DELETE OR UPDATE OF info_hash ON torrents_torrent
    FOR EACH ROW EXECUTE FUNCTION tracker_notify();

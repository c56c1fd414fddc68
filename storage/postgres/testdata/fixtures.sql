-- Fixtures on the default schema: one row for every case the driver and
-- the tracker's rules tell apart. Ids are explicit so tests can name them.
INSERT INTO users (id, passkey, can_leech, enabled, protected) VALUES
    (1, 'alice000000000000000000000000000', true,  true,  false),
    (2, 'bob00000000000000000000000000000', true,  true,  false),
    (3, 'noleech0000000000000000000000000', false, true,  false),
    (4, 'protected00000000000000000000000', true,  true,  true),
    (5, 'disabled000000000000000000000000', true,  false, false);
SELECT setval(pg_get_serial_sequence('users', 'id'), 100);

INSERT INTO torrents (id, info_hash, info_hash_v2, leech, up_multiplier, down_multiplier) VALUES
    (1, decode(repeat('01', 20), 'hex'), NULL, 'normal', 1, 1),
    (2, decode(repeat('02', 20), 'hex'), NULL, 'free', 1, 1),
    (3, decode(repeat('03', 20), 'hex'), NULL, 'neutral', 1, 1),
    (4, decode(repeat('04', 20), 'hex'), decode(repeat('05', 32), 'hex'), 'normal', 1, 1),
    (5, decode(repeat('06', 20), 'hex'), NULL, 'normal', 2, 0.5);
SELECT setval(pg_get_serial_sequence('torrents', 'id'), 100);

INSERT INTO torrent_stats (torrent_id, snatches, last_seeded) VALUES (1, 10, NULL), (3, 30, '2024-01-01T00:00:00Z');
INSERT INTO user_stats (user_id, uploaded, downloaded) VALUES (1, 1000, 500);

-- bob holds a token for the normal torrent; alice's for the free one is
-- used up.
INSERT INTO tokens (user_id, torrent_id, expired, downloaded) VALUES (2, 1, false, 0), (1, 2, true, 100);

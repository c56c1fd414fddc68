-- Fixtures shared by both dialects: one row per case the loader
-- distinguishes. Passkeys are 32 characters, like Gazelle's.

-- 1 alice: enabled, may leech, visible.
-- 2 bob: disabled (not loaded).
-- 3 carol: enabled, leeching disabled (ratio watch).
-- 4 dave: hidden (Visible='0'), so protected.
-- 5 erin: IP 127.0.0.1, the site's convention for a protected account.
-- 6 frank: unconfirmed (not loaded).
INSERT INTO users_main (ID, Username, Email, torrent_pass, can_leech, Visible, IP, Enabled) VALUES
  (1, 'alice', 'alice@example.org', 'alicealicealicealicealicealice01', 1, '1', '10.0.0.1', '1'),
  (2, 'bob',   'bob@example.org',   'bobbobbobbobbobbobbobbobbobbob02', 1, '1', '10.0.0.2', '2'),
  (3, 'carol', 'carol@example.org', 'carolcarolcarolcarolcarolcarol03', 0, '1', '10.0.0.3', '1'),
  (4, 'dave',  'dave@example.org',  'davedavedavedavedavedavedaveda04', 1, '0', '10.0.0.4', '1'),
  (5, 'erin',  'erin@example.org',  'erinerinerinerinerinerinerinei05', 1, '1', '127.0.0.1', '1'),
  (6, 'frank', 'frank@example.org', 'frankfrankfrankfrankfrankfrank06', 1, '1', '10.0.0.6', '0');

-- 1 normal, 2 freeleech, 3 neutral leech, 4 without an info hash (skipped),
-- 5 normal (in the ops dialect it has no torrents_leech_stats row, so it is
-- not loaded, as in Ocelot).
INSERT INTO torrents (ID, GroupID, info_hash, FreeTorrent, FreeLeechType, Size) VALUES
  (1, 10, UNHEX(REPEAT('01', 20)), '0', '0', 1000000),
  (2, 10, UNHEX(REPEAT('02', 20)), '1', '1', 2000000),
  (3, 11, UNHEX(REPEAT('03', 20)), '2', '0', 3000000),
  (4, 11, '', '0', '0', 4000000),
  (5, 12, UNHEX(REPEAT('05', 20)), '0', '0', 5000000);

-- alice holds an active token for torrent 1 and a used one for torrent 2;
-- carol's token is for a torrent that was deleted.
INSERT INTO users_freeleeches (UserID, TorrentID, Time, Expired, Downloaded) VALUES
  (1, 1, '2024-01-01 00:00:00', 0, 100),
  (1, 2, '2024-01-01 00:00:00', 1, 200),
  (3, 99, '2024-01-01 00:00:00', 0, 0);

INSERT INTO xbt_client_whitelist (peer_id, vstring) VALUES
  ('-TR', 'Transmission'),
  ('-qB', 'qBittorrent');

-- A peer left over from the previous tracker run.
INSERT INTO xbt_files_users (uid, fid, peer_id, active, useragent, ip, mtime) VALUES
  (1, 1, '-TR3000-000000000001', 1, 'Transmission/3.00', '10.0.0.1', 1700000000);

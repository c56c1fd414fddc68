-- ops dialect: counters live in the leech-stats tables.
INSERT INTO users_leech_stats (UserID, Uploaded, Downloaded) VALUES
  (1, 1000, 500), (2, 0, 0), (3, 0, 0), (4, 0, 0), (5, 0, 0), (6, 0, 0);

-- Seeders and Leechers left over from the previous run (Start zeroes them).
INSERT INTO torrents_leech_stats (TorrentID, Seeders, Leechers, Snatched, Balance) VALUES
  (1, 5, 6, 10, 0),
  (2, 1, 0, 20, 0),
  (3, 0, 2, 30, 0),
  (4, 0, 0, 0, 0);

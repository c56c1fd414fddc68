-- what dialect: counters are columns of users_main and torrents.
UPDATE users_main SET Uploaded = 1000, Downloaded = 500 WHERE ID = 1;

-- Seeders and Leechers left over from the previous run (Start zeroes them).
UPDATE torrents SET Seeders = 5, Leechers = 6, Snatched = 10 WHERE ID = 1;
UPDATE torrents SET Seeders = 1, Leechers = 0, Snatched = 20 WHERE ID = 2;
UPDATE torrents SET Seeders = 0, Leechers = 2, Snatched = 30 WHERE ID = 3;
UPDATE torrents SET Snatched = 50 WHERE ID = 5;

-- The tables the gazelle driver touches, as Orpheus (OPS) Gazelle with
-- Ocelot 2.x has them: transfer totals in users_leech_stats, swarm counters
-- in torrents_leech_stats. Written for the driver's tests from the project's
-- Gazelle integration notes (tables, keys, strict-mode traps); only the
-- columns that matter are kept, plus the NOT NULL columns without a default
-- that break naive upserts in strict SQL mode, and the foreign keys.

CREATE TABLE users_main (
  ID int NOT NULL AUTO_INCREMENT,
  Username varchar(20) NOT NULL,
  Email varchar(255) NOT NULL,
  torrent_pass char(32) NOT NULL,
  can_leech tinyint NOT NULL DEFAULT 1,
  Visible enum('0','1','yes','no') NOT NULL DEFAULT '1',
  IP varchar(15) NOT NULL DEFAULT '0.0.0.0',
  Enabled enum('0','1','2','unconfirmed','enabled','disabled','banned') NOT NULL DEFAULT '0',
  PRIMARY KEY (ID),
  KEY torrent_pass (torrent_pass)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE users_leech_stats (
  UserID int NOT NULL,
  Uploaded bigint NOT NULL DEFAULT 0,
  Downloaded bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (UserID),
  CONSTRAINT uls_user_fk FOREIGN KEY (UserID) REFERENCES users_main (ID) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE torrents (
  ID int NOT NULL AUTO_INCREMENT,
  GroupID int NOT NULL,
  UserID int DEFAULT NULL,
  info_hash binary(20) NOT NULL,
  FreeTorrent enum('0','1','2') NOT NULL DEFAULT '0',
  FreeLeechType enum('0','1','2','3','4','5','6','7') NOT NULL DEFAULT '0',
  Size bigint NOT NULL,
  PRIMARY KEY (ID),
  UNIQUE KEY info_hash (info_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE torrents_leech_stats (
  TorrentID int NOT NULL,
  Seeders int unsigned NOT NULL DEFAULT 0,
  Leechers int unsigned NOT NULL DEFAULT 0,
  Snatched int NOT NULL DEFAULT 0,
  Balance bigint NOT NULL DEFAULT 0,
  last_action datetime DEFAULT NULL,
  PRIMARY KEY (TorrentID),
  KEY tls_seeders_idx (Seeders),
  KEY tls_last_action_idx (last_action),
  CONSTRAINT tls_torrent_fk FOREIGN KEY (TorrentID) REFERENCES torrents (ID) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE users_freeleeches (
  UserID int NOT NULL,
  TorrentID int NOT NULL,
  Time datetime NOT NULL,
  Expired tinyint(1) NOT NULL DEFAULT 0,
  Downloaded bigint NOT NULL DEFAULT 0,
  Uses int NOT NULL DEFAULT 1,
  PRIMARY KEY (UserID, TorrentID),
  KEY uf_time (Time),
  KEY uf_expired_time (Expired, Time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE xbt_client_whitelist (
  id int NOT NULL AUTO_INCREMENT,
  peer_id varchar(20) DEFAULT NULL,
  vstring varchar(200) DEFAULT '',
  PRIMARY KEY (id),
  UNIQUE KEY peer_id (peer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE xbt_files_users (
  uid int NOT NULL,
  active tinyint(1) NOT NULL DEFAULT 1,
  announced int NOT NULL DEFAULT 0,
  completed tinyint(1) NOT NULL DEFAULT 0,
  downloaded bigint NOT NULL DEFAULT 0,
  remaining bigint NOT NULL DEFAULT 0,
  uploaded bigint NOT NULL DEFAULT 0,
  upspeed int NOT NULL DEFAULT 0,
  downspeed int NOT NULL DEFAULT 0,
  corrupt bigint NOT NULL DEFAULT 0,
  timespent int NOT NULL DEFAULT 0,
  useragent varchar(51) NOT NULL DEFAULT '',
  connectable tinyint NOT NULL DEFAULT 1,
  peer_id binary(20) NOT NULL DEFAULT '',
  fid int NOT NULL,
  ip varchar(15) NOT NULL DEFAULT '',
  mtime int NOT NULL DEFAULT 0,
  PRIMARY KEY (fid, uid, peer_id),
  KEY xfu_uid_active (uid, active),
  KEY xfu_mtime (mtime)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE xbt_snatched (
  xbt_snatched_id int NOT NULL AUTO_INCREMENT,
  uid int NOT NULL DEFAULT 0,
  tstamp int NOT NULL,
  fid int NOT NULL,
  IP varchar(15) NOT NULL,
  seedtime int NOT NULL DEFAULT 0,
  PRIMARY KEY (xbt_snatched_id),
  KEY xs_fid (fid),
  KEY xs_tstamp (tstamp),
  KEY xs_uid_tstamp (uid, tstamp)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

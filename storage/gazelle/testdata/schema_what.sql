-- The tables the gazelle driver touches, as What.CD Gazelle with Ocelot 1.0
-- has them: transfer totals are columns of users_main, swarm counters
-- columns of torrents, both beside NOT NULL columns without a default
-- (Username, GroupID) that make Ocelot's upserts fail in strict SQL mode.
-- Written for the driver's tests from the integration notes; only the
-- columns that matter are kept.

CREATE TABLE users_main (
  ID int unsigned NOT NULL AUTO_INCREMENT,
  Username varchar(20) NOT NULL,
  Email varchar(255) NOT NULL,
  Uploaded bigint unsigned NOT NULL DEFAULT 0,
  Downloaded bigint unsigned NOT NULL DEFAULT 0,
  torrent_pass char(32) NOT NULL,
  can_leech tinyint NOT NULL DEFAULT 1,
  Visible enum('1','0') NOT NULL DEFAULT '1',
  IP varchar(15) NOT NULL DEFAULT '0.0.0.0',
  Enabled enum('0','1','2') NOT NULL DEFAULT '0',
  PRIMARY KEY (ID),
  KEY torrent_pass (torrent_pass)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE TABLE torrents (
  ID int NOT NULL AUTO_INCREMENT,
  GroupID int NOT NULL,
  UserID int DEFAULT NULL,
  info_hash blob NOT NULL,
  FreeTorrent enum('0','1','2') NOT NULL DEFAULT '0',
  FreeLeechType enum('0','1','2','3','4','5','6','7') NOT NULL DEFAULT '0',
  Size bigint NOT NULL,
  Seeders int NOT NULL DEFAULT 0,
  Leechers int NOT NULL DEFAULT 0,
  Snatched int unsigned NOT NULL DEFAULT 0,
  balance bigint NOT NULL DEFAULT 0,
  last_action datetime DEFAULT NULL,
  PRIMARY KEY (ID),
  UNIQUE KEY InfoHash (info_hash(40)),
  KEY Seeders (Seeders),
  KEY last_action (last_action)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE TABLE users_freeleeches (
  UserID int NOT NULL,
  TorrentID int NOT NULL,
  Time datetime NOT NULL,
  Expired tinyint(1) NOT NULL DEFAULT 0,
  Downloaded bigint NOT NULL DEFAULT 0,
  Uses int NOT NULL DEFAULT 1,
  PRIMARY KEY (UserID, TorrentID),
  KEY Time (Time),
  KEY Expired_Time (Expired, Time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE TABLE xbt_client_whitelist (
  id int NOT NULL AUTO_INCREMENT,
  peer_id varchar(20) DEFAULT NULL,
  vstring varchar(200) DEFAULT '',
  PRIMARY KEY (id),
  UNIQUE KEY peer_id (peer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE TABLE xbt_files_users (
  uid int NOT NULL,
  active tinyint(1) NOT NULL DEFAULT 1,
  announced int NOT NULL DEFAULT 0,
  completed tinyint(1) NOT NULL DEFAULT 0,
  downloaded bigint NOT NULL DEFAULT 0,
  remaining bigint NOT NULL DEFAULT 0,
  uploaded bigint NOT NULL DEFAULT 0,
  upspeed int unsigned NOT NULL DEFAULT 0,
  downspeed int unsigned NOT NULL DEFAULT 0,
  corrupt bigint NOT NULL DEFAULT 0,
  timespent int unsigned NOT NULL DEFAULT 0,
  useragent varchar(51) NOT NULL DEFAULT '',
  connectable tinyint NOT NULL DEFAULT 1,
  peer_id binary(20) NOT NULL DEFAULT '',
  fid int NOT NULL,
  ip varchar(15) NOT NULL DEFAULT '',
  mtime int NOT NULL DEFAULT 0,
  PRIMARY KEY (peer_id, fid, uid),
  KEY remaining_idx (remaining),
  KEY fid_idx (fid),
  KEY mtime_idx (mtime),
  KEY uid_active (uid, active)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE TABLE xbt_snatched (
  uid int NOT NULL DEFAULT 0,
  tstamp int NOT NULL,
  fid int NOT NULL,
  IP varchar(15) NOT NULL,
  KEY fid (fid),
  KEY tstamp (tstamp),
  KEY uid_tstamp (uid, tstamp)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

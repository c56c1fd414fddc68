package postgres

// rowStatements are the built-in writes as per-row statements: what an
// operator would write to get the default behaviour from custom SQL, and
// what README.md shows. The write tests run once with the built-in bulk
// path and once with these, so the two must agree.
var rowStatements = map[string]string{
	keyWriteUsers: `INSERT INTO user_stats AS s (user_id, uploaded, downloaded)
		SELECT @user_id, @uploaded, @downloaded
		WHERE EXISTS (SELECT 1 FROM users WHERE id = @user_id)
		ON CONFLICT (user_id) DO UPDATE SET
			uploaded = s.uploaded + EXCLUDED.uploaded,
			downloaded = s.downloaded + EXCLUDED.downloaded`,
	keyWriteTorrents: `INSERT INTO torrent_stats AS s (torrent_id, seeders, leechers, snatches, balance, last_seeded)
		SELECT @torrent_id, @seeders, @leechers, @snatches, @balance, @last_seeded
		WHERE EXISTS (SELECT 1 FROM torrents WHERE id = @torrent_id)
		ON CONFLICT (torrent_id) DO UPDATE SET
			seeders = EXCLUDED.seeders, leechers = EXCLUDED.leechers,
			snatches = s.snatches + EXCLUDED.snatches, balance = EXCLUDED.balance,
			last_seeded = greatest(s.last_seeded, EXCLUDED.last_seeded)`,
	keyWritePeers: `INSERT INTO peers AS p (torrent_id, user_id, peer_id, ip, port, uploaded, downloaded, remaining,
			corrupt, up_speed, down_speed, time_spent, announces, active, user_agent, updated_at)
		SELECT @torrent_id, @user_id, @peer_id, @ip, @port, @uploaded, @downloaded, @remaining,
			@corrupt, @up_speed, @down_speed, @time_spent, @announces, @active, @user_agent, @updated_at
		WHERE EXISTS (SELECT 1 FROM torrents WHERE id = @torrent_id) AND EXISTS (SELECT 1 FROM users WHERE id = @user_id)
		ON CONFLICT (torrent_id, user_id, peer_id) DO UPDATE SET
			ip = EXCLUDED.ip, port = EXCLUDED.port, uploaded = EXCLUDED.uploaded, downloaded = EXCLUDED.downloaded,
			remaining = EXCLUDED.remaining, corrupt = EXCLUDED.corrupt, up_speed = EXCLUDED.up_speed,
			down_speed = EXCLUDED.down_speed, time_spent = EXCLUDED.time_spent, announces = EXCLUDED.announces,
			active = EXCLUDED.active, user_agent = EXCLUDED.user_agent, updated_at = EXCLUDED.updated_at`,
	keyWritePeersLight: `INSERT INTO peers AS p (torrent_id, user_id, peer_id, ip, port, uploaded, downloaded, remaining,
			corrupt, up_speed, down_speed, time_spent, announces, active, user_agent, updated_at)
		SELECT @torrent_id, @user_id, @peer_id, @ip, @port, @uploaded, @downloaded, @remaining,
			@corrupt, @up_speed, @down_speed, @time_spent, @announces, @active, @user_agent, @updated_at
		WHERE EXISTS (SELECT 1 FROM torrents WHERE id = @torrent_id) AND EXISTS (SELECT 1 FROM users WHERE id = @user_id)
		ON CONFLICT (torrent_id, user_id, peer_id) DO UPDATE SET
			up_speed = 0, down_speed = 0, time_spent = EXCLUDED.time_spent,
			announces = EXCLUDED.announces, updated_at = EXCLUDED.updated_at`,
	keyWriteSnatches: `INSERT INTO snatches (user_id, torrent_id, at, ip)
		SELECT @user_id, @torrent_id, @at, @ip
		WHERE EXISTS (SELECT 1 FROM users WHERE id = @user_id) AND EXISTS (SELECT 1 FROM torrents WHERE id = @torrent_id)`,
	keyWriteTokens: `UPDATE tokens SET downloaded = downloaded + @downloaded
		WHERE user_id = @user_id AND torrent_id = @torrent_id`,
	keyExpireTokens: `UPDATE tokens SET expired = true
		WHERE user_id = @user_id AND torrent_id = @torrent_id AND NOT expired`,
}

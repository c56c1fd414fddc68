
-- scrape: ARGV is now (ms) and lifetime (ms). The answer is "" for a swarm
-- that does not exist, else complete, incomplete and snatches as
-- big-endian uint32. The reaper runs it too: it is the sweep with an
-- answer.

local exists, seeders, snatches = sweep(tonumber(ARGV[1]), tonumber(ARGV[2]))
if not exists then return '' end
local npeers = redis.call('HLEN', H) - META
return struct.pack('>I4I4I4', seeders, npeers - seeders, snatches)

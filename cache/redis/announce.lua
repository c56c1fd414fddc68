
-- announce: ARGV is now (ms), lifetime (ms), key TTL (ms), peer key, event
-- ("" none or started, "s" stopped, "c" completed, "p" paused), seeder ("1"
-- or ""), the 16 bytes of totals, the IPv4 endpoint (6 bytes or ""), the
-- IPv6 endpoint (18 bytes or ""), numwant and a random seed.
--
-- The answer is one string, so that the tracker parses it without an
-- allocation per peer: a flags byte (1: the peer was known, 2: this
-- announce counted its snatch), complete, incomplete and snatches as
-- big-endian uint32, the number of IPv4 peers as a uint16, the previous 16
-- bytes of totals when known, then the IPv4 endpoints (30 bytes each) and
-- the IPv6 endpoints (42 bytes each), each a peer key, an address and a
-- port.

local now, life, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local id, ev, seeder, totals = ARGV[4], ARGV[5], ARGV[6] == '1', ARGV[7]
local n4, n6 = ARGV[8], ARGV[9]
local numwant = tonumber(ARGV[10])
local want4, want6 = #n4 > 0, #n6 > 0
local stopped = ev == 's'
local adds = (want4 or want6) and not stopped
local nowstr = ARGV[1]

local exists, seeders, snatches, low = sweep(now, life)
if not exists then
  if not adds then
    -- Neither a departing peer nor one without an address may create a
    -- swarm.
    return struct.pack('>BI4I4I4I2', 0, 0, 0, 0, 0)
  end
  seeders, snatches = 0, 0
  redis.call('HSET', H, 'o', nowstr)
elseif adds and now < low then
  -- Another instance's clock runs ahead of this one's: keep "o" a lower
  -- bound of the endpoint about to be stamped with now.
  redis.call('HSET', H, 'o', nowstr)
end

local rec = redis.call('HGET', H, id)
local prev = ''
if rec then prev = sub(rec, 2, 17) end
local f -- the peer's flags when it stays in the swarm
local newrec -- and its record
local snatched = false

if stopped then
  if rec then
    local f0 = byte(rec, 1)
    local e4, e6 = endpoints(rec, f0)
    local s = side(f0)
    if e4 then redis.call('ZREM', Z[1 + s], id .. e4) end
    if e6 then redis.call('ZREM', Z[3 + s], id .. e6) end
    redis.call('HDEL', H, id)
    if band(f0, SEEDER) ~= 0 then seeders = seeders - 1 end
  end
elseif rec or adds then
  local f0, e4, e6 = 0, nil, nil
  if rec then
    f0 = byte(rec, 1)
    e4, e6 = endpoints(rec, f0)
  end
  f = band(f0, bnot(SEEDER + PAUSED))
  if seeder then f = bor(f, SEEDER) end
  if ev == 'p' then f = bor(f, PAUSED) end
  if ev == 'c' and band(f, SNATCHED) == 0 then
    f = bor(f, SNATCHED)
    snatches = snatches + 1
    snatched = true
  end
  if band(f0, SEEDER) ~= band(f, SEEDER) then
    if band(f, SEEDER) ~= 0 then seeders = seeders + 1 else seeders = seeders - 1 end
  end
  local from, to = side(f0), side(f)
  -- add puts a member into a sorted set. A member that is new there may
  -- have created the key, which then has no TTL yet: it gets a full one
  -- (see the TTLs below).
  local function add(z, score, member)
    if redis.call('ZADD', z, score, member) == 1 then
      redis.call('PEXPIRE', z, ttl)
    end
  end
  -- move puts the endpoint of one family where the new flags say, with a
  -- fresh last-seen time when this announce came over that family, and
  -- with the old one when it only moves between the sorted sets.
  local function move(base, old, new)
    local zf, zt = Z[base + from], Z[base + to]
    if new then
      if old and (old ~= new or zf ~= zt) then redis.call('ZREM', zf, id .. old) end
      add(zt, nowstr, id .. new)
      return new
    end
    if old and zf ~= zt then
      local seen = redis.call('ZSCORE', zf, id .. old)
      redis.call('ZREM', zf, id .. old)
      add(zt, seen, id .. old)
    end
    return old
  end
  if want4 then
    e4 = move(1, e4, n4)
    f = bor(f, HAS4)
  else
    e4 = move(1, e4, nil)
  end
  if want6 then
    e6 = move(3, e6, n6)
    f = bor(f, HAS6)
  else
    e6 = move(3, e6, nil)
  end
  newrec = record(f, totals, e4, e6)
end

if newrec then
  redis.call('HSET', H, id, newrec, 's', seeders, 'c', snatches, 't', nowstr)
else
  redis.call('HSET', H, 's', seeders, 'c', snatches, 't', nowstr)
end
local npeers = redis.call('HLEN', H) - META
-- TTLs are a backstop for swarms nobody touches until the reaper comes,
-- in Redis's time: two lifetimes after the last refresh, which happens
-- once half a lifetime has passed (one PTTL per announce rather than five
-- PEXPIREs). All keys are refreshed together and a key that gains a member
-- gets a full TTL at once (add above), so no sorted set can vanish before
-- the hash whose records point into it.
if redis.call('PTTL', H) < ttl - life / 2 then
  for i = 1, 4 do redis.call('PEXPIRE', Z[i], ttl) end
  redis.call('PEXPIRE', H, ttl)
end

local p4, p6 = {}, {}
if f and numwant > 0 and (want4 or want6) then
  math.randomseed(tonumber(ARGV[11]))
  local s = side(f)
  -- pick appends up to numwant endpoints of one family to out, chosen
  -- uniformly: a downloader draws from both sets, leaving itself out; the
  -- others draw from the downloaders only.
  local function pick(base, me, out)
    local zd, zs = Z[base], Z[base + 1]
    if s == 1 then
      local all = redis.call('ZRANDMEMBER', zd, numwant)
      for i = 1, #all do out[#out + 1] = all[i] end
      return
    end
    local nd = redis.call('ZCARD', zd) - 1 -- less the peer itself
    local ns = redis.call('ZCARD', zs)
    local kd, ks = nd, ns
    if nd + ns > numwant then
      -- Draw how many of the numwant come from each set as a uniform
      -- sample of their union would.
      kd, ks = 0, 0
      local rd, rs = nd, ns
      for _ = 1, numwant do
        if math.random() * (rd + rs) < rd then
          kd, rd = kd + 1, rd - 1
        else
          ks, rs = ks + 1, rs - 1
        end
      end
    end
    if kd > 0 then
      -- One spare, in case the draw holds the peer itself; if it does
      -- not, one drawn at random goes back (the draw comes in set order,
      -- so dropping the last one would favour the first ones).
      local got = redis.call('ZRANDMEMBER', zd, kd + 1)
      local skip = 0
      for i = 1, #got do
        if got[i] == me then skip = i end
      end
      if skip == 0 and #got > kd then skip = math.random(#got) end
      for i = 1, #got do
        if i ~= skip then out[#out + 1] = got[i] end
      end
    end
    if ks > 0 then
      local got = redis.call('ZRANDMEMBER', zs, ks)
      for i = 1, #got do out[#out + 1] = got[i] end
    end
  end
  if want4 then pick(1, id .. n4, p4) end
  if want6 then pick(3, id .. n6, p6) end
end

local flags = 0
if rec then flags = 1 end
if snatched then flags = flags + 2 end
return struct.pack('>BI4I4I4I2', flags, seeders, npeers - seeders, snatches, #p4) ..
  prev .. table.concat(p4) .. table.concat(p6)

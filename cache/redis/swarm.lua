-- Shared by announce.lua and sweep.lua, which are this file followed by
-- their own body. Redis runs a script atomically, so nothing here needs a
-- lock, and every key a script touches belongs to one swarm and so, through
-- the hash tag, to one cluster slot.
--
-- A peer is identified by its key: the user id (4 bytes, big-endian; 0 on
-- an open tracker) followed by the peer id (20 bytes), so that two users
-- sending the same peer id are two peers.
--
-- KEYS[1] is the swarm hash: one field per peer key, holding the peer's
-- record, and the swarm's own fields "s" (seeders), "c" (snatches), "t"
-- (last announce, ms) and "o" (a lower bound of every endpoint's last-seen
-- time, ms). KEYS[2..5] are sorted sets of endpoints scored by last-seen
-- time: IPv4 of peers that download, IPv4 of the others (seeders and
-- partial seeds), then the same two for IPv6. A member is the peer key
-- followed by the address and the port, which is what an answer hands out,
-- so picking peers needs no lookup in the hash.
--
-- A record is one flags byte, the 16 bytes of the last reported totals as
-- the tracker sent them (Lua numbers are doubles and cannot hold 64-bit
-- totals), then the IPv4 endpoint (6 bytes) if set and the IPv6 endpoint
-- (18 bytes) if set.

local H = KEYS[1]
local Z = {KEYS[2], KEYS[3], KEYS[4], KEYS[5]}
local META = 4 -- fields of the hash that are not peers
local KEYLEN = 24 -- user id and peer id

local HAS4, HAS6, SEEDER, PAUSED, SNATCHED = 1, 2, 4, 8, 16
local band, bor, bnot = bit.band, bit.bor, bit.bnot
local sub, byte = string.sub, string.byte

-- endpoints returns the IPv4 and IPv6 endpoints of a record (nil when
-- unset).
local function endpoints(rec, f)
  local e4, e6
  local p = 18
  if band(f, HAS4) ~= 0 then
    e4 = sub(rec, p, p + 5)
    p = p + 6
  end
  if band(f, HAS6) ~= 0 then
    e6 = sub(rec, p, p + 17)
  end
  return e4, e6
end

local function record(f, totals, e4, e6)
  return string.char(f) .. totals .. (e4 or '') .. (e6 or '')
end

-- side is 0 for a peer that downloads and 1 for the others: the offset of
-- its sorted set within a family.
local function side(f)
  if band(f, SEEDER + PAUSED) == 0 then return 0 end
  return 1
end

-- oldest returns the lowest last-seen time over all endpoints, or now.
local function oldest(now)
  local o = now
  for i = 1, 4 do
    local first = redis.call('ZRANGE', Z[i], 0, 0, 'WITHSCORES')
    if first[2] then o = math.min(o, tonumber(first[2])) end
  end
  return o
end

-- sweep drops the endpoints last seen more than life ago, and the peers
-- left with none, then deletes the swarm if it has been empty for a
-- lifetime since its last announce. It returns whether the swarm exists,
-- its seeders, its snatches and the lower bound of last-seen times. Until
-- the oldest endpoint can have expired it costs one HMGET.
local function sweep(now, life)
  local m = redis.call('HMGET', H, 's', 'c', 't', 'o')
  if not m[3] then return false end
  local seeders, snatches, touched, low = tonumber(m[1]), tonumber(m[2]), tonumber(m[3]), tonumber(m[4])
  -- A clock that went backwards expires nothing, hence ">" on differences.
  if now - low > life then
    local cutoff = '(' .. string.format('%.0f', now - life)
    for i = 1, 4 do
      local stale = redis.call('ZRANGEBYSCORE', Z[i], '-inf', cutoff)
      local fam = HAS4
      if i > 2 then fam = HAS6 end
      for j = 1, #stale, 1000 do
        redis.call('ZREM', Z[i], unpack(stale, j, math.min(j + 999, #stale)))
      end
      for _, ep in ipairs(stale) do
        local id = sub(ep, 1, KEYLEN)
        local rec = redis.call('HGET', H, id)
        if rec then
          local f = byte(rec, 1)
          local e4, e6 = endpoints(rec, f)
          -- Only the endpoint the record still holds counts; a member
          -- that is not it cannot exist, but checking is cheap.
          if fam == HAS4 and e4 and id .. e4 == ep then
            f, e4 = band(f, bnot(HAS4)), nil
          elseif fam == HAS6 and e6 and id .. e6 == ep then
            f, e6 = band(f, bnot(HAS6)), nil
          end
          if band(f, HAS4 + HAS6) == 0 then
            redis.call('HDEL', H, id)
            if band(f, SEEDER) ~= 0 then seeders = seeders - 1 end
          else
            redis.call('HSET', H, id, record(f, sub(rec, 2, 17), e4, e6))
          end
        end
      end
    end
    low = oldest(now)
    redis.call('HSET', H, 's', seeders, 'o', string.format('%.0f', low))
  end
  if redis.call('HLEN', H) == META and now - touched > life then
    redis.call('DEL', H, Z[1], Z[2], Z[3], Z[4])
    return false
  end
  return true, seeders, snatches, low
end

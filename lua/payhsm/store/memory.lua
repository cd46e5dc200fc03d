--- In-memory store (tests, scenarios): the store interface every backend implements.
--
--   local store = require("payhsm.store.memory").new{clock = os.time}
--   store:get(key) -> value | nil                 values are Lua strings
--   store:put(key, value [, ttl_seconds])         overwrites; a TTL makes the key expire
--   store:delete(key)
--   store:ttl(key) -> seconds left | nil          nil: no such key or no expiry
--   store:update(key, fn [, {ttl = seconds}]) -> ...   atomic read-modify-write:
--        fn(old_value) returns new_value (nil deletes), then any extra results, which
--        update returns. A live key keeps its expiry, unless opts.ttl gives the written
--        value a new one (in the same atomic write: no moment without it). fn may raise;
--        nothing is written then. Backends shared between processes (redis) retry fn
--        until the write is not interleaved with another one.
--   store:keys(prefix) -> array of keys starting with prefix (sorted)
--   store:close()
-- Time comes from opts.clock (seconds, default os.time) so scenarios can advance it.
local compat = require "payhsm.compat"
local util = require "payhsm.util"

local M = {}
local Store = {}
Store.__index = Store

function M.new(opts)
  util.checkfields(opts, "store.memory.new", { "clock" })
  opts = opts or {}
  return setmetatable({ data = {}, expires = {}, clock = opts.clock or os.time }, Store)
end

function Store:_live(key)
  local e = self.expires[key]
  if e and self.clock() >= e then
    self.data[key], self.expires[key] = nil, nil
  end
  return self.data[key]
end

function Store:get(key)
  assert(type(key) == "string", "store: key must be a string")
  return self:_live(key)
end

-- Expired entries are dropped when read, and in a sweep every 4096 writes with a TTL, so
-- a long-running process holding short-lived entries (tokens, nonces) does not grow.
-- sweep() is public: every backend has it (sqlite deletes expired rows; redis expires
-- keys itself).
function Store:sweep() return self:_sweep() end

function Store:_sweep()
  local now = self.clock()
  for k, e in pairs(self.expires) do
    if now >= e then self.data[k], self.expires[k] = nil, nil end
  end
end

-- Sets key's expiry ttl seconds from now (nil: none); counts writes with a TTL for _sweep.
function Store:_expire_in(key, ttl)
  self.expires[key] = ttl and (self.clock() + ttl) or nil
  if ttl then
    self.ttl_writes = (self.ttl_writes or 0) + 1
    if self.ttl_writes % 4096 == 0 then self:_sweep() end
  end
end

local function check_ttl(ttl)
  assert(ttl == nil or (type(ttl) == "number" and ttl > 0 and ttl < math.huge),
    "store: ttl must be a positive number of seconds")
end

function Store:put(key, value, ttl)
  assert(type(key) == "string" and type(value) == "string", "store: key and value must be strings")
  check_ttl(ttl)
  self.data[key] = value
  self:_expire_in(key, ttl)
end

function Store:delete(key)
  self.data[key], self.expires[key] = nil, nil
end

function Store:ttl(key)
  if self:_live(key) == nil or not self.expires[key] then return nil end
  return self.expires[key] - self.clock()
end

function Store:update(key, fn, opts)
  util.checkfields(opts, "store:update", { "ttl" })
  local ttl = opts and opts.ttl
  check_ttl(ttl)
  local results = compat.pack(fn(self:_live(key)))
  local new = results[1]
  if new == nil then self:delete(key)
  else
    assert(type(new) == "string", "store: update must return a string or nil")
    self.data[key] = new
    if ttl then self:_expire_in(key, ttl) end
  end
  return compat.unpack(results, 2, results.n)
end

function Store:keys(prefix)
  local out = {}
  for k in pairs(self.data) do
    if k:sub(1, #prefix) == prefix and self:_live(k) then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

function Store:close() end

return M

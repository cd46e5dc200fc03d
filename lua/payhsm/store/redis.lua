--- Redis store (shared by every process that talks to the same Redis database).
--
--   local store = require("payhsm.store.redis").new{url = "redis://127.0.0.1:6379/0",
--                                                   prefix = "payhsm:", timeout_ms = 5000}
-- Same interface as payhsm.store.memory (get, put, delete, ttl, update, keys, close),
-- on the payhsm.redis C binding. Every key is stored under prefix .. key.
--
-- Time: Redis expires keys by its own clock, so TTLs here are real seconds and
-- opts.clock cannot move them (a scenario that advances its clock does not expire
-- redis keys). put() rounds a TTL up to whole seconds (SET ... EX); ttl() is what
-- Redis's TTL command reports.
-- update(key, fn) is optimistic: WATCH key, GET, fn, MULTI, SET (or DEL), EXEC. When
-- EXEC answers nil another client wrote the key in between, and fn runs again on the
-- new value, so fn must be free of side effects other than its results. A live key
-- keeps its expiry across update (SET ... KEEPTTL, Redis 6.0 or later).
local redis = require "payhsm.redis"
local compat = require "payhsm.compat"
local util = require "payhsm.util"

local M = {}
local Store = {}
Store.__index = Store

--- "redis://host:port/db" -> host, port, db (port 6379 and db 0 when left out).
function M.parse_url(url)
  local host, rest = tostring(url):match("^redis://([^:/]+)(.*)$")
  if not host then error("store.redis: url must be redis://host:port/db, got " .. tostring(url), 0) end
  local port, db = 6379, 0
  local p = rest:match("^:(%d+)")
  if p then
    port = tonumber(p)
    rest = rest:sub(#p + 2)
  end
  if rest ~= "" and rest ~= "/" then
    local d = rest:match("^/(%d+)$")
    if not d then error("store.redis: url must be redis://host:port/db, got " .. tostring(url), 0) end
    db = tonumber(d)
  end
  if port < 1 or port > 65535 then error("store.redis: bad port in " .. url, 0) end
  return host, port, db
end

-- Runs one command; raises on any failure (the store interface has no error returns).
function Store:_cmd(...)
  if not self.conn then error("store: redis store has been closed", 2) end
  local r, err, code = self.conn:command(...)
  if r == nil and err then error("store.redis: " .. err .. " (" .. code .. ")", 2) end
  return r
end

--- new{url =, prefix = "payhsm:", timeout_ms = 5000} -> store. Raises when Redis cannot be reached.
function M.new(opts)
  util.checkfields(opts, "store.redis.new", { "url", "prefix", "timeout_ms", "clock" })
  opts = opts or {}
  local host, port, db = M.parse_url(opts.url or "redis://127.0.0.1:6379/0")
  local conn, err = redis.connect(host, port, opts.timeout_ms or 5000)
  if not conn then error("store.redis: " .. err, 2) end
  local self = setmetatable({ conn = conn, prefix = opts.prefix or "payhsm:" }, Store)
  assert(type(self.prefix) == "string", "store.redis: prefix must be a string")
  if db ~= 0 then self:_cmd("SELECT", db) end
  return self
end

local function check_key(key)
  assert(type(key) == "string", "store: key must be a string")
end

-- Whole seconds for EX, rounded up (a TTL never ends early).
local function seconds(ttl)
  assert(type(ttl) == "number" and ttl > 0 and ttl < math.huge, "store: ttl must be a positive number of seconds")
  return compat.tointeger(math.ceil(ttl)) or error("store: ttl too large")
end

--- sweep(): nothing to do, Redis expires keys itself (the interface every backend has).
function Store:sweep() end

function Store:get(key)
  check_key(key)
  return self:_cmd("GET", self.prefix .. key)
end

function Store:put(key, value, ttl)
  assert(type(key) == "string" and type(value) == "string", "store: key and value must be strings")
  if ttl then
    self:_cmd("SET", self.prefix .. key, value, "EX", seconds(ttl))
  else
    self:_cmd("SET", self.prefix .. key, value)
  end
end

function Store:delete(key)
  check_key(key)
  self:_cmd("DEL", self.prefix .. key)
end

--- ttl(key) -> seconds left (Redis's whole seconds) | nil when the key is absent or has no expiry.
function Store:ttl(key)
  check_key(key)
  local t = self:_cmd("TTL", self.prefix .. key)
  if t < 0 then return nil end
  return t
end

--- update(key, fn [, {ttl =}]) -> fn's extra results (see the top for the retry loop). A
-- live key keeps its TTL (KEEPTTL) unless opts.ttl sets a new one (EX, in the same SET).
function Store:update(key, fn, opts)
  util.checkfields(opts, "store:update", { "ttl" })
  check_key(key)
  local ex = opts and opts.ttl and seconds(opts.ttl)
  local k = self.prefix .. key
  while true do
    self:_cmd("WATCH", k)
    local ok, r = pcall(function()
      local r = compat.pack(fn(self:_cmd("GET", k)))
      assert(r[1] == nil or type(r[1]) == "string", "store: update must return a string or nil")
      return r
    end)
    if not ok then
      if self.conn then self.conn:command("UNWATCH") end
      error(r, 0)
    end
    self:_cmd("MULTI")
    if r[1] == nil then
      self:_cmd("DEL", k)
    elseif ex then
      self:_cmd("SET", k, r[1], "EX", ex)
    else
      self:_cmd("SET", k, r[1], "KEEPTTL")
    end
    local done = self:_cmd("EXEC")
    if done ~= nil then return compat.unpack(r, 2, r.n) end
  end
end

-- A SCAN MATCH pattern that matches s literally (glob characters escaped).
local function glob_escape(s)
  return (s:gsub("[%*%?%[%]\\]", "\\%0"))
end

--- keys(prefix) -> sorted array of the live keys starting with prefix (store prefix removed).
function Store:keys(prefix)
  assert(type(prefix) == "string", "store: prefix must be a string")
  local full = self.prefix .. prefix
  local pattern = glob_escape(full) .. "*"
  local seen, out, cursor = {}, {}, "0"
  repeat
    local r = self:_cmd("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
    cursor = r[1]
    for _, k in ipairs(r[2]) do
      -- SCAN may return a key twice; the prefix check guards against any glob surprise.
      if not seen[k] and k:sub(1, #full) == full then
        seen[k] = true
        out[#out + 1] = k:sub(#self.prefix + 1)
      end
    end
  until cursor == "0"
  table.sort(out)
  return out
end

--- close(): idempotent.
function Store:close()
  if self.conn then
    self.conn:close()
    self.conn = nil
  end
end

Store.__close = Store.close
Store.__gc = Store.close

return M

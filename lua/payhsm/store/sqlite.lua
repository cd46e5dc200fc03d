--- SQLite store (durable, single node; several processes may share the file).
--
--   local store = require("payhsm.store.sqlite").new{path = "payhsm.db", clock = os.time,
--                                                    busy_timeout_ms = 10000}
-- Same interface as payhsm.store.memory (get, put, delete, ttl, update, keys, close).
--
-- One table: kv(k TEXT PRIMARY KEY, v BLOB, expires INTEGER NULL). Keys and values
-- are arbitrary byte strings; they go into SQL as hex blob literals (X'..') and come
-- back through hex(), so no byte (quote, NUL, invalid UTF-8) can break a statement.
-- Keys are therefore stored as blobs (the TEXT affinity leaves blobs alone), which
-- sort bytewise, as the memory store's table.sort does.
-- expires is an absolute time from opts.clock; a row is live while clock() < expires,
-- checked at read time. Expired rows are removed when the store is opened, when their
-- key is written again, and by a sweep (one DELETE) at the first write with a TTL after
-- each sweep_interval seconds (default 60, on opts.clock): a flood of short-lived
-- entries (challenges, nonces) leaves no rows on disk beyond one interval.
-- Files: a new database file is created with mode 0600 (core.write_secret_file: O_CREAT |
-- O_EXCL | O_NOFOLLOW) before sqlite opens it, and sqlite gives its -wal and -shm files the
-- database file's mode, so none of the three is readable by other users whatever the umask.
-- An existing file is opened as it is.
-- Durability: WAL journal with synchronous=FULL, so a put that has returned survives
-- a kill -9 of the process (and a power loss, as far as the disk honours fsync).
-- Sharing: busy_timeout lets a second process wait for the write lock; update() runs
-- in BEGIN IMMEDIATE ... COMMIT, so its read-modify-write is atomic across processes.
-- Reads are cached per connection: get() first asks PRAGMA data_version, which changes
-- whenever another connection (another process) has committed, and then drops the whole
-- cache; this connection's own writes update the cache as they commit. So a get() sees
-- every write committed before it, at the cost of one tiny query instead of a row read
-- and its hex decoding (the gateway's Get Key reads two rows per request).
local luasql = require "luasql.sqlite3"
local core = require "payhsm.core"
local compat = require "payhsm.compat"
local util = require "payhsm.util"

local M = {}
local Store = {}
Store.__index = Store

-- Byte <-> hex pair tables: gsub with a table does no Lua call per byte.
local TO_HEX, FROM_HEX = {}, {}
for b = 0, 255 do
  local c, h = string.char(b), ("%02X"):format(b)
  TO_HEX[c], FROM_HEX[h] = h, c
end

local function hex(s)
  return (s:gsub(".", TO_HEX))
end

local function unhex(h)
  return (h:gsub("..", FROM_HEX))
end

local function blob(s)
  return "X'" .. hex(s) .. "'"
end

-- Numbers into SQL: integers as such, other clock values with full precision.
local function num(x)
  assert(type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge,
    "store: times must be finite numbers")
  local i = compat.tointeger(x)
  if i then return ("%d"):format(i) end
  return ("%.17g"):format(x)
end

function Store:_exec(sql)
  if not self.conn then error("store: sqlite store has been closed", 2) end
  local res, err = self.conn:execute(sql)
  if res == nil then error("store.sqlite: " .. tostring(err) .. " (" .. sql:sub(1, 60) .. ")", 2) end
  return res
end

-- Runs a query and returns its rows as arrays (the cursor is always closed, so no
-- statement keeps a read snapshot open).
function Store:_rows(sql)
  local cur = self:_exec(sql)
  local rows = {}
  if type(cur) ~= "userdata" then return rows end
  while true do
    local row = cur:fetch({}, "n")
    if not row then break end
    rows[#rows + 1] = row
  end
  cur:close()
  return rows
end

--- new{path =, clock = os.time, busy_timeout_ms = 10000, sweep_interval = 60} -> store.
-- Raises if the file cannot be opened, or on an unknown option.
function M.new(opts)
  util.checkfields(opts, "store.sqlite.new", { "path", "clock", "busy_timeout_ms", "sweep_interval" })
  opts = opts or {}
  assert(type(opts.path) == "string", "store.sqlite: opts.path is required")
  if opts.path ~= "" and opts.path ~= ":memory:" and not opts.path:match("^file:") then
    -- FILE_EXISTS: opened as it is; any other failure is left to sqlite to report
    core.write_secret_file(opts.path, "")
  end
  local env = assert(luasql.sqlite3())
  local conn, err = env:connect(opts.path)
  if not conn then
    env:close()
    error("store.sqlite: cannot open " .. opts.path .. ": " .. tostring(err), 2)
  end
  local self = setmetatable({ env = env, conn = conn, clock = opts.clock or os.time, cache = {}, cached = 0,
    sweep_interval = opts.sweep_interval or 60 }, Store)
  self:_rows(("PRAGMA busy_timeout = %d"):format(opts.busy_timeout_ms or 10000))
  local mode = self:_rows("PRAGMA journal_mode = WAL")
  if not (mode[1] and tostring(mode[1][1]):lower() == "wal") then
    self:close()
    error("store.sqlite: cannot switch " .. opts.path .. " to WAL journal mode", 2)
  end
  self:_rows("PRAGMA synchronous = FULL")
  self:_exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB, expires INTEGER NULL)")
  self:_exec("CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires) WHERE expires IS NOT NULL")
  self:sweep()
  return self
end

--- sweep(): removes every expired row now (also run by writes with a TTL, at most once
-- per sweep_interval seconds).
function Store:sweep()
  local now = self.clock()
  self.swept = now
  self:_exec("DELETE FROM kv WHERE expires IS NOT NULL AND expires <= " .. num(now))
end

-- Called before a write with a TTL: sweeps when the last sweep is sweep_interval old.
function Store:_maybe_sweep()
  if self.clock() - (self.swept or 0) >= self.sweep_interval then self:sweep() end
end

local function check_key(key)
  assert(type(key) == "string", "store: key must be a string")
end

-- The live row of key: value, expires (nil, nil when absent or expired).
function Store:_live(key)
  local rows = self:_rows(("SELECT hex(v), expires FROM kv WHERE k = %s AND (expires IS NULL OR expires > %s)")
    :format(blob(key), num(self.clock())))
  local row = rows[1]
  if not row then return nil end
  return unhex(row[1]), tonumber(row[2])
end

-- ---- read cache (see the header) ----
local CACHE_MAX = 4096

-- Empties the cache when another connection has committed since the last look.
function Store:_fresh()
  local dv = self:_rows("PRAGMA data_version")[1]
  dv = dv and dv[1]
  if dv ~= self.data_version then
    self.cache, self.cached, self.data_version = {}, 0, dv
  end
end

-- Records what key now holds (value false: absent) with its expiry time.
function Store:_remember(key, value, expires)
  if self.cache[key] == nil then
    if self.cached >= CACHE_MAX then self.cache, self.cached = {}, 0 end
    self.cached = self.cached + 1
  end
  self.cache[key] = { value, expires }
end

function Store:get(key)
  check_key(key)
  self:_fresh()
  local c = self.cache[key]
  if not c then
    local v, expires = self:_live(key)
    c = { v or false, expires }
    self:_remember(key, c[1], expires)
  end
  if c[1] == false or (c[2] and c[2] <= self.clock()) then return nil end
  return c[1]
end

function Store:put(key, value, ttl)
  assert(type(key) == "string" and type(value) == "string", "store: key and value must be strings")
  local expires = ttl and self.clock() + ttl
  if ttl then self:_maybe_sweep() end
  self.cache[key] = nil -- until the write is known to have committed
  self:_exec(("INSERT OR REPLACE INTO kv (k, v, expires) VALUES (%s, %s, %s)")
    :format(blob(key), blob(value), expires and num(expires) or "NULL"))
  self:_remember(key, value, expires)
end

function Store:delete(key)
  check_key(key)
  self.cache[key] = nil
  self:_exec("DELETE FROM kv WHERE k = " .. blob(key))
  self:_remember(key, false, nil)
end

function Store:ttl(key)
  check_key(key)
  local v, expires = self:_live(key)
  if v == nil or expires == nil then return nil end
  return expires - self.clock()
end

--- update(key, fn [, {ttl =}]) -> fn's extra results. Inside BEGIN IMMEDIATE ... COMMIT: no
-- other connection can write between the read and the write. A live key keeps its expiry
-- unless opts.ttl sets a new one; fn raising (or returning something that is not a
-- string or nil) rolls back and re-raises.
function Store:update(key, fn, opts)
  util.checkfields(opts, "store:update", { "ttl" })
  check_key(key)
  local ttl = opts and opts.ttl
  assert(ttl == nil or (type(ttl) == "number" and ttl > 0 and ttl < math.huge),
    "store: ttl must be a positive number of seconds")
  if ttl then self:_maybe_sweep() end
  self.cache[key] = nil
  self:_exec("BEGIN IMMEDIATE")
  local new, expires
  local ok, results = pcall(function()
    local old
    old, expires = self:_live(key)
    if ttl then expires = self.clock() + ttl end
    local r = compat.pack(fn(old))
    new = r[1]
    if new == nil then
      self:_exec("DELETE FROM kv WHERE k = " .. blob(key))
    else
      assert(type(new) == "string", "store: update must return a string or nil")
      self:_exec(("INSERT OR REPLACE INTO kv (k, v, expires) VALUES (%s, %s, %s)")
        :format(blob(key), blob(new), expires and num(expires) or "NULL"))
    end
    self:_exec("COMMIT")
    return r
  end)
  if not ok then
    if self.conn then self.conn:execute("ROLLBACK") end
    error(results, 0)
  end
  self:_remember(key, new or false, new and expires)
  return compat.unpack(results, 2, results.n)
end

function Store:keys(prefix)
  assert(type(prefix) == "string", "store: prefix must be a string")
  local where = ("(expires IS NULL OR expires > %s)"):format(num(self.clock()))
  if #prefix > 0 then
    local p = blob(prefix)
    where = where .. (" AND k >= %s AND substr(k, 1, %d) = %s"):format(p, #prefix, p)
  end
  local out = {}
  for _, row in ipairs(self:_rows("SELECT hex(k) FROM kv WHERE " .. where .. " ORDER BY k")) do
    out[#out + 1] = unhex(row[1])
  end
  return out
end

--- close(): idempotent.
function Store:close()
  if self.conn then
    self.conn:close()
    self.conn = nil
  end
  if self.env then
    self.env:close()
    self.env = nil
  end
end

Store.__close = Store.close
Store.__gc = Store.close

return M

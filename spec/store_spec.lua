-- The store interface (lua/payhsm/store/memory.lua) over every backend: memory, sqlite
-- (a temporary file) and redis (a redis-server this spec starts on a free loopback
-- port and stops at the end; a missing redis-server fails the spec, nothing is skipped).
local socket = require "socket"

local function sleep(s) socket.sleep(s) end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

local redis_support = require "spec.support.redis"
local free_port = redis_support.free_port

local function tmpdb()
  local path = os.tmpname()
  os.remove(path)
  return path .. ".db"
end

local function rmdb(path)
  for _, suffix in ipairs { "", "-wal", "-shm", "-journal" } do os.remove(path .. suffix) end
end

local start_redis = redis_support.start

-- A clock the memory and sqlite stores read; specs move it.
local now = 1000000
local function clock() return now end

local redis_url, stop_redis
local serial = 0

-- Each backend: open() -> store, cleanup; fake_clock says whether TTLs follow clock().
local backends = {
  { name = "memory", fake_clock = true, open = function()
      return require("payhsm.store.memory").new { clock = clock }, function() end
    end },
  { name = "sqlite", fake_clock = true, open = function()
      local path = tmpdb()
      local store = require("payhsm.store.sqlite").new { path = path, clock = clock }
      return store, function() store:close() rmdb(path) end
    end },
  { name = "redis", fake_clock = false, open = function()
      serial = serial + 1
      local store = require("payhsm.store.redis").new { url = redis_url, prefix = "spec" .. serial .. ":" }
      return store, function() store:close() end
    end },
}

describe("store", function()
  setup(function() redis_url, stop_redis = start_redis() end)
  teardown(function() if stop_redis then stop_redis() end end)

  for _, b in ipairs(backends) do
    describe(b.name, function()
      local store, cleanup
      before_each(function()
        now = 1000000
        store, cleanup = b.open()
      end)
      after_each(function() cleanup() end)

      it("gets what was put, overwrites and deletes", function()
        assert.is_nil(store:get("a"))
        store:put("a", "1")
        assert.equal("1", store:get("a"))
        store:put("a", "2")
        assert.equal("2", store:get("a"))
        store:put("empty", "")
        assert.equal("", store:get("empty"))
        store:delete("a")
        assert.is_nil(store:get("a"))
        store:delete("never")
        assert.is_nil(store:get("never"))
      end)

      it("keeps binary values and keys byte for byte (NUL, quotes, every byte)", function()
        local all = {}
        for i = 0, 255 do all[#all + 1] = string.char(i) end
        all = table.concat(all)
        local values = { "a\0b", "\0", "it's \"quoted\"'; DROP TABLE kv; --", "X'00'", all, all:rep(40) }
        for i, v in ipairs(values) do
          store:put("k" .. i, v)
          assert.equal(v, store:get("k" .. i))
        end
        local key = "key\0with'quote\"and\255"
        store:put(key, all)
        assert.equal(all, store:get(key))
        assert.same({ key }, store:keys("key\0"))
        assert.equal(all, (store:update(key, function(old) return old .. "\0", old end)))
        assert.equal(all .. "\0", store:get(key))
      end)

      it("has no ttl for an absent key or a key put without one", function()
        assert.is_nil(store:ttl("absent"))
        store:put("forever", "v")
        assert.is_nil(store:ttl("forever"))
      end)

      if b.fake_clock then
        it("expires keys by the injected clock", function()
          store:put("t", "v", 10)
          store:put("other", "w")
          assert.equal(10, store:ttl("t"))
          now = now + 9
          assert.equal("v", store:get("t"))
          assert.equal(1, store:ttl("t"))
          assert.same({ "other", "t" }, store:keys(""))
          now = now + 1
          assert.is_nil(store:get("t"))
          assert.is_nil(store:ttl("t"))
          assert.same({ "other" }, store:keys(""))
          store:put("t", "again")
          assert.equal("again", store:get("t"))
          assert.is_nil(store:ttl("t"))
        end)

        it("update sees an expired key as absent and writes it without expiry", function()
          store:put("t", "old", 5)
          now = now + 5
          assert.is_nil((store:update("t", function(old) return "new", old end)))
          assert.equal("new", store:get("t"))
          assert.is_nil(store:ttl("t"))
        end)
      else
        it("expires keys after their TTL in real seconds", function()
          store:put("t", "v", 1)
          store:put("other", "w")
          assert.equal("v", store:get("t"))
          assert.equal(1, store:ttl("t"))
          local t0 = socket.gettime()
          while store:get("t") ~= nil and socket.gettime() - t0 < 3 do sleep(0.05) end
          assert.is_nil(store:get("t"))
          assert.is_true(socket.gettime() - t0 > 0.5)
          assert.is_nil(store:ttl("t"))
          assert.same({ "other" }, store:keys(""))
        end)

        it("rounds a fractional TTL up to whole seconds", function()
          store:put("t", "v", 0.2)
          assert.equal(1, store:ttl("t"))
        end)
      end

      it("update passes the old value and returns fn's extra results", function()
        local a, b2, c = store:update("n", function(old)
          assert.is_nil(old)
          return "1", "first", nil
        end)
        assert.same({ "first" }, { a, b2, c })
        assert.equal("1", store:get("n"))
        local r = table.pack(store:update("n", function(old) return tostring(tonumber(old) + 1), old, 42 end))
        assert.equal(2, r.n)
        assert.same({ "1", 42 }, { r[1], r[2] })
        assert.equal("2", store:get("n"))
        assert.equal(0, select("#", store:update("n", function(old) return old end)))
      end)

      it("update returning nil deletes the key", function()
        store:put("d", "x")
        assert.equal("was x", store:update("d", function(old) return nil, "was " .. old end))
        assert.is_nil(store:get("d"))
      end)

      it("update keeps the expiry of a live key", function()
        store:put("t", "v", 100)
        store:update("t", function(old) return old .. "2" end)
        assert.equal("v2", store:get("t"))
        assert.is_not_nil(store:ttl("t"))
        assert.is_true(store:ttl("t") > 90)
      end)

      it("update with opts.ttl writes the value and its expiry in one write", function()
        store:update("new", function(old) assert.is_nil(old) return "v" end, { ttl = 30 })
        assert.equal("v", store:get("new"))
        local t = store:ttl("new")
        assert.is_true(t ~= nil and t > 25 and t <= 30, tostring(t))
        store:put("old", "w")                            -- no expiry ...
        store:update("old", function(old) return old .. "x" end, { ttl = 40 })
        assert.equal("wx", store:get("old"))
        t = store:ttl("old")                             -- ... until the update gives it one
        assert.is_true(t ~= nil and t > 35 and t <= 40, tostring(t))
        store:update("old", function(old) return old .. "y" end)
        t = store:ttl("old")                             -- a later plain update keeps it
        assert.is_true(t ~= nil and t > 35 and t <= 40, tostring(t))
        store:update("gone", function() return nil end, { ttl = 10 })
        assert.is_nil(store:get("gone"))
        assert.has_error(function() store:update("k", function() return "v" end, { ttl = 0 }) end)
        assert.has_error(function() store:update("k", function() return "v" end, { ttl = -1 }) end)
        if b.fake_clock then
          now = now + 30
          assert.is_nil(store:get("new"))
          assert.equal("wx" .. "y", store:get("old"))
          now = now + 10
          assert.is_nil(store:get("old"))
        end
      end)

      it("update where fn raises leaves the old value and re-raises", function()
        store:put("k", "old")
        assert.has_error(function()
          store:update("k", function() error("boom", 0) end)
        end, "boom")
        assert.equal("old", store:get("k"))
        assert.has_error(function()
          store:update("k", function() return 42 end)
        end)
        assert.equal("old", store:get("k"))
        -- the store is still usable afterwards
        store:update("k", function(old) return old .. "!" end)
        assert.equal("old!", store:get("k"))
      end)

      it("keys(prefix) is sorted and prefix-exact (no pattern or glob meaning)", function()
        for _, k in ipairs { "b", "abc", "a", "ab", "a.", "a*", "a?", "a[1]", "a%", "a\\", "ba", "A" } do
          store:put(k, "v")
        end
        assert.same({ "a", "a%", "a*", "a.", "a?", "a[1]", "a\\", "ab", "abc" }, store:keys("a"))
        assert.same({ "ab", "abc" }, store:keys("ab"))
        assert.same({ "a." }, store:keys("a."))
        assert.same({ "a*" }, store:keys("a*"))
        assert.same({ "a?" }, store:keys("a?"))
        assert.same({ "a[1]" }, store:keys("a["))
        assert.same({ "a%" }, store:keys("a%"))
        assert.same({ "a\\" }, store:keys("a\\"))
        assert.same({}, store:keys("c"))
        assert.same({ "A", "a", "a%", "a*", "a.", "a?", "a[1]", "a\\", "ab", "abc", "b", "ba" }, store:keys(""))
      end)

      it("close is idempotent", function()
        store:close()
        store:close()
      end)
    end)
  end

  describe("sqlite", function()
    local function mode(path)
      local p = io.popen("stat -c %a " .. path .. " 2>/dev/null")
      local m = p:read("*l")
      p:close()
      return m
    end

    -- POSIX open(2) with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600 makes the database file
    -- before sqlite opens it; sqlite's unix VFS gives the -wal and -shm files the mode of
    -- the database file (whatever the umask).
    it("creates the database, its -wal and -shm files readable by the owner only (0600)", function()
      local dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir " .. dir)
      finally(function() os.execute("rm -rf " .. dir) end)
      local path = dir .. "/store.db"
      -- under umask 022 (files 0644 by default), in a process of its own
      local interp = require "spec.support.interp"
      local p = io.popen(("umask 022; %s -e 'local s = require(\"payhsm.store.sqlite\").new{path = %q}; "
        .. "s:put(\"k\", \"v\"); io.write(io.popen(\"stat -c %%a %s %s-wal %s-shm\"):read(\"*a\")); s:close()'")
        :format(interp.run, path, path, path, path))
      local out = p:read("*a")
      p:close()
      assert.equal("600\n600\n600\n", out)
      assert.equal("600", mode(path))
      -- an existing database is opened as it is
      local s = require("payhsm.store.sqlite").new { path = path }
      assert.equal("v", s:get("k"))
      s:close()
    end)

    it("keeps its data across reopen", function()
      local path = tmpdb()
      local s = require("payhsm.store.sqlite").new { path = path, clock = clock }
      s:put("k", "v\0w")
      s:put("t", "v", 50)
      s:close()
      s = require("payhsm.store.sqlite").new { path = path, clock = clock }
      assert.equal("v\0w", s:get("k"))
      assert.equal(50, s:ttl("t"))
      s:close()
      rmdb(path)
    end)

    it("sweeps expired rows off the disk within sweep_interval, not only at open", function()
      local path = tmpdb()
      local t = 1000
      local s = require("payhsm.store.sqlite").new { path = path, clock = function() return t end, sweep_interval = 60 }
      for i = 1, 50 do s:put("chal:" .. i, "x", 5) end
      s:put("keep", "v")
      local S = require("luasql.sqlite3")
      local env = S.sqlite3()
      local conn = env:connect(path)
      local function count()
        local cur = conn:execute("SELECT count(*) FROM kv")
        local n = cur:fetch()
        cur:close()
        return tonumber(n)
      end
      assert.equal(51, count())
      t = t + 30 -- expired, but the last sweep is only 30 s old
      s:put("nonce", "y", 5)
      assert.equal(52, count())
      t = t + 31 -- 61 s since the sweep at open: the next TTL write sweeps
      s:put("nonce2", "z", 5)
      assert.equal(2, count()) -- "keep" and "nonce2"
      s:sweep()
      assert.equal(2, count())
      conn:close() env:close()
      s:close()
      rmdb(path)
    end)

    it("refuses an unknown option", function()
      local path = tmpdb()
      assert.has_error(function() require("payhsm.store.sqlite").new { path = path, sweep_intervall = 5 } end,
        "store.sqlite.new: unknown option 'sweep_intervall' (expected one of: path, clock, busy_timeout_ms, sweep_interval)")
      rmdb(path)
    end)

    it("a cached read sees what another connection committed since (PRAGMA data_version)", function()
      local path = tmpdb()
      local S = require("payhsm.store.sqlite")
      local a, b = S.new { path = path, clock = clock }, S.new { path = path, clock = clock }
      a:put("k", "1")
      assert.equal("1", a:get("k"))
      assert.equal("1", b:get("k"))
      assert.is_nil(b:get("absent"))
      b:put("k", "2")                                  -- the other connection writes ...
      b:put("absent", "now")
      assert.equal("2", a:get("k"))                     -- ... and a sees it
      assert.equal("now", a:get("absent"))
      b:update("k", function(old) return old .. "3" end)
      assert.equal("23", a:get("k"))
      b:delete("k")
      assert.is_nil(a:get("k"))
      a:put("e", "x", 10)                               -- own writes, cached with their expiry
      assert.equal("x", a:get("e"))
      assert.equal("x", b:get("e"))
      now = now + 10
      assert.is_nil(a:get("e"))
      assert.is_nil(b:get("e"))
      assert.has_error(function() a:update("k", function() error("no") end) end)
      assert.is_nil(a:get("k"))                         -- a failed update leaves no cached value
      a:close() b:close()
      rmdb(path)
    end)

    it("is opened by server.open_store", function()
      local path = tmpdb()
      local s = require("payhsm.server").open_store({ backend = "sqlite", path = path }, nil, clock)
      s:put("k", "v")
      assert.equal("v", s:get("k"))
      s:close()
      rmdb(path)
    end)

    it("an answered put survives kill -9 of the writing process", function()
      local path = tmpdb()
      local out = path .. ".out"
      local pidtxt = sh(("%s spec/support/store_child.lua fill sqlite %s >%s 2>&1 & echo $!"):format(
        require("spec.support.interp").run, path, out))
      local pid = assert(pidtxt:match("%d+"))
      local lines = 0
      for _ = 1, 500 do
        local f = io.open(out)
        if f then
          lines = select(2, f:read("*a"):gsub("\n", ""))
          f:close()
        end
        if lines >= 100 then break end
        sleep(0.01)
      end
      os.execute("kill -9 " .. pid)
      for _ = 1, 200 do
        if not select(2, sh("kill -0 " .. pid)) then break end
        sleep(0.01)
      end
      assert.is_true(lines >= 100, "the child wrote " .. lines .. " keys")
      local f = assert(io.open(out))
      local printed = {}
      for line in f:read("*a"):gmatch("(key%d+)\n") do printed[#printed + 1] = line end
      f:close()
      local s = require("payhsm.store.sqlite").new { path = path, clock = clock }
      for _, k in ipairs(printed) do
        assert.equal("value" .. k:sub(4), s:get(k), k .. " was answered but is missing")
      end
      s:close()
      os.remove(out)
      rmdb(path)
    end)
  end)

  describe("redis", function()
    it("parses redis URLs", function()
      local parse = require("payhsm.store.redis").parse_url
      assert.same({ "127.0.0.1", 6379, 0 }, { parse("redis://127.0.0.1:6379/0") })
      assert.same({ "cache.local", 6380, 5 }, { parse("redis://cache.local:6380/5") })
      assert.same({ "h", 6379, 0 }, { parse("redis://h") })
      assert.has_error(function() parse("http://h:1/0") end)
      assert.has_error(function() parse("redis://h:1/x") end)
    end)

    it("selects the database of the URL", function()
      local url = redis_url:gsub("/0$", "/2")
      local s2 = require("payhsm.store.redis").new { url = url, prefix = "db:" }
      local s0 = require("payhsm.store.redis").new { url = redis_url, prefix = "db:" }
      s2:put("k", "in db 2")
      assert.is_nil(s0:get("k"))
      assert.equal("in db 2", s2:get("k"))
      s2:delete("k")
      s0:close()
      s2:close()
    end)

    it("is opened by server.open_store with its prefix", function()
      local s = require("payhsm.server").open_store({ backend = "redis", url = redis_url, prefix = "os:" })
      s:put("k", "v")
      local conn = require("payhsm.redis").connect("127.0.0.1", tonumber(redis_url:match(":(%d+)/")))
      assert.equal("v", conn:command("GET", "os:k"))
      conn:close()
      s:close()
    end)

    it("fails to open when nothing listens", function()
      assert.has_error(function()
        require("payhsm.store.redis").new { url = ("redis://127.0.0.1:%d/0"):format(free_port()) }
      end)
    end)
  end)

  describe("payhsm.redis", function()
    local redis = require "payhsm.redis"
    local conn
    before_each(function()
      conn = assert(redis.connect("127.0.0.1", tonumber(redis_url:match(":(%d+)/"))))
    end)
    after_each(function() conn:close() end)

    it("converts replies", function()
      assert.equal("PONG", conn:command("PING"))
      assert.equal("OK", conn:command("SET", "raw:a", "x\0y"))
      assert.equal("x\0y", conn:command("GET", "raw:a"))
      assert.is_nil(conn:command("GET", "raw:none"))
      assert.equal(1, conn:command("DEL", "raw:a"))
      assert.equal(7, conn:command("INCRBY", "raw:n", 7))
      assert.same({ "7", false }, conn:command("MGET", "raw:n", "raw:none"))
      conn:command("DEL", "raw:n")
    end)

    it("returns server errors as REDIS_ERROR and stays usable", function()
      local r, msg, code = conn:command("NOSUCHCOMMAND")
      assert.is_nil(r)
      assert.matches("unknown command", msg)
      assert.equal("REDIS_ERROR", code)
      assert.equal("PONG", conn:command("PING"))
    end)

    it("reports a refused connection as REDIS_CONNECT", function()
      local c, msg, code = redis.connect("127.0.0.1", free_port())
      assert.is_nil(c)
      assert.is_string(msg)
      assert.equal("REDIS_CONNECT", code)
    end)

    it("reports a dropped connection as REDIS_IO", function()
      local other = assert(redis.connect("127.0.0.1", tonumber(redis_url:match(":(%d+)/"))))
      assert.equal("OK", other:command("CLIENT", "SETNAME", "victim"))
      local id = other:command("CLIENT", "ID")
      assert.equal(1, conn:command("CLIENT", "KILL", "ID", id))
      local r, _, code = other:command("PING")
      assert.is_nil(r)
      assert.equal("REDIS_IO", code)
      other:close()
    end)

    it("is a payhsm.Redis whose close is idempotent and final", function()
      assert.matches("^payhsm.Redis", tostring(conn))
      conn:close()
      conn:close()
      assert.has_error(function() conn:command("PING") end, "redis connection has been closed")
      assert.has_error(function() conn:command() end)
    end)

    it("raises on arguments that are not strings or numbers", function()
      assert.has_error(function() conn:command("GET", {}) end)
      assert.has_error(function() conn:command() end)
    end)
  end)

  -- Two extra processes, 200 update() increments each, on one counter.
  for _, name in ipairs { "sqlite", "redis" } do
    it(name .. ": update is atomic across processes (2 x 200 increments = 400)", function()
      local target, cleanup, env = nil, function() end, ""
      if name == "sqlite" then
        target = tmpdb()
        local s = require("payhsm.store.sqlite").new { path = target }
        s:close()
        cleanup = function() rmdb(target) end
      else
        target = redis_url
        env = "PAYHSM_PREFIX=race:"
      end
      local child = ("%s %s spec/support/store_child.lua count %s %s counter 200"):format(env,
        require("spec.support.interp").run, name, target)
      local out, ok = sh(("%s & p1=$!; %s & p2=$!; wait $p1 && wait $p2"):format(child, child))
      assert.is_true(ok, out)
      local s
      if name == "sqlite" then
        s = require("payhsm.store.sqlite").new { path = target }
      else
        s = require("payhsm.store.redis").new { url = target, prefix = "race:" }
      end
      assert.equal("400", s:get("counter"))
      s:delete("counter")
      s:close()
      cleanup()
    end)
  end
end)

describe("memory store", function()
  it("sweeps expired entries that are never read again (no growth from short-lived keys)", function()
    local t = 0
    local s = require("payhsm.store.memory").new { clock = function() return t end }
    s:put("keep", "v")
    for i = 1, 5000 do
      s:put("nonce:" .. i, "1", 10)
      t = t + 1 -- each nonce outlives only the next ten writes
    end
    local n = 0
    for _ in pairs(s.data) do n = n + 1 end
    assert.is_true(n < 5000 - 4000 + 20, "entries left: " .. n)
    assert.equal("v", s:get("keep"))
    assert.equal("1", s:get("nonce:5000"))
  end)
end)


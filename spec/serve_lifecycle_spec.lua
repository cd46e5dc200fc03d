-- bin/payhsm serve starts and stops like a server: paths in the config are relative to
-- the config file, SIGTERM and SIGINT stop it cleanly (exit 0, a log line, the store
-- closed), a busy port is named with the system's reason, and a failed TLS handshake is
-- logged with a timestamp and the peer address like the request lines. The examples
-- (one config per system, the test PKI script) work as the getting-started page shows.
local interp = require "spec.support.interp"

local function read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end
local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end
local function sh(cmd)
  local p = io.popen("env -u LD_PRELOAD sh -c " .. ("'" .. cmd:gsub("'", "'\\''") .. "'") .. " 2>&1")
  local out = p:read("*a")
  local _, _, rc = p:close()
  return out, rc
end

local root = os.getenv("PWD") or "."
-- the build as an absolute path: the servers here run from other directories
local env = interp.env:gsub("PAYHSM_BUILD=%./", "PAYHSM_BUILD=" .. root .. "/")
local STAMP = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ"

-- Starts `bin/payhsm serve SYSTEM --config CFG` from directory cwd; returns a handle with
-- port, pid (the server), log, rc() (nil while it runs).
local function serve(system, cfg, cwd, base)
  local log, rcf, pidf = base .. ".log", base .. ".rc", base .. ".pid"
  os.remove(log) os.remove(rcf)
  os.execute(("cd %s && (env -u LD_PRELOAD %s %s/bin/payhsm serve %s --config %s >/dev/null 2>>%s; echo $? > %s) "
    .. ">/dev/null 2>&1 </dev/null & echo $! > %s"):format(cwd, env, root, system, cfg, log, rcf, pidf))
  local h = { log = log }
  function h.rc() return tonumber(read(rcf):match("%d+")) end
  for _ = 1, 300 do
    h.port = tonumber(read(log):match("listening on https?://[%d.]+:(%d+)"))
    if h.port or h.rc() then break end
    os.execute("sleep 0.03")
  end
  if h.port then
    local sub = read(pidf):match("%d+")
    h.pid = sh("pgrep -P " .. sub):match("%d+")
  end
  function h.wait_exit()
    for _ = 1, 300 do
      if h.rc() then return h.rc() end
      os.execute("sleep 0.03")
    end
    return nil
  end
  return h
end

describe("bin/payhsm serve", function()
  local dir, pki
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir .. "/conf " .. dir .. "/elsewhere")
    local out, rc = sh(("%s/examples/make-test-pki.sh %s/conf/pki"):format(root, dir))
    assert(rc == 0, out)
    pki = dir .. "/conf/pki"
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("reads tls and store paths relative to the config file, and stops on SIGTERM: exit 0, a log line", function()
    write(dir .. "/conf/pos.conf.lua", [[
return {
  listen = "127.0.0.1:0",
  tls = { cert = "pki/server.pem", key = "pki/server.key", client_ca = "pki/ca.pem" },
  store = { backend = "sqlite", path = "data/pos.db" },
  storage_key = { hex = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F" },
}]])
    os.execute("mkdir -p " .. dir .. "/conf/data")
    local h = serve("pos", "../conf/pos.conf.lua", dir .. "/elsewhere", dir .. "/pos")
    assert(h.port, read(h.log))
    assert.truthy(read(h.log):find("listening on https://127.0.0.1:" .. h.port, 1, true))
    assert.equal("", read(dir .. "/elsewhere/data/pos.db"))
    assert.truthy(io.open(dir .. "/conf/data/pos.db"))
    -- mutual TLS with the script's client certificate: an answer from the application
    local out = sh(("curl -s -o /dev/null -w %%{http_code} --cacert %s/ca.pem --cert %s/client.pem --key %s/client.key "
      .. "https://127.0.0.1:%d/pos/nothing-here"):format(pki, pki, pki, h.port))
    assert.matches("^%d%d%d$", out)
    assert.are_not.equal("000", out)
    -- a client that speaks plain HTTP to the TLS port: one log line, time and peer
    sh(("curl -s -m 3 http://127.0.0.1:%d/ -o /dev/null"):format(h.port))
    os.execute("sleep 0.3")
    local log = read(h.log)
    assert.matches("\n" .. STAMP .. " TLS handshake from 127%.0%.0%.1:%d+ failed %([^\n]+%)\n", log)
    assert.falsy(log:find("\nhttp: ", 1, true))
    os.execute("kill -TERM " .. h.pid)
    assert.equal(0, h.wait_exit(), read(h.log))
    assert.matches("\n" .. STAMP .. " payhsm pos stopped on SIGTERM\n$", read(h.log))
  end)

  it("stops on SIGINT too, and a busy port names the port and the reason", function()
    -- the example config, with its store in this spec's directory (a database left in /tmp
    -- by another run may be under another local master key)
    local example = read(root .. "/examples/gateway.conf.lua"):gsub('"/tmp/payhsm%-gateway%-demo%.db"', '"gw.db"')
    write(dir .. "/gw.conf.lua", example)
    local h = serve("gateway", dir .. "/gw.conf.lua", dir, dir .. "/gw")
    if not h.port then
      -- the example's port is taken on this machine: run it on a free one
      write(dir .. "/gw.conf.lua", (example:gsub('"127%.0%.0%.1:8443"', '"127.0.0.1:0"')))
      h = serve("gateway", dir .. "/gw.conf.lua", dir, dir .. "/gw")
    end
    assert(h.port, read(h.log))
    write(dir .. "/busy.conf.lua", ([[return { listen = "127.0.0.1:%d", store = { backend = "memory" },
      basic_auth = { u = "p" },
      master_keys = { { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = "%s" } } }]])
      :format(h.port, ("AB"):rep(32)))
    local b = serve("gateway", dir .. "/busy.conf.lua", dir, dir .. "/busy")
    assert.equal(1, b.wait_exit())
    assert.matches("cannot listen on 127%.0%.0%.1:" .. h.port .. ": Address already in use", read(b.log))
    assert.falsy(read(b.log):find("port 0", 1, true))
    os.execute("kill -INT " .. h.pid)
    assert.equal(0, h.wait_exit(), read(h.log))
    assert.matches(STAMP .. " payhsm gateway stopped on SIGINT\n$", read(h.log))
  end)

  it("every system has an example config that starts", function()
    for _, system in ipairs { "gateway", "pos", "mupk" } do
      local text = read(root .. "/examples/" .. system .. ".conf.lua")
      assert.truthy(text:find("listen", 1, true), system)
      text = text:gsub('listen = "127%.0%.0%.1:%d+"', 'listen = "127.0.0.1:0"')
        :gsub('path = "/tmp/payhsm%-(%w+)%-demo%.db"', 'path = "%1.db"')
      write(dir .. "/ex-" .. system .. ".conf.lua", text)
      local h = serve(system, dir .. "/ex-" .. system .. ".conf.lua", dir, dir .. "/ex-" .. system)
      assert(h.port, system .. ": " .. read(h.log))
      os.execute("kill -TERM " .. h.pid)
      assert.equal(0, h.wait_exit(), system)
    end
  end)
end)

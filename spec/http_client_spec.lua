-- lua/payhsm/http_client.lua against payhsm.http running in another process.
local client = require "payhsm.http_client"
local pki = require "spec.support.pki"

local function spawn(args)
  local portfile = os.tmpname()
  os.remove(portfile)
  local pidfile = portfile .. ".pid"
  os.execute(("%s spec/support/serve_echo.lua %s %s >/dev/null 2>&1 & echo $! > %s"):format(
    require("spec.support.interp").run, portfile, args or "", pidfile))
  local port
  for _ = 1, 200 do
    local f = io.open(portfile)
    if f then port = tonumber(f:read("*a")) f:close() break end
    os.execute("sleep 0.02")
  end
  local pf = io.open(pidfile)
  local pid = pf:read("*a"):match("%d+")
  pf:close()
  assert(port, "server did not start")
  return port, function() os.execute("kill " .. pid) os.remove(portfile) os.remove(pidfile) end
end

describe("http_client", function()
  local keys
  setup(function() keys = pki.make() end)
  teardown(function() pki.remove(keys) end)

  it("keeps one connection alive across requests (plain HTTP)", function()
    local port, stop = spawn()
    finally(stop)
    local c = client.new { host = "127.0.0.1", port = port }
    for i = 1, 20 do
      local r = assert(c:request { method = "POST", path = "/p" .. i, body = "b" .. i, headers = { ["X-Test"] = "t" } })
      assert.equal(200, r.status)
      assert.equal("POST /p" .. i .. " b" .. i .. " t", r.body)
      assert.equal("POST", r.headers["x-echo"])
    end
    c:close()
  end)

  it("does mutual TLS, and fails clearly without the client certificate", function()
    local port, stop = spawn(("%s %s %s"):format(keys.path("server.pem"), keys.path("server.key"), keys.path("ca.pem")))
    finally(stop)
    local c = client.new { host = "127.0.0.1", port = port, tls = { cafile = keys.path("ca.pem"),
      certificate = keys.path("client.pem"), key = keys.path("client.key") } }
    local r = assert(c:request { method = "GET", path = "/secure" })
    assert.equal(200, r.status)
    assert.equal("GET /secure  ", r.body)
    c:close()
    local anon = client.new { host = "127.0.0.1", port = port, tls = { cafile = keys.path("ca.pem") } }
    local r2, err = anon:request { method = "GET", path = "/secure" }
    assert.is_true(r2 == nil or r2.status == 403, tostring(err))
    local wrong_ca = client.new { host = "127.0.0.1", port = port, tls = { cafile = keys.path("stranger-ca.pem"),
      certificate = keys.path("client.pem"), key = keys.path("client.key") } }
    local r3, err3 = wrong_ca:request { method = "GET", path = "/" }
    assert.is_nil(r3)
    assert.matches("tls", err3)
  end)

  it("reports a refused connection", function()
    local c = client.new { host = "127.0.0.1", port = 1, timeout = 1 }
    local r, err = c:request { path = "/" }
    assert.is_nil(r)
    assert.matches("connect", err)
  end)
end)

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

  -- RFC 9112 section 9.3.1: a request on a kept-alive connection that the server closes
  -- before answering is sent again only when its method is idempotent.
  it("repeats a GET on a new connection when a kept-alive one closes unanswered, never a POST", function()
    local socket = require "socket"
    local srv = assert(socket.bind("127.0.0.1", 0))
    srv:settimeout(0)
    local port = select(2, srv:getsockname())
    local conns, got = {}, {}
    -- answers the first request of each connection, closes it at the second unanswered
    local function pump()
      local s = srv:accept()
      if s then s:settimeout(0) conns[#conns + 1] = { sock = s, buf = "", n = 0 } end
      for _, cn in ipairs(conns) do
        if not cn.closed then
          local data, _, partial = cn.sock:receive(8192)
          cn.buf = cn.buf .. (data or partial or "")
          local head_end = cn.buf:find("\r\n\r\n", 1, true)
          local len = head_end and tonumber(cn.buf:sub(1, head_end):match("Content%-Length: *(%d+)"))
          if head_end and #cn.buf >= head_end + 3 + len then
            got[#got + 1] = cn.buf:match("^(%u+ %S+)")
            cn.buf = cn.buf:sub(head_end + 4 + len)
            cn.n = cn.n + 1
            if cn.n == 1 then
              cn.sock:send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            else
              cn.sock:close()
              cn.closed = true
            end
          end
        end
      end
      socket.sleep(0.001)
    end
    finally(function()
      for _, cn in ipairs(conns) do if not cn.closed then cn.sock:close() end end
      srv:close()
    end)
    local c = client.new { host = "127.0.0.1", port = port, timeout = 2, pump = pump }
    assert.equal(200, assert(c:request { method = "POST", path = "/a", body = "x" }).status)
    local r, err, kind = c:request { method = "POST", path = "/b", body = "y" }
    assert.is_nil(r)
    assert.matches("closed", err)
    assert.equal("ambiguous", kind)
    assert.same({ "POST /a", "POST /b" }, got) -- /b arrived once and was not repeated
    assert.equal(200, assert(c:request { method = "GET", path = "/c" }).status)
    r = assert(c:request { method = "GET", path = "/d" })
    assert.equal(200, r.status)
    assert.equal("ok", r.body)
    assert.same({ "POST /a", "POST /b", "GET /c", "GET /d", "GET /d" }, got)
    c:close()
  end)

  it("reports a refused connection", function()
    local c = client.new { host = "127.0.0.1", port = 1, timeout = 1 }
    local r, err = c:request { path = "/" }
    assert.is_nil(r)
    assert.matches("connect", err)
    assert.equal("not_sent", select(3, c:request { path = "/" }))
  end)
end)

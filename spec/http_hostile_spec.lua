-- payhsm.http (csrc/http.c, csrc/http_conn.c) against hostile clients over loopback:
-- slow or never-finished handshakes and headers, connections piled up from one address,
-- bodies sent before authentication, client certificates for the wrong purpose, weak TLS
-- 1.2 cipher suites, repeated headers and control bytes in the path. Bounded: at most 200
-- connections, each test a few seconds at most. The full-size run (1,000 connections,
-- 400 bodies of 1 MiB) is bench/load_hostile.lua (`make load`).
local http = require "payhsm.http"
local socket = require "socket"
local pki = require "spec.support.pki"

-- Runs a shell command in the background while the server loop serves it; returns its
-- output (stdout and stderr), exit code and wall-clock seconds.
local function bg(srv, cmd)
  local out = os.tmpname()
  local t0 = http.clock()
  os.execute(("(env -u LD_PRELOAD sh -c %q > %s 2>&1; echo $? > %s.rc.tmp; mv %s.rc.tmp %s.rc) &")
    :format(cmd, out, out, out, out))
  local rcfile
  repeat
    srv:run_once(5)
    rcfile = io.open(out .. ".rc")
  until rcfile or http.clock() - t0 > 15
  assert(rcfile, "command did not finish: " .. cmd)
  local rc = tonumber(rcfile:read("*a"))
  local dt = http.clock() - t0
  rcfile:close()
  local f = io.open(out)
  local text = f:read("*a")
  f:close()
  os.remove(out)
  os.remove(out .. ".rc")
  return text, rc, dt
end

-- A raw request over its own connection, the server loop turning meanwhile: status, text.
local function exchange(srv, text, bind)
  local s = socket.tcp()
  s:settimeout(2)
  if bind then assert(s:bind(bind, 0)) end
  assert(s:connect("127.0.0.1", srv:port()))
  s:send(text)
  s:settimeout(0)
  local buf, t0 = "", http.clock()
  while http.clock() - t0 < 5 do
    srv:run_once(5)
    local data, err, part = s:receive(8192)
    buf = buf .. (data or part or "")
    if err == "closed" then break end
    local hend = buf:find("\r\n\r\n", 1, true)
    if hend and #buf >= hend + 3 + (tonumber(buf:match("\r\n[Cc]ontent%-[Ll]ength: (%d+)")) or 0) then break end
  end
  s:close()
  return tonumber(buf:match("^HTTP/1%.1 (%d+)")), buf
end

-- Opens n TCP connections from source address `from` that send the first bytes of a TLS
-- record and nothing more (a handshake that never finishes).
local function hold(n, from, port)
  local t = {}
  for i = 1, n do
    local s = socket.tcp()
    assert(s:bind(from, 0))
    s:settimeout(2)
    assert(s:connect("127.0.0.1", port))
    s:send("\22\3\1\2\0")
    s:settimeout(0)
    t[i] = s
  end
  return t
end

-- how many of the sockets the server has closed (a read sees the end)
local function closed(socks)
  local n = 0
  for _, s in ipairs(socks) do
    local _, err = s:receive(1)
    if err == "closed" then n = n + 1 end
  end
  return n
end

-- Under valgrind memcheck (make test-valgrind) the server loop runs some 20 times slower:
-- the one-second target for a legitimate client is then five seconds.
local function maps() local f = io.open("/proc/self/maps") local m = f and f:read("*a") or "" if f then f:close() end return m end
local LATENCY = maps():find("vgpreload", 1, true) and 5 or 1

local function spin(srv, seconds)
  local t0 = http.clock()
  while http.clock() - t0 < seconds do srv:run_once(20) end
end

describe("http against hostile clients", function()
  local keys
  setup(function()
    keys = pki.make()
    pki.leaf(keys, "server-only", "extendedKeyUsage=serverAuth", "server-only")
    pki.leaf(keys, "no-eku", "basicConstraints=CA:FALSE", "no-eku")
  end)
  teardown(function() pki.remove(keys) end)

  local function echo(req)
    return { status = 200, headers = { ["Content-Type"] = "application/json" },
      body = ('{"path":"%s","cn":"%s","len":%d}'):format(req.path, req.client_cert and req.client_cert.subject or "", #req.body) }
  end

  local function mtls(opts)
    opts = opts or {}
    opts.quiet, opts.port, opts.handler = true, 0, opts.handler or echo
    opts.tls = { cert = keys.read("server.pem"), key = keys.read("server.key"), client_ca = keys.read("ca.pem") }
    return http.new(opts)
  end

  local function curl_client(srv, cert, extra)
    cert = cert or "client"
    return bg(srv, ("curl -sS --max-time 5 %s --cacert %s --cert %s --key %s https://127.0.0.1:%d/t"):format(extra or "",
      keys.path("ca.pem"), keys.path(cert .. ".pem"), keys.path(cert .. ".key"), srv:port()))
  end

  describe("connections", function()
    it("serves a mutual-TLS client within a second while 200 handshakes hang, and drops those at header_timeout", function()
      local srv = mtls { header_timeout = 2 }
      finally(function() srv:close() end)
      local socks = {}
      for a = 2, 5 do -- four source addresses, 50 connections each (under per_address)
        for _, s in ipairs(hold(50, "127.0.0." .. a, srv:port())) do socks[#socks + 1] = s end
      end
      finally(function() for _, s in ipairs(socks) do s:close() end end)
      spin(srv, 0.3)
      assert.equal(0, closed(socks))
      local out, rc, dt = curl_client(srv)
      assert.equal(0, rc, out)
      assert.matches('"cn":"CN=client"', out, 1, true)
      assert.is_true(dt < LATENCY, ("%.3f s"):format(dt))
      spin(srv, 2.5)
      assert.equal(200, closed(socks))
    end)

    it("closes a plain HTTP client that sends a header line now and then, at header_timeout", function()
      local srv = http.new { quiet = true, port = 0, handler = echo, header_timeout = 1 }
      finally(function() srv:close() end)
      local s = socket.tcp()
      s:settimeout(2)
      assert(s:connect("127.0.0.1", srv:port()))
      s:send("GET / HTTP/1.1\r\nHost: x\r\n")
      s:settimeout(0)
      local t0, ended = http.clock(), nil
      while http.clock() - t0 < 4 and not ended do
        srv:run_once(20)
        s:send("X-A: b\r\n")
        local _, err = s:receive(1)
        if err == "closed" then ended = http.clock() - t0 end
        socket.sleep(0.2)
      end
      s:close()
      assert.is_truthy(ended)
      assert.is_true(ended >= 0.9 and ended < 2.5, tostring(ended))
    end)

    it("keeps per_address connections from one address and closes the rest at once", function()
      local srv = mtls { per_address = 8 }
      finally(function() srv:close() end)
      local socks = hold(10, "127.0.0.9", srv:port())
      finally(function() for _, s in ipairs(socks) do s:close() end end)
      spin(srv, 0.3)
      assert.equal(2, closed(socks))
      -- another address is not held back
      local out, rc = curl_client(srv)
      assert.equal(0, rc, out)
    end)

    it("raises on an unknown option or a limit out of range", function()
      assert.has_error(function() http.new { quiet = true, port = 0, handler = echo, header_timout = 1 } end,
        "http.new: unknown option 'header_timout'")
      assert.has_error(function() http.new { quiet = true, port = 0, handler = echo, per_address = 0 } end)
      assert.has_error(function() http.new { quiet = true, port = 0, handler = echo, connections = 10000000 } end)
    end)
  end)

  describe("before the body", function()
    it("answers authorize's refusal on the headers alone, without waiting for the body", function()
      local calls = {}
      local srv = http.new { quiet = true, port = 0, handler = echo,
        authorize = function(method, path, headers)
          calls[#calls + 1] = { method, path, headers.authorization }
          if headers.authorization ~= "Basic good" then return 401, '{"no":1}', { ["WWW-Authenticate"] = "Basic" } end
          return true
        end }
      finally(function() srv:close() end)
      -- Content-Length promises a megabyte that never comes: the answer must not wait for it
      local st, text = exchange(srv, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
      assert.equal(401, st, text)
      assert.matches('\r\n\r\n{"no":1}$', text)
      assert.matches("\r\nWWW%-Authenticate: Basic\r\n", text)
      st, text = exchange(srv, "POST /a HTTP/1.1\r\nHost: x\r\nAuthorization: Basic good\r\nContent-Length: 3\r\n\r\nabc")
      assert.equal(200, st, text)
      assert.matches('"len":3', text, 1, true)
      assert.same({ { "POST", "/a" }, { "POST", "/a", "Basic good" } }, calls)
    end)

    it("answers 413 to a Content-Length over max_body before the body", function()
      local srv = http.new { quiet = true, port = 0, handler = echo, max_body = 100 }
      finally(function() srv:close() end)
      local st = exchange(srv, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
      assert.equal(413, st)
      st = exchange(srv, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" .. ("x"):rep(100))
      assert.equal(200, st)
    end)

    it("holds no body in memory for 50 unauthenticated uploads of 1 MiB", function()
      local srv = http.new { quiet = true, port = 0, handler = echo,
        authorize = function() return 401, "{}" end }
      finally(function() srv:close() end)
      collectgarbage()
      local function rss() return tonumber(io.open("/proc/self/status"):read("*a"):match("VmRSS:%s*(%d+)")) end
      local before = rss()
      local chunk = ("x"):rep(65536)
      local socks = {}
      for i = 1, 50 do
        local s = socket.tcp()
        s:settimeout(2)
        assert(s:connect("127.0.0.1", srv:port()))
        s:send("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1048575\r\n\r\n")
        s:settimeout(0)
        socks[i] = { s = s, left = 1048575 }
      end
      local t0, busy = http.clock(), true
      while busy and http.clock() - t0 < 10 do
        srv:run_once(2)
        busy = false
        for _, c in ipairs(socks) do
          if c.left > 0 then
            local n, err, part = c.s:send(chunk, 1, math.min(#chunk, c.left))
            c.left = c.left - (n or part or 0)
            if err == "closed" then c.left = 0 end
            busy = busy or c.left > 0
          end
        end
      end
      spin(srv, 0.2)
      local grown = rss() - before
      for _, c in ipairs(socks) do c.s:close() end
      assert.is_true(grown < 10 * 1024, ("RSS grew %d KiB"):format(grown))
    end)
  end)

  describe("TLS", function()
    local srv
    setup(function() srv = mtls() end)
    teardown(function() srv:close() end)

    it("completes no handshake without a client certificate", function()
      local out, rc = bg(srv, ("curl -sS --max-time 5 --cacert %s https://127.0.0.1:%d/t"):format(keys.path("ca.pem"), srv:port()))
      assert.are_not.equal(0, rc)
      assert.is_nil(out:match('"path"'), out)
    end)

    it("refuses a client certificate from the right CA for serverAuth only, and the server's own", function()
      for _, name in ipairs { "server-only", "server" } do
        local out, rc = curl_client(srv, name)
        assert.are_not.equal(0, rc, name .. ": " .. out)
        assert.is_nil(out:match('"path"'), out)
      end
    end)

    it("accepts a client certificate without extended key usage", function()
      local out, rc = curl_client(srv, "no-eku")
      assert.equal(0, rc, out)
      assert.matches('"cn":"CN=no-eku"', out, 1, true)
    end)

    -- PCI DSS scans expect TLS 1.2 with ECDHE and AEAD only (openssl s_client's cipher names)
    local function s_client(args)
      return bg(srv, ("echo | openssl s_client -connect 127.0.0.1:%d -CAfile %s -cert %s -key %s %s"):format(
        srv:port(), keys.path("ca.pem"), keys.path("client.pem"), keys.path("client.key"), args))
    end

    it("refuses TLS 1.2 cipher suites without ECDHE or AEAD", function()
      for _, c in ipairs { "AES128-SHA", "AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384" } do
        local out, rc = s_client("-tls1_2 -cipher " .. c)
        assert.are_not.equal(0, rc, c .. ": " .. out)
      end
    end)

    it("speaks TLS 1.2 with ECDHE and AES-GCM or ChaCha20-Poly1305, and TLS 1.3", function()
      for _, c in ipairs { "-tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256", "-tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384",
                           "-tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305", "-tls1_3" } do
        local out, rc = s_client(c)
        assert.equal(0, rc, c .. ": " .. out)
      end
    end)
  end)

  describe("request parsing", function()
    local srv, seen
    setup(function()
      srv = http.new { quiet = true, port = 0, handler = echo, single_headers = { "x-device-id" },
        on_refused = function(m, p, st, why) seen[#seen + 1] = { m, p, st, why } end }
    end)
    teardown(function() srv:close() end)
    before_each(function() seen = {} end)

    local GOOD = "GET /k HTTP/1.1\r\nHost: x\r\nAuthorization: Basic a\r\nX-Device-Id: 1\r\n"

    it("answers 400 to a repeated Authorization, Host, Content-Length or single header of the system", function()
      for _, h in ipairs { "Authorization: Basic b", "authorization: Basic a", "Host: y", "X-Device-Id: 2",
                           "Content-Length: 0\r\nContent-Length: 0" } do
        local st, text = exchange(srv, GOOD .. h .. "\r\n\r\n")
        assert.equal(400, st, h .. "\n" .. text)
      end
      assert.equal("repeated authorization header", seen[1][4])
      assert.equal("repeated x-device-id header", seen[4][4])
      -- a header not declared single may repeat
      assert.equal(200, (exchange(srv, GOOD .. "Accept: a\r\nAccept: b\r\n\r\n")))
    end)

    it("answers 400 to a path or query that decodes to a control byte", function()
      for _, p in ipairs { "/key-management/keys/import%00xyz", "/a%0Ab", "/a%7f", "/a%1B[31m", "/a?x=%00", "/a?%0D%0A=1" } do
        local st, text = exchange(srv, ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"):format(p))
        assert.equal(400, st, p .. "\n" .. text)
      end
      -- reported (and so logged) as sent, not as the path cut at the NUL
      assert.same({ "POST", "/key-management/keys/import%00xyz", 400, "the path or query decodes to a control byte" }, seen[1])
      assert.equal(200, (exchange(srv, "GET /a%20b?x=%41 HTTP/1.1\r\nHost: x\r\n\r\n")))
    end)
  end)
end)

describe("the gateway's refusals from payhsm.http", function()
  local server = require "payhsm.server"
  local cjson = require "cjson"
  local srv, lines
  setup(function()
    lines = {}
    srv = server.start("gateway", { listen = "127.0.0.1:0", basic_auth = { integrator = "pw" },
      master_keys = { { label = "Z", key_type = "PAN", algorithm = "AES_256", hex = ("11"):rep(32) } } },
      { log = function(l) lines[#lines + 1] = l end, quiet = true })
  end)
  teardown(function() srv:close() end)

  local AUTH = "Authorization: Basic aW50ZWdyYXRvcjpwdw==\r\n"
  -- Fiserv's error response: type errorResponse, the client's Client-Request-Id echoed, an apiTraceId
  local function fiserv(st, text, want_status, want_code)
    assert.equal(want_status, st, text)
    local doc = cjson.decode(text:match("\r\n\r\n(.*)$"))
    assert.equal("errorResponse", doc.type)
    assert.equal("crid-7", doc.clientRequestId)
    assert.matches("^[%w_-]+$", doc.apiTraceId)
    assert.equal(want_code, doc.error.code)
    assert.matches("\r\nClient%-Request%-Id: crid%-7\r\n", text)
    assert.matches("\r\nApi%-Trace%-Id: " .. doc.apiTraceId:gsub("%-", "%%-") .. "\r\n", text)
  end

  it("answers a body over the gateway's max_body with 413 in its error shape, before the body", function()
    local st, text = exchange(srv, "POST /key-management/keys/import HTTP/1.1\r\nHost: x\r\n" .. AUTH
      .. "Client-Request-Id: crid-7\r\nContent-Length: 8193\r\n\r\n")
    fiserv(st, text, 413, "413")
  end)

  it("answers missing credentials with 401 before the body, in its error shape with the challenge", function()
    local st, text = exchange(srv, "POST /key-management/keys/import HTTP/1.1\r\nHost: x\r\n"
      .. "Client-Request-Id: crid-7\r\nContent-Length: 8000\r\n\r\n")
    fiserv(st, text, 401, "401")
    assert.matches('\r\nWWW%-Authenticate: Basic realm="payhsm%-gateway"\r\n', text)
  end)

  it("answers a repeated header and a control byte in the path with 400 (1002) in its error shape", function()
    for _, req in ipairs {
      "GET /key-mgmt/session-keys/keys/sessionKeyLabel=A HTTP/1.1\r\nHost: x\r\n" .. AUTH .. AUTH,
      "GET /key-management/keys/import%00xyz HTTP/1.1\r\nHost: x\r\n" .. AUTH,
      "GET /k HTTP/1.1\r\nHost: x\r\n" .. AUTH .. "Client-Request-Id: b\r\n",
    } do
      local st, text = exchange(srv, req .. "Client-Request-Id: crid-7\r\n\r\n")
      if req:find("Client-Request-Id: b", 1, true) then
        assert.equal(400, st, text) -- which of the two ids is echoed is not fixed
      else
        fiserv(st, text, 400, "1002")
      end
    end
  end)

  it("gives its own 403 (no verified client certificate) and 500 the same shape", function()
    local gw = require "payhsm.gateway"
    for status, code in pairs { [403] = "403", [500] = "1001" } do
      local body, headers = gw.service:answer(status, "x", { ["client-request-id"] = "crid-7" })
      local doc = cjson.decode(body)
      assert.equal("errorResponse", doc.type)
      assert.equal("crid-7", doc.clientRequestId)
      assert.equal(headers["Api-Trace-Id"], doc.apiTraceId)
      assert.equal(code, doc.error.code)
    end
  end)

  it("refuses an unknown key in the config's limits", function()
    assert.has_error(function() server.limits({ limits = { header_timout = 5 } }) end)
    assert.same({ max_body = 8192, header_timeout = 5 }, server.limits({ limits = { header_timeout = 5 } }, require "payhsm.gateway"))
  end)

  it("gives the other systems' early refusals their own error shapes", function()
    local m = server.start("mupk", { listen = "127.0.0.1:0", store = { backend = "memory" }, basic_auth = { merchant = "pw" },
      storage_key = { algorithm = "AES_256", hex = ("3D"):rep(32) } }, { log = function() end, quiet = true })
    finally(function() m:close() end)
    local st, text = exchange(m, "POST /security/v1/keys/generate HTTP/1.1\r\nHost: x\r\nClient-Request-Id: crid-7\r\n"
      .. "Content-Length: 16000\r\n\r\n")
    assert.equal(401, st, text)
    local doc = cjson.decode(text:match("\r\n\r\n(.*)$"))
    assert.equal("DECLINED", doc.gatewayResponse.transactionState)
    assert.equal("crid-7", doc.gatewayResponse.transactionProcessingDetails.clientRequestId)
    st, text = exchange(m, "POST /security/v1/keys/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 16385\r\n\r\n")
    assert.equal(413, st, text)
    assert.equal("413", cjson.decode(text:match("\r\n\r\n(.*)$")).error[1].code)
    local p = server.start("pos", { listen = "127.0.0.1:0", store = { backend = "memory" },
      storage_key = { hex = ("5C"):rep(32) } }, { log = function() end, quiet = true })
    finally(function() p:close() end)
    st, text = exchange(p, "POST /pos/charge HTTP/1.1\r\nHost: x\r\nX-Device-Id: POS-1\r\nX-Device-Id: POS-2\r\n\r\n")
    assert.equal(400, st, text)
    assert.equal("4000", cjson.decode(text:match("\r\n\r\n(.*)$")).error.code)
  end)
end)

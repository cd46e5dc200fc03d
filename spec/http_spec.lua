-- payhsm.http (csrc/http.c): the embedded HTTP(S) server, driven from Lua, against curl.
local http = require "payhsm.http"
local pki = require "spec.support.pki"

describe("http", function()
  local keys
  setup(function() keys = pki.make() end)
  teardown(function() pki.remove(keys) end)

  local function echo(req)
    return { status = 200, headers = { ["Content-Type"] = "application/json" },
      body = ('{"method":"%s","path":"%s","x":"%s","len":%d,"cn":"%s"}'):format(req.method, req.path,
        req.headers["x-test"] or "", #req.body, req.client_cert and req.client_cert.subject or "") }
  end

  describe("plain HTTP", function()
    it("passes method, path, lower-case headers and body; sends status and headers", function()
      local srv = http.new { quiet = true, port = 0, handler = echo }
      local out, rc = pki.curl(srv, ("-i -H 'X-Test: yes' -d 'hello' http://127.0.0.1:%d/a/b"):format(srv:port()))
      srv:close()
      assert.equal(0, rc)
      assert.matches("^HTTP/1.1 200", out)
      assert.matches('"method":"POST","path":"/a/b","x":"yes","len":5', out, 1, true)
    end)

    it("answers 500 with a generic body when the handler raises, and reports the error", function()
      local seen
      -- the body is the serving system's (here the gateway's internal error)
      local srv = http.new { quiet = true, port = 0, handler = function() error("boom") end, on_error = function(e) seen = e end,
        bodies = require("payhsm.gateway").service:bodies() }
      local out = pki.curl(srv, ("-i http://127.0.0.1:%d/"):format(srv:port()))
      srv:close()
      assert.matches("^HTTP/1.1 500", out)
      assert.matches('"code":"1001"', out, 1, true)
      assert.matches("boom", seen)
    end)

    it("answers its own 413 and 500 with the bodies given, and generic ones without", function()
      local bodies = { [413] = '{"big":true}', [500] = '{"failed":true}' }
      local srv = http.new { quiet = true, port = 0, handler = function() error("boom") end, max_body = 10,
        bodies = bodies }
      local out = pki.curl(srv, ("-i http://127.0.0.1:%d/"):format(srv:port()))
      assert.matches('\r\n\r\n{"failed":true}$', out)
      out = pki.curl(srv, ("-i -d '%s' http://127.0.0.1:%d/"):format(("x"):rep(100), srv:port()))
      srv:close()
      assert.matches('\r\n\r\n{"big":true}$', out)
      srv = http.new { quiet = true, port = 0, handler = function() error("boom") end }
      out = pki.curl(srv, ("-i http://127.0.0.1:%d/"):format(srv:port()))
      srv:close()
      assert.matches('\r\n\r\n{"error":{"code":"500","message":"Internal Server Error"}}$', out)
      assert.has_error(function() http.new { quiet = true, port = 0, handler = echo, bodies = "x" } end)
    end)

    it("refuses bodies over max_body with 413, and reports it to on_refused", function()
      local seen = {}
      local srv = http.new { quiet = true, port = 0, handler = echo, max_body = 10,
        on_refused = function(...) seen[#seen + 1] = { ... } end }
      local out = pki.curl(srv, ("-i -d '%s' http://127.0.0.1:%d/up/load"):format(("x"):rep(100), srv:port()))
      assert.matches("^HTTP/1.1 413", out)
      assert.same({ { "POST", "/up/load", 413, "body over max_body" } }, seen)
      -- a body within max_body reaches the handler and is not reported
      out = pki.curl(srv, ("-i -d 'hello' http://127.0.0.1:%d/"):format(srv:port()))
      srv:close()
      assert.matches("^HTTP/1.1 200", out)
      assert.equal(1, #seen)
    end)

    it("reports the 500 of a failed handler to on_refused, and survives an on_refused that raises", function()
      local seen = {}
      local srv = http.new { quiet = true, port = 0, handler = function() error("boom") end,
        on_refused = function(m, p, status, reason)
          seen[#seen + 1] = { m, p, status, reason }
          error("a logger that fails")
        end }
      local out = pki.curl(srv, ("-i http://127.0.0.1:%d/x"):format(srv:port()))
      srv:close()
      assert.matches("^HTTP/1.1 500", out)
      assert.same({ { "GET", "/x", 500, "the handler raised an error" } }, seen)
    end)

    it("has a monotonic wall clock: a sleep shows in http.clock, not in os.clock", function()
      local t0, c0 = http.clock(), os.clock()
      os.execute("sleep 0.3")
      local dt, dc = http.clock() - t0, os.clock() - c0
      assert.is_true(dt >= 0.25 and dt < 5, tostring(dt))
      assert.is_true(dc < 0.1, tostring(dc))
    end)

    it("server.start logs wall-clock milliseconds per request, and one line for each refusal", function()
      local lines = {}
      local server = require "payhsm.server"
      local srv, app = server.start("gateway", { listen = "127.0.0.1:0", basic_auth = { integrator = "pw" },
        master_keys = { { label = "Z", key_type = "PAN", algorithm = "AES_256", hex = ("11"):rep(32) } } },
        { log = function(l) lines[#lines + 1] = l end })
      local handle = app.handle
      app.handle = function(self, req) -- a handler that waits (as on fsync) without using CPU
        if req.path == "/slow" then os.execute("sleep 0.3") end
        return handle(self, req)
      end
      local big = os.tmpname()
      local f = assert(io.open(big, "wb"))
      f:write(("x"):rep(1024 * 1024 + 1)) -- over the default max_body (1 MiB)
      f:close()
      local base = ("http://127.0.0.1:%d"):format(srv:port())
      pki.curl(srv, "-o /dev/null -u integrator:pw " .. base .. "/slow")
      pki.curl(srv, "-o /dev/null --data-binary @" .. big .. " " .. base .. "/key-management/keys/import")
      pki.curl(srv, "-o /dev/null -u integrator:pw '" .. base .. "/key-mgmt/session-keys/keys/sessionKeyLabel=A%0AB'")
      srv:close()
      os.remove(big)
      local req = {}
      for _, l in ipairs(lines) do if l:match("^%d%d%d%d%-%d%d%-%d%dT") then req[#req + 1] = l end end
      assert.equal(3, #req, table.concat(lines, "\n"))
      local ms = tonumber(req[1]:match("^%S+ GET /slow 404 ([%d.]+)ms$"))
      assert.is_true(ms and ms >= 250, req[1])
      assert.matches("^%S+ POST /key%-management/keys/import 413 %- %(body over max_body%)$", req[2])
      -- a path decoding to a control byte is refused before the handler; the decoded
      -- newline cannot split the log line
      assert.matches("^%S+ GET /key%-mgmt/session%-keys/keys/sessionKeyLabel=A%%0AB 400 %- %(the path or query decodes to a control byte%)$", req[3])
    end)

    it("raises on bad options and a port in use", function()
      assert.has_error(function() http.new { port = 0 } end)
      assert.has_error(function() http.new { quiet = true, port = 70000, handler = echo } end)
      assert.has_error(function() http.new { quiet = true, host = "localhost", port = 0, handler = echo } end)
      local a = http.new { quiet = true, port = 0, handler = echo }
      assert.has_error(function() http.new { quiet = true, port = a:port(), handler = echo } end)
      a:close()
    end)
  end)

  describe("TLS with client certificates", function()
    local srv, base
    local refused = {}
    setup(function()
      srv = http.new { quiet = true, port = 0, handler = echo,
        on_refused = function(...) refused[#refused + 1] = { ... } end,
        tls = { cert = keys.read("server.pem"), key = keys.read("server.key"), client_ca = keys.read("ca.pem") } }
      base = ("--cacert %s https://127.0.0.1:%d/t"):format(keys.path("ca.pem"), srv:port())
    end)
    teardown(function() srv:close() end)

    it("serves a client whose certificate chains to client_ca, and names it", function()
      local out, rc = pki.curl(srv, ("--cert %s --key %s %s"):format(keys.path("client.pem"), keys.path("client.key"), base))
      assert.equal(0, rc)
      assert.matches('"cn":"CN=client"', out, 1, true)
    end)

    it("refuses a client without a certificate, before the handler runs, and reports a 403", function()
      local out, rc = pki.curl(srv, "-i " .. base)
      assert.is_true(rc ~= 0 or out:match("^HTTP/1.1 403") ~= nil, out)
      assert.is_nil(out:match('"method"'))
      if rc == 0 then -- refused with 403 (not at the handshake): on_refused heard of it
        assert.same({ "GET", "/t", 403, "no client certificate that chains to client_ca" }, refused[#refused])
      end
    end)

    it("refuses a certificate from another CA", function()
      local out, rc = pki.curl(srv, ("-i --cert %s --key %s %s"):format(keys.path("stranger.pem"), keys.path("stranger.key"), base))
      assert.is_true(rc ~= 0 or out:match("^HTTP/1.1 403") ~= nil, out)
      assert.is_nil(out:match('"method"'))
    end)

    -- The chain is checked once per connection and the verdict kept for its later requests
    -- (csrc/http.c, conn_ctx): these pin that the kept verdict is the connection's own.
    -- curl reuses one connection for several URLs; %{num_connects} is 1 for the transfer
    -- that opened it and 0 for those that reused it.
    local function transfers(out)
      local t = {}
      for body, code, connects in out:gmatch("([^\n]-)<(%d+) (%d+)>\n") do
        t[#t + 1] = { body = body, code = tonumber(code), connects = tonumber(connects) }
      end
      return t
    end
    local W = "-w '<%{http_code} %{num_connects}>\\n' "

    it("serves every request of a keep-alive connection with a good certificate", function()
      local cert = ("--cert %s --key %s "):format(keys.path("client.pem"), keys.path("client.key"))
      local url = ("https://127.0.0.1:%d/t"):format(srv:port())
      local out, rc = pki.curl(srv, W .. cert .. "--cacert " .. keys.path("ca.pem") .. (" " .. url):rep(4))
      assert.equal(0, rc, out)
      local t = transfers(out)
      assert.equal(4, #t, out)
      for i, x in ipairs(t) do
        assert.equal(200, x.code, out)
        assert.equal(i == 1 and 1 or 0, x.connects, out) -- one connection, reused
        assert.matches('"cn":"CN=client"', x.body, 1, true)
      end
    end)

    it("refuses a stranger's certificate on its first request and on every later one of the connection", function()
      local n = #refused
      local cert = ("--cert %s --key %s "):format(keys.path("stranger.pem"), keys.path("stranger.key"))
      local url = ("https://127.0.0.1:%d/t"):format(srv:port())
      local out, rc = pki.curl(srv, W .. cert .. "--cacert " .. keys.path("ca.pem") .. (" " .. url):rep(3))
      assert.is_nil(out:match('"method"'), out)
      if rc == 0 then -- refused with 403, not at the handshake
        local t = transfers(out)
        assert.equal(3, #t, out)
        for _, x in ipairs(t) do assert.equal(403, x.code, out) end
        assert.equal(n + 3, #refused)
      end
    end)

    it("refuses a stranger's connection right after a good one (a verdict is per connection)", function()
      local url = ("https://127.0.0.1:%d/t"):format(srv:port())
      local out = pki.curl(srv, ("--stderr /dev/null %s--cacert %s --cert %s --key %s %s --next --stderr /dev/null %s--cacert %s --cert %s --key %s %s"):format(
        W, keys.path("ca.pem"), keys.path("client.pem"), keys.path("client.key"), url,
        W, keys.path("ca.pem"), keys.path("stranger.pem"), keys.path("stranger.key"), url))
      local t = transfers(out)
      assert.equal(200, t[1] and t[1].code, out)
      assert.matches('"cn":"CN=client"', t[1].body, 1, true, out)
      -- the second transfer: 403, or no answer at all (refused at the handshake)
      assert.is_true(t[2] == nil or t[2].code == 403 or t[2].code == 0, out)
      local _, handled = out:gsub('"method"', "")
      assert.equal(1, handled, out)
    end)

    it("refuses TLS below 1.2", function()
      local _, rc = pki.curl(srv, ("--tlsv1.0 --tls-max 1.1 --cert %s --key %s %s"):format(keys.path("client.pem"), keys.path("client.key"), base))
      assert.are_not.equal(0, rc)
    end)

    it("speaks TLS 1.2 and 1.3", function()
      for _, v in ipairs { "--tlsv1.2 --tls-max 1.2", "--tlsv1.3" } do
        local out, rc = pki.curl(srv, ("%s --cert %s --key %s %s"):format(v, keys.path("client.pem"), keys.path("client.key"), base))
        assert.equal(0, rc, out)
      end
    end)
  end)

  it("raises on TLS material that does not load", function()
    assert.has_error(function() http.new { quiet = true, port = 0, handler = echo, tls = { cert = "nope", key = "nope" } } end)
    assert.has_error(function() http.new { quiet = true, port = 0, handler = echo, tls = { cert = keys.read("server.pem") } } end)
  end)
end)

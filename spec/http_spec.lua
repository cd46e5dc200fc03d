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
      local srv = http.new { quiet = true, port = 0, handler = function() error("boom") end, on_error = function(e) seen = e end }
      local out = pki.curl(srv, ("-i http://127.0.0.1:%d/"):format(srv:port()))
      srv:close()
      assert.matches("^HTTP/1.1 500", out)
      assert.matches('"code":"1001"', out, 1, true)
      assert.matches("boom", seen)
    end)

    it("refuses bodies over max_body with 413", function()
      local srv = http.new { quiet = true, port = 0, handler = echo, max_body = 10 }
      local out = pki.curl(srv, ("-i -d '%s' http://127.0.0.1:%d/"):format(("x"):rep(100), srv:port()))
      srv:close()
      assert.matches("^HTTP/1.1 413", out)
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
    setup(function()
      srv = http.new { quiet = true, port = 0, handler = echo,
        tls = { cert = keys.read("server.pem"), key = keys.read("server.key"), client_ca = keys.read("ca.pem") } }
      base = ("--cacert %s https://127.0.0.1:%d/t"):format(keys.path("ca.pem"), srv:port())
    end)
    teardown(function() srv:close() end)

    it("serves a client whose certificate chains to client_ca, and names it", function()
      local out, rc = pki.curl(srv, ("--cert %s --key %s %s"):format(keys.path("client.pem"), keys.path("client.key"), base))
      assert.equal(0, rc)
      assert.matches('"cn":"CN=client"', out, 1, true)
    end)

    it("refuses a client without a certificate, before the handler runs", function()
      local out, rc = pki.curl(srv, "-i " .. base)
      assert.is_true(rc ~= 0 or out:match("^HTTP/1.1 403") ~= nil, out)
      assert.is_nil(out:match('"method"'))
    end)

    it("refuses a certificate from another CA", function()
      local out, rc = pki.curl(srv, ("-i --cert %s --key %s %s"):format(keys.path("stranger.pem"), keys.path("stranger.key"), base))
      assert.is_true(rc ~= 0 or out:match("^HTTP/1.1 403") ~= nil, out)
      assert.is_nil(out:match('"method"'))
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

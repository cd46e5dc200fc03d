-- lua/payhsm/server.lua: config loading, store selection, logging, TLS from files.
local server = require "payhsm.server"
local pki = require "spec.support.pki"

describe("server", function()
  local keys
  setup(function()
    keys = pki.make()
    server.systems.echo = "spec.support.echo_system"
  end)
  teardown(function()
    pki.remove(keys)
    server.systems.echo = nil
  end)

  it("parses listen addresses and refuses bad ones", function()
    assert.same({ "127.0.0.1", 8443 }, { server.parse_listen("127.0.0.1:8443") })
    for _, bad in ipairs { "localhost:80", "127.0.0.1", "127.0.0.1:99999", ":80" } do
      assert.has_error(function() server.parse_listen(bad) end)
    end
  end)

  it("loads a config file and reports a broken one", function()
    local path = os.tmpname()
    local f = io.open(path, "w")
    f:write('return {listen = "127.0.0.1:0", store = {backend = "memory"}}')
    f:close()
    assert.equal("127.0.0.1:0", server.load_config(path).listen)
    f = io.open(path, "w")
    f:write("return 42")
    f:close()
    assert.has_error(function() server.load_config(path) end)
    f = io.open(path, "w")
    f:write("return {")
    f:close()
    assert.has_error(function() server.load_config(path) end)
    os.remove(path)
    assert.has_error(function() server.open_store({ backend = "floppy" }) end)
  end)

  it("serves a system over mutual TLS from PEM files and logs one line per request", function()
    local lines = {}
    local srv = server.start("echo", {
      listen = "127.0.0.1:0",
      tls = { cert = keys.path("server.pem"), key = keys.path("server.key"), client_ca = keys.path("ca.pem") },
    }, { log = function(l) lines[#lines + 1] = l end, quiet = true })
    local base = ("--cacert %s --cert %s --key %s https://127.0.0.1:%d"):format(keys.path("ca.pem"),
      keys.path("client.pem"), keys.path("client.key"), srv:port())
    local out, rc = pki.curl(srv, "-u user:secret " .. base .. "/x")
    assert.equal(0, rc)
    assert.matches('"n":1', out, 1, true)
    out = pki.curl(srv, "-i " .. base .. "/missing")
    assert.matches("^HTTP/1.1 404", out)
    srv:close()
    assert.equal(2, #lines)
    assert.matches("^%d+%-%d+%-%d+T[%d:]+Z GET /x 200 [%d.]+ms$", lines[1])
    assert.matches(" GET /missing 404 ", lines[2])
    for _, l in ipairs(lines) do assert.is_nil(l:find("secret", 1, true)) end
  end)

  it("refuses unknown systems and unreadable TLS files", function()
    assert.has_error(function() server.start("bank", { listen = "127.0.0.1:0" }) end)
    assert.has_error(function()
      server.start("echo", { listen = "127.0.0.1:0", tls = { cert = "/nonexistent", key = "/nonexistent" } })
    end)
  end)
end)

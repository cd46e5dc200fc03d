-- Embedding in a real Lua host: lighttpd's mod_magnet (Debian lighttpd-modules-lua, Lua 5.4)
-- loads payhsm and serves the MSK gateway's Get Keys and Get Key from a sqlite store that
-- the gateway library filled; the spec starts lighttpd on loopback and calls it with curl.
local hsm = require "payhsm"
local cjson = require "cjson"
local gateway = require "payhsm.gateway"
local client_mod = require "payhsm.gateway.client"
local support = require "spec.support.redis" -- free_port

local ZMK = ("7A"):rep(32)

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("embedding in lighttpd (mod_magnet)", function()
  it("serves Get Keys and Get Key through payhsm.embed.lighttpd", function()
    assert(os.execute("command -v lighttpd >/dev/null && test -f /usr/lib/lighttpd/mod_magnet.so"),
      "lighttpd and lighttpd-modules-lua are not installed (make deps installs them)")
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local later = require("spec.support.defer")(finally)
    later(function() if not os.getenv("KEEP") then os.execute("rm -rf " .. dir) end end)
    local root = io.popen("pwd"):read("*l")
    local db = dir .. "/gw.db"
    local conf = ([[return {
      basic_auth = { integrator = "pa55word" },
      store = { backend = "sqlite", path = %q },
      master_keys = { { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = %q } },
    }]]):format(db, ZMK)
    write(dir .. "/gateway.conf.lua", conf)
    -- fill the store with the library, as `serve gateway` would
    local cfg = assert(load(conf))()
    cfg.store = require("payhsm.store.sqlite").new { path = db }
    local gw = gateway.new(cfg)
    local c = client_mod.new { transport = function(req) return gw:handle(req) end, user = "integrator",
      password = "pa55word", zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = hsm.key.import("AES_256", ZMK) } } }
    local a = assert(c:rotate("PAN", "DEK_LIGHTY"))
    local b = assert(c:rotate("PAN", "DEK_LIGHTY"))
    gw.store:close()

    write(dir .. "/gateway.magnet.lua", ([[
package.path = %q .. package.path
package.cpath = %q .. package.cpath
return require("payhsm.embed.lighttpd").serve("gateway", %q, lighty)
]]):format(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;", root .. "/build/?.so;", dir .. "/gateway.conf.lua"))
    local port = support.free_port()
    write(dir .. "/lighttpd.conf", ([[
server.document-root = %q
server.bind = "127.0.0.1"
server.port = %d
server.modules += ( "mod_magnet" )
magnet.attract-raw-url-to = ( %q )
server.errorlog = %q
server.pid-file = %q
]]):format(dir, port, dir .. "/gateway.magnet.lua", dir .. "/error.log", dir .. "/lighttpd.pid"))
    os.execute(("env -u LD_PRELOAD lighttpd -D -f %s/lighttpd.conf >%s/out.log 2>&1 &"):format(dir, dir))
    later(function()
      local pf = io.open(dir .. "/lighttpd.pid")
      if pf then os.execute("kill " .. pf:read("*a"):match("%d+")) pf:close() end
    end)
    local function get(path, auth)
      local p = io.popen(("env -u LD_PRELOAD curl -s -w '\\n%%{http_code}' %s http://127.0.0.1:%d%s 2>/dev/null")
        :format(auth and "-u integrator:pa55word" or "", port, path))
      local out = p:read("*a")
      p:close()
      local body, code = out:match("^(.*)\n(%d+)$")
      return tonumber(code), body
    end
    local code, body
    for _ = 1, 100 do
      code, body = get("/key-mgmt/session-keys/keys/sessionKeyLabel=DEK_LIGHTY", true)
      if code and code > 0 then break end
      os.execute("sleep 0.05")
    end
    assert.equal(200, code, body)
    local doc = cjson.decode(body)
    assert.equal("getKeysResponse", doc.type)
    assert.equal(2, #doc.keys)
    local kcvs = { [doc.keys[1].sessionKeyCheckValue] = true, [doc.keys[2].sessionKeyCheckValue] = true }
    assert.is_true(kcvs[a.sessionKeyCheckValue] and kcvs[b.sessionKeyCheckValue])
    code, body = get("/key-management/keys/" .. b.sessionKeyId, true)
    assert.equal(200, code)
    assert.equal("3.0", cjson.decode(body).key.version)
    code, body = get("/key-management/keys/" .. b.sessionKeyId, false)
    assert.equal(401, code)
    assert.equal("401", cjson.decode(body).error.code)
  end)
end)

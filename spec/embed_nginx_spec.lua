-- Embedding in a real Lua host: nginx's Lua module (Debian libnginx-mod-http-lua, LuaJIT 2.1)
-- loads payhsm (its C modules from build-jit) and serves the whole MSK gateway of
-- Fiserv's host-to-host MSK API through payhsm.embed.nginx: two workers sharing one sqlite
-- store; the spec starts nginx on loopback and calls it with curl. Import Key, Get Key, Get
-- Keys, the 401 without Basic credentials and the 409 / 301 of a duplicate import are the
-- Fiserv's (PAN re-encryption is payhsm's, docs/msk-gateway.md); the second server reads every body from nginx's temporary file
-- (client_body_in_file_only), the path a large body takes.
local hsm = require "payhsm"
local cjson = require "cjson"
local client_mod = require "payhsm.gateway.client"
local gateway = require "payhsm.gateway"
local support = require "spec.support.redis" -- free_port

local ZMK = ("5C"):rep(32)
local LABEL = "DEK%41 NGINX" -- sent as DEK%2541%20NGINX: decoded once by nginx, the gateway takes it literally

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function nginx_binary()
  local p = io.popen("command -v nginx 2>/dev/null || ls /usr/sbin/nginx 2>/dev/null")
  local path = p:read("*l")
  p:close()
  return path
end

describe("embedding in nginx (libnginx-mod-http-lua, LuaJIT)", function()
  it("serves Import Key, Get Key and Get Keys from two workers sharing a sqlite store", function()
    local nginx = nginx_binary()
    assert(nginx and os.execute("test -f /usr/lib/nginx/modules/ngx_http_lua_module.so"
        .. " && test -f /usr/lib/nginx/modules/ndk_http_module.so && test -f /usr/share/lua/5.1/resty/core.lua"),
      "nginx, libnginx-mod-http-lua and lua-resty-core are not installed (make deps installs them)")
    local root = io.popen("pwd"):read("*l")
    -- make decides what is stale: a build left from an older tree would serve old code
    assert(os.execute("make -s B=build-jit LUA_INC=/usr/include/luajit-2.1 core >/dev/null"),
      "building payhsm's C modules for LuaJIT failed (make B=build-jit LUA_INC=/usr/include/luajit-2.1 core)")
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local later = require("spec.support.defer")(finally)
    later(function() if not os.getenv("KEEP") then os.execute("rm -rf " .. dir) end end)

    write(dir .. "/gateway.conf.lua", ([[return {
      listen = "127.0.0.1:1", -- nginx's business: ignored by payhsm.embed
      basic_auth = { integrator = "pa55word" },
      store = { backend = "sqlite", path = %q },
      master_keys = { { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = %q } },
    }]]):format(dir .. "/gw.db", ZMK))
    write(dir .. "/gateway.lua", ("require('payhsm.embed.nginx').serve('gateway', %q)\n")
      :format(dir .. "/gateway.conf.lua"))
    local port, file_port = support.free_port(), support.free_port()
    assert.is_not.equal(port, file_port)
    -- run as root (as on CI), the workers would be nobody: keep them this user, who owns dir
    local as_root = io.popen("id -u"):read("*l") == "0"
    write(dir .. "/nginx.conf", ([[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
%s
daemon off;
master_process on;
worker_processes 2;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 64; }
http {
  log_format served '$pid $server_port $status $request_method $uri';
  access_log %s/access.log served;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;;";
  lua_package_cpath "%s/build-jit/?.so;;";
  server {
    listen 127.0.0.1:%d reuseport;
    location / { content_by_lua_file %s/gateway.lua; }
  }
  server {
    listen 127.0.0.1:%d reuseport;
    client_body_in_file_only clean;
    location / { content_by_lua_file %s/gateway.lua; }
  }
}
]]):format(as_root and "user root;" or "", dir, dir, dir, dir, dir, dir, dir, dir, root, root, root,
        port, dir, file_port, dir))
    os.execute(("env -u LD_PRELOAD %s -p %s -e %s/error.log -c %s/nginx.conf >%s/out.log 2>&1 &")
      :format(nginx, dir, dir, dir, dir))
    later(function()
      local pid = read(dir .. "/nginx.pid"):match("%d+")
      if not pid then return end
      os.execute("kill " .. pid .. " 2>/dev/null")
      for _ = 1, 100 do -- the master waits for its workers; then dir can go
        if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
        os.execute("sleep 0.05")
      end
    end)

    -- one HTTP exchange through curl: status, body
    local n = 0
    local function http(p, method, path, headers, body)
      n = n + 1
      local args = { "env -u LD_PRELOAD curl -s -o", dir .. "/resp" .. n, "-w '%{http_code}' -X", method }
      for k, v in pairs(headers or {}) do args[#args + 1] = "-H " .. sh_quote(k .. ": " .. v) end
      if body then
        write(dir .. "/req" .. n, body)
        args[#args + 1] = "--data-binary @" .. dir .. "/req" .. n
      end
      args[#args + 1] = sh_quote(("http://127.0.0.1:%d%s"):format(p, path))
      local pipe = io.popen(table.concat(args, " ") .. " 2>/dev/null")
      local code = tonumber(pipe:read("*a"))
      pipe:close()
      return code, read(dir .. "/resp" .. n)
    end
    local function transport(p)
      return function(req)
        local code, body = http(p, req.method, req.path, req.headers, req.body)
        if not code or code == 0 then return nil, "no answer" end
        return { status = code, body = body }
      end
    end
    local zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = hsm.key.import("AES_256", ZMK) } }
    local c = client_mod.new { transport = transport(port), user = "integrator", password = "pa55word", zmks = zmks,
      attempts = 1 }
    local auth = { authorization = c.auth, ["content-type"] = "application/json" }

    local code, body
    for _ = 1, 100 do
      code, body = http(port, "GET", gateway.PATHS.keys .. client_mod.url_encode(LABEL), auth)
      if code and code > 0 then break end
      os.execute("sleep 0.05")
    end
    assert.equal(404, code, body .. read(dir .. "/out.log") .. read(dir .. "/error.log"))
    assert.equal("3921", cjson.decode(body).error.code)

    -- Import Key (the body from nginx's memory buffer)
    local key = c:generate("PAN")
    local import_body = require("payhsm.util").json(c:import_request("PAN", LABEL, key))
    code, body = http(port, "POST", gateway.PATHS.import, auth, import_body)
    assert.equal(200, code, body .. read(dir .. "/error.log"))
    local imported = cjson.decode(body)
    assert.equal(key:kcv("CMAC"), imported.sessionKeyCheckValue)

    -- no Basic credentials: 401, nothing imported
    code, body = http(port, "POST", gateway.PATHS.import, { ["content-type"] = "application/json" },
      require("payhsm.util").json(c:import_request("PAN", "DEK_NOAUTH", c:generate("PAN"))))
    assert.equal(401, code)
    assert.equal("401", cjson.decode(body).error.code)
    code = http(port, "GET", gateway.PATHS.keys .. "DEK_NOAUTH", auth)
    assert.equal(404, code)

    -- the same key again, through the server whose bodies are temporary files: 409 / 301
    code, body = http(file_port, "POST", gateway.PATHS.import, auth, import_body)
    assert.equal(409, code, body)
    assert.equal("301", cjson.decode(body).error.code)
    -- a new key through that server: the body was read from the file
    local c2 = client_mod.new { transport = transport(file_port), user = "integrator", password = "pa55word",
      zmks = zmks, attempts = 1 }
    local second = assert(c2:rotate("PAN", LABEL))

    -- Get Keys: both, by check value; Get Key: each, from either worker
    local keys = assert(c:get_keys(LABEL))
    assert.equal(2, #keys)
    local kcvs = {}
    for _, k in ipairs(keys) do
      assert.equal(LABEL, k.sessionKeyLabel)
      kcvs[k.sessionKeyCheckValue] = k.sessionKeyId
    end
    assert.equal(imported.sessionKeyId, kcvs[key:kcv("CMAC")])
    assert.equal(second.sessionKeyId, kcvs[second.key:kcv("CMAC")])
    for i = 1, 24 do -- separate connections: reuseport spreads them over both workers
      local want = i % 2 == 0 and imported or second
      local k = assert(c:get_key(want.sessionKeyId))
      assert.equal(want.sessionKeyCheckValue, k.sessionKeyCheckValue)
      assert.equal("PAN", k.keyType)
      assert.equal(LABEL, k.sessionKeyLabel)
    end
    -- PAN re-encryption (a POST endpoint) from both workers: one gateway PAN key, created once
    -- in the shared store; the gateway library opened on that store reads every answer
    local outs = {}
    for i = 1, 16 do
      outs[i] = assert(c:reencrypt_pan(second, second.key, "4111111111111111"))
      assert.equal(outs[1].gatewayKeyCheckValue, outs[i].gatewayKeyCheckValue)
    end
    local cfg = assert(loadfile(dir .. "/gateway.conf.lua"))()
    cfg.store = require("payhsm.store.sqlite").new { path = dir .. "/gw.db" }
    local gw = gateway.new(cfg)
    assert.equal(outs[1].gatewayKeyCheckValue, gw.gw_pan:kcv("CMAC"))
    for _, out in ipairs(outs) do
      assert.equal("4111111111111111", client_mod.decrypt_pan(gw.gw_pan, out.encryptedPan, out.iv))
    end
    gw.store:close()
    key:close()
    second.key:close()

    -- both workers answered Get Key and PAN re-encryption (so a key imported through one was
    -- found by the other)
    local pids = {}
    for line in read(dir .. "/access.log"):gmatch("[^\n]+") do
      local pid, status, method, uri = line:match("^(%d+) %d+ (%d+) (%u+) (%S+)")
      local what = method == "GET" and uri:find(gateway.PATHS.key, 1, true) == 1 and "get"
        or method == "POST" and uri == gateway.PATHS.pan and "pan"
      if status == "200" and what then
        pids[what] = pids[what] or {}
        pids[what][pid] = true
      end
    end
    for _, what in ipairs { "get", "pan" } do
      local workers = 0
      for _ in pairs(pids[what] or {}) do workers = workers + 1 end
      assert.equal(2, workers, what .. ":\n" .. read(dir .. "/access.log"))
    end
    assert.is_nil(read(dir .. "/error.log"):find("%[error%]"), read(dir .. "/error.log"))
  end)
end)

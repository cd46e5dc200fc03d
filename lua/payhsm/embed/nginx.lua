--- Runs a payhsm simulator inside nginx (Debian `libnginx-mod-http-lua`, which runs LuaJIT
-- 2.1; payhsm's C modules built for it with `make B=build-jit LUA_INC=/usr/include/luajit-2.1
-- core`). Every endpoint works, POSTs included: the content handler reads the request body.
--
--   # nginx.conf (examples/nginx/ has a complete one)
--   load_module /usr/lib/nginx/modules/ndk_http_module.so;
--   load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
--   http {
--     lua_package_path "/opt/payhsm/lua/?.lua;/opt/payhsm/lua/?/init.lua;;";
--     lua_package_cpath "/opt/payhsm/build-jit/?.so;;";
--     server { listen 127.0.0.1:8080; location / { content_by_lua_file /opt/payhsm/examples/nginx/gateway.lua; } }
--   }
--   -- gateway.lua
--   require("payhsm.embed.nginx").serve("gateway", "/opt/payhsm/examples/gateway.conf.lua")
--
-- The handler is built once per nginx worker (on the worker's first request; the module
-- stays in package.loaded while lua_code_cache is on) from the config file `bin/payhsm
-- serve` reads; its listen and tls are nginx's business and are ignored. The store must be
-- one the workers share: sqlite (the default; several processes may share the file, and
-- imports are atomic across them) or redis; a memory store is refused (payhsm.embed).
-- The store's calls block the worker while they run (sqlite's fsync, its busy timeout
-- when another worker holds the write lock), as they block `bin/payhsm serve`.
--
-- What the handler gets: the method; the path decoded once and normalised by nginx
-- ($uri, as payhsm.http and lighttpd's uri.path hand it over: the gateway does not decode
-- again); the raw query string ($args); the headers, names lower-cased, a repeated header's
-- values joined with ", "; the body, from memory or, when nginx buffered it to a temporary
-- file (bodies over client_body_buffer_size, or client_body_in_file_only), from that file.
-- Bodies over client_max_body_size get nginx's own 413 before the handler runs.
local embed = require "payhsm.embed"

local M = {}

-- The application's log lines (warnings about the config, internal errors it answered)
-- and the failures it could not answer go to nginx's error log.
local function log(line)
  ngx.log(ngx.WARN, line)
end

local function log_error(line)
  ngx.log(ngx.ERR, line)
end

-- The request body: memory, else nginx's temporary file, else "".
local function body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local path = ngx.req.get_body_file()
  if not path then return "" end
  local f, err = io.open(path, "rb")
  if not f then error("embed.nginx: cannot read the request body's temporary file: " .. tostring(err), 0) end
  data = f:read("*a")
  f:close()
  return data or ""
end

--- The request table the handler gets (see above), from the current nginx request.
function M.request()
  local headers = {}
  for k, v in pairs(ngx.req.get_headers(0)) do
    if type(v) == "table" then v = table.concat(v, ", ") end
    headers[k:lower()] = v
  end
  return { method = ngx.req.get_method(), path = ngx.var.uri, query = ngx.var.args,
    headers = headers, body = body() }
end

--- Serves the current request (content_by_lua*): status, headers and body of the
-- simulator's answer (500 with a generic JSON body, and the reason in nginx's error
-- log, when the request cannot be read or the handler fails).
function M.serve(system, config_path)
  local opts = { shared = true, log = log, log_error = log_error }
  local ok, req = pcall(M.request)
  local resp
  if ok then
    resp = embed.handle(system, config_path, req, opts)
  else
    resp = embed.failure(req, log_error, system)
  end
  local out = resp.body or ""
  ngx.status = resp.status or 200
  for k, v in pairs(resp.headers or {}) do ngx.header[k] = v end
  ngx.header["Content-Length"] = #out
  ngx.print(out)
  return ngx.exit(ngx.status)
end

return M

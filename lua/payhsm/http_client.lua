--- A small HTTP/1.1 client with keep-alive and mutual TLS, on LuaSocket and LuaSec
-- (Debian lua-socket / lua-sec): the integrator and device sides of the simulators and
-- the benchmarks use it to talk to `payhsm serve`.
--
--   local c = require("payhsm.http_client").new{host = "127.0.0.1", port = 8443,
--       tls = {cafile = "ca.pem", certificate = "client.pem", key = "client.key", -- optional
--              servername = "host.example"},  -- optional: SNI, and the certificate must name it
--       timeout = 5}
--   local resp, err = c:request{method = "POST", path = "/x", headers = {...}, body = "..."}
--   -- resp = {status = 200, headers = {lower-case name = value}, body = "..."}
--   c:close()
-- TLS 1.2 or 1.3 only; the server certificate is verified against cafile. One connection
-- is kept open and reused; a request on a connection the server closed is retried once
-- on a new one.
local socket = require "socket"
local util = require "payhsm.util"

local M = {}
local Client = {}
Client.__index = Client

function M.new(opts)
  util.checkfields(opts, "http_client.new", { "host", "port", "timeout", "tls" })
  assert(type(opts) == "table" and opts.host and opts.port, "http_client.new{host=, port=}")
  return setmetatable({ opts = opts, conn = nil }, Client)
end

function Client:_connect()
  local o = self.opts
  local sock = socket.tcp()
  sock:settimeout(o.timeout or 5)
  local ok, err = sock:connect(o.host, o.port)
  if not ok then sock:close() return nil, "connect: " .. tostring(err) end
  sock:setoption("tcp-nodelay", true)
  if o.tls then
    local ssl = require "ssl"
    local conn, werr = ssl.wrap(sock, {
      mode = "client", protocol = "any", verify = o.tls.verify or "peer",
      options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" },
      cafile = o.tls.cafile, certificate = o.tls.certificate, key = o.tls.key,
    })
    if not conn then sock:close() return nil, "tls: " .. tostring(werr) end
    conn:settimeout(o.timeout or 5)
    local name = o.tls.servername
    if name and not name:match("^%d+%.%d+%.%d+%.%d+$") then conn:sni(name) end -- RFC 6066: DNS names only
    local hok, herr = conn:dohandshake()
    if not hok then conn:close() return nil, "tls handshake: " .. tostring(herr) end
    if name then -- RFC 6125: the certificate must name the host, not just chain to cafile
      local cert = conn:getpeercertificate()
      local named, names = false, "no certificate"
      if cert then named, names = require("payhsm.mupk.webhook").cert_names_host(cert, name) end
      if not named then
        conn:close()
        return nil, ("tls: the server certificate does not name %s (it names: %s)"):format(name, tostring(names))
      end
    end
    sock = conn
  end
  self.conn = sock
  return sock
end

local function read_response(conn)
  local line, err = conn:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then return nil, "bad status line" end
  local headers = {}
  while true do
    local h, herr = conn:receive("*l")
    if not h then return nil, herr end
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  local body = ""
  local len = tonumber(headers["content-length"] or "0")
  if len and len > 0 then
    local b, berr = conn:receive(len)
    if not b then return nil, berr end
    body = b
  end
  return { status = status, headers = headers, body = body }
end

function Client:_once(req)
  local conn = self.conn
  if not conn then
    local err
    conn, err = self:_connect()
    if not conn then return nil, err, true end
  end
  local body = req.body or ""
  local parts = { ("%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: %d\r\n"):format(req.method or "GET",
    req.path or "/", self.opts.host, self.opts.port, #body) }
  for k, v in pairs(req.headers or {}) do parts[#parts + 1] = ("%s: %s\r\n"):format(k, v) end
  parts[#parts + 1] = "\r\n"
  parts[#parts + 1] = body
  local ok, err = conn:send(table.concat(parts))
  if not ok then self:close() return nil, err, false end
  local resp, rerr = read_response(conn)
  if not resp then self:close() return nil, rerr, false end
  if (resp.headers.connection or ""):lower() == "close" then self:close() end
  return resp
end

--- Sends one request; returns the response table or nil, error.
function Client:request(req)
  local fresh = self.conn == nil
  local resp, err, connect_failed = self:_once(req)
  if not resp and not fresh and not connect_failed then resp, err = self:_once(req) end -- stale keep-alive
  return resp, err
end

function Client:close()
  if self.conn then self.conn:close() end
  self.conn = nil
end

return M

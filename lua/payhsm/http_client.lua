--- The HTTP/1.1 client of payhsm, on LuaSocket and LuaSec (Debian lua-socket / lua-sec):
-- the integrator and device sides of the simulators, the merchant, the mupk service's
-- expiry webhooks (payhsm.mupk.webhook) and the benchmarks all talk through it.
--
--   local c = require("payhsm.http_client").new{host = "127.0.0.1", port = 8443,
--       tls = {cafile = "ca.pem", certificate = "client.pem", key = "client.key", -- optional
--              servername = "host.example"},  -- optional: SNI and the name checked, when not host
--       timeout = 5,              -- seconds per request (connect, send and answer)
--       pump = fn,                -- optional: called whenever the socket would block
--       resolve = {[host] = ip},  -- optional: connect there instead of asking the resolver
--       keep_alive = true}        -- false: one connection per request (Connection: close)
--   local resp, err, kind = c:request{method = "POST", path = "/x", headers = {...}, body = "..."}
--   -- resp = {status = 200, headers = {lower-case name = value}, body = "..."}
--   -- on failure kind is "not_sent" or "ambiguous" (see below)
--   c:close()
--
-- TLS 1.2 or 1.3 only. The server's certificate must chain to cafile (verify = "peer",
-- the default), the ClientHello carries the host as SNI (RFC 6066 section 3), and the
-- certificate must name the host (RFC 6125 / RFC 2818 section 3.1): an IP host must be one
-- of its subjectAltName iPAddress entries; a DNS host one of its dNSName entries (a "*"
-- only as the whole left-most label), or its subject CN when it has no subjectAltName at
-- all. tls.verify = "none" turns both checks off (test rigs only).
--
-- The answer is read as HTTP/1.1 frames it (RFC 9112 section 6): the status line (1xx
-- interim answers skipped), the headers, then a body delimited by Transfer-Encoding:
-- chunked, else Content-Length, else the end of the connection (none for 204/304).
--
-- One connection is kept open and reused. A failure says whether the request may have
-- reached the server: "not_sent" (connect, TLS or hostname failure, or the request not
-- fully sent) or "ambiguous" (sent, but no complete answer). A request is sent again on a
-- new connection only when it was not sent on a kept-alive one the server had closed, or
-- when its method is idempotent (RFC 9110 section 9.2.2) and that connection closed before
-- any byte of the answer (RFC 9112 section 9.3.1): a POST that may have arrived is never
-- repeated behind the caller's back.
local socket = require "socket"
local util = require "payhsm.util"

local M = {}

local MAX_BODY = 16 * 1024 * 1024
local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, PUT = true, DELETE = true }

--- "http://host:port/path" -> scheme, host, port, path (or nil)
function M.parse_url(url)
  local scheme, host, port, path = tostring(url):match("^(https?)://([^:/]+):?(%d*)(/?.*)$")
  if not scheme then return nil end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  return scheme, host, port, path ~= "" and path or "/"
end

local function io_loop(op, pump, deadline)
  while true do
    local ok, err = op()
    if ok then return ok end
    if err ~= "timeout" and err ~= "wantread" and err ~= "wantwrite" then return nil, err end
    if socket.gettime() > deadline then return nil, "timeout" end
    if pump then pump() else socket.sleep(0.001) end
  end
end

-- ---- certificate names (RFC 6125) ------------------------------------------------------------

local function is_ip(host) return host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil end

-- A presented DNS name matches host: equal ignoring case, or "*.rest" where rest equals
-- everything after host's first label (the wildcard is one whole label, never a suffix).
local function dns_match(pattern, host)
  pattern, host = pattern:lower(), host:lower():gsub("%.$", "")
  if pattern == host then return true end
  local rest = pattern:match("^%*%.(.+)$")
  if not rest or not rest:find(".", 1, true) then return false end
  local tail = host:match("^[^%.]+%.(.+)$")
  return tail ~= nil and tail == rest
end

--- Whether the certificate (a LuaSec x509 object) names host. Returns true, or false
-- and the names it does carry (for the error message).
function M.cert_names_host(cert, host)
  local san
  for oid, ext in pairs(cert:extensions() or {}) do
    if oid == "2.5.29.17" then san = ext end
  end
  local seen = {}
  if san then
    local list = is_ip(host) and san.iPAddress or san.dNSName
    for _, name in ipairs(list or {}) do
      seen[#seen + 1] = name
      if is_ip(host) and name == host then return true end
      if not is_ip(host) and dns_match(name, host) then return true end
    end
    return false, table.concat(seen, ", ")
  end
  if is_ip(host) then return false, "no subjectAltName" end
  for _, entry in ipairs(cert:subject() or {}) do
    if entry.oid == "2.5.4.3" then
      seen[#seen + 1] = entry.value
      if dns_match(entry.value, host) then return true end
    end
  end
  return false, table.concat(seen, ", ")
end

-- ---- reading the answer --------------------------------------------------------------------

-- A buffered reader over a non-blocking socket, waiting (select, or pump) up to the
-- deadline of the current request (r.deadline). r.got counts the bytes received.
local function reader(sock, pump)
  local buf, closed = "", false
  local r = { got = 0, deadline = 0 }
  local function more()
    if closed then return nil, "closed" end
    local data, err, partial = sock:receive(8192)
    local got = data or partial
    if got and got ~= "" then
      buf = buf .. got
      r.got = r.got + #got
      return true
    end
    if err == "closed" then closed = true return nil, "closed" end
    if err ~= "timeout" and err ~= "wantread" and err ~= nil then return nil, err end
    local left = r.deadline - socket.gettime()
    if left < 0 then return nil, "timeout" end
    if pump then pump() else socket.select({ sock }, nil, math.min(left, 0.05)) end
    return true
  end
  function r.line()
    while true do
      local i = buf:find("\r\n", 1, true)
      if i then
        local l = buf:sub(1, i - 1)
        buf = buf:sub(i + 2)
        return l
      end
      if #buf > 16384 then return nil, "header line too long" end
      local ok, err = more()
      if not ok then return nil, err end
    end
  end
  function r.bytes(n)
    while #buf < n do
      local ok, err = more()
      if not ok then return nil, err end
    end
    local s = buf:sub(1, n)
    buf = buf:sub(n + 1)
    return s
  end
  function r.rest(limit)
    while true do
      if #buf > limit then return nil, "body too long" end
      local ok, err = more()
      if not ok then
        if err == "closed" then
          local s = buf
          buf = ""
          return s
        end
        return nil, err
      end
    end
  end
  return r
end

-- Reads one answer: {status, headers (lower-case names), body} and whether the connection
-- must close after it; or nil, error.
local function read_response(rd)
  local status, headers
  repeat
    local line, err = rd.line()
    if not line then return nil, "status line: " .. tostring(err) end
    status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
    if not status then return nil, "bad status line" end
    headers = {}
    while true do
      local h, herr = rd.line()
      if not h then return nil, "headers: " .. tostring(herr) end
      if h == "" then break end
      local name, value = h:match("^([^:%s]+):%s*(.-)%s*$")
      if not name then return nil, "bad header line" end
      name = name:lower()
      headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
    end
  until status >= 200 or status == 101
  local te = headers["transfer-encoding"]
  local close = (headers.connection or ""):lower():find("close", 1, true) ~= nil
  local body = {}
  if status == 204 or status == 304 or status == 101 then
    return { status = status, headers = headers, body = "" }, close or status == 101
  elseif te and te:lower():match("chunked%s*$") then
    local total = 0
    while true do
      local line, err = rd.line()
      if not line then return nil, "chunk size: " .. tostring(err) end
      local n = tonumber(line:match("^(%x+)"), 16)
      if not n then return nil, "bad chunk size" end
      if n == 0 then
        repeat -- trailers, up to the empty line
          local t, terr = rd.line()
          if not t then return nil, "trailers: " .. tostring(terr) end
        until t == ""
        break
      end
      total = total + n
      if total > MAX_BODY then return nil, "body too long" end
      local data, derr = rd.bytes(n + 2)
      if not data then return nil, "chunk: " .. tostring(derr) end
      if data:sub(-2) ~= "\r\n" then return nil, "bad chunk framing" end
      body[#body + 1] = data:sub(1, -3)
    end
  elseif headers["content-length"] then
    local n = tonumber(headers["content-length"]:match("^%d+$"))
    if not n then return nil, "bad Content-Length" end
    if n > MAX_BODY then return nil, "body too long" end
    local data, err = rd.bytes(n)
    if not data then return nil, "body: " .. tostring(err) end
    body[1] = data
  else
    local data, err = rd.rest(MAX_BODY)
    if not data then return nil, "body: " .. tostring(err) end
    body[1] = data
    close = true
  end
  return { status = status, headers = headers, body = table.concat(body) }, close
end

-- ---- the client ---------------------------------------------------------------------------------

local Client = {}
Client.__index = Client

--- A client for one server (see the header). Raises without host and port.
function M.new(opts)
  util.checkfields(opts, "http_client.new", { "host", "port", "timeout", "tls", "pump", "resolve", "keep_alive" })
  assert(type(opts) == "table" and opts.host and opts.port, "http_client.new{host=, port=}")
  return setmetatable({ opts = opts, conn = nil }, Client)
end

-- Opens the connection (TCP, then TLS with SNI and the hostname check); nil, error on failure.
function Client:_connect(deadline)
  local o = self.opts
  local pump, host = o.pump, o.host
  local sock = socket.tcp()
  sock:settimeout(0)
  local ok, err = sock:connect(o.resolve and o.resolve[host] or host, o.port)
  if not ok and err ~= "timeout" and err ~= "Operation already in progress" then
    sock:close()
    return nil, "connect: " .. tostring(err)
  end
  if not ok then -- non-blocking connect in progress: wait until writable
    while true do
      local _, w = socket.select(nil, { sock }, pump and 0 or math.max(0, math.min(deadline - socket.gettime(), 0.05)))
      if w and w[1] then break end
      if socket.gettime() > deadline then sock:close() return nil, "connect: timeout" end
      if pump then pump() end
    end
    -- a refused connection also selects writable: ask the socket
    local peer, perr = sock:getpeername()
    if not peer then sock:close() return nil, "connect: " .. tostring(perr or "connection refused") end
  end
  sock:setoption("tcp-nodelay", true)
  if o.tls then
    local ssl = require "ssl"
    local verify = o.tls.verify or "peer"
    local conn, werr = ssl.wrap(sock, {
      mode = "client", protocol = "any", verify = verify,
      options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" },
      cafile = o.tls.cafile, certificate = o.tls.certificate, key = o.tls.key,
    })
    if not conn then sock:close() return nil, "tls: " .. tostring(werr) end
    -- the name the server must prove: tls.servername when given (a host reached by
    -- address), else the host
    local name = o.tls.servername or host
    if not is_ip(name) then conn:sni(name) end -- RFC 6066: SNI carries DNS names only
    conn:settimeout(0)
    local hok, herr = io_loop(function() return conn:dohandshake() end, pump, deadline)
    if not hok then conn:close() return nil, "tls handshake: " .. tostring(herr) end
    if verify ~= "none" then -- RFC 6125: the certificate must name it, not only chain to cafile
      local cert = conn:getpeercertificate()
      local named, names = false, "no certificate"
      if cert then named, names = M.cert_names_host(cert, name) end
      if not named then
        conn:close()
        return nil, ("tls: the server certificate does not name %s (it names: %s)"):format(name, tostring(names))
      end
    end
    sock = conn
  end
  self.conn, self.rd = sock, reader(sock, pump)
  return sock
end

-- Sends data whole; returns true, or nil, error, bytes sent.
local function send_all(sock, data, pump, deadline)
  local sent = 0
  while sent < #data do
    local n, serr, last = sock:send(data, sent + 1)
    if n then
      sent = n
    elseif serr == "timeout" or serr == "wantwrite" then
      sent = last or sent
      if socket.gettime() > deadline then return nil, "timeout", sent end
      if pump then pump() else socket.select(nil, { sock }, 0.05) end
    else
      return nil, serr, last or sent
    end
  end
  return true
end

-- One attempt: resp, or nil, error, kind, and whether a retry on a new connection is safe.
function Client:_once(req, data, deadline)
  local reused = self.conn ~= nil
  if not reused then
    local conn, err = self:_connect(deadline)
    if not conn then return nil, err, "not_sent", false end
  end
  local ok, serr, sent = send_all(self.conn, data, self.opts.pump, deadline)
  if not ok then
    self:close()
    return nil, "send: " .. tostring(serr), sent > 0 and "ambiguous" or "not_sent", reused and sent == 0
  end
  local rd = self.rd
  rd.got, rd.deadline = 0, deadline
  local resp, close = read_response(rd)
  if not resp then
    local nothing = rd.got == 0 and tostring(close):find("closed", 1, true) ~= nil
    self:close()
    return nil, "receive: " .. tostring(close), "ambiguous", reused and nothing and IDEMPOTENT[req.method or "GET"]
  end
  if close or self.opts.keep_alive == false then self:close() end
  return resp
end

--- Sends one request; returns the response table, or nil, error, "not_sent" | "ambiguous".
function Client:request(req)
  local o = self.opts
  local body = req.body or ""
  local lines = { ("%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: %d\r\n"):format(req.method or "GET",
    req.path or "/", o.host, o.port, #body) }
  if o.keep_alive == false then lines[#lines + 1] = "Connection: close\r\n" end
  for k, v in pairs(req.headers or {}) do lines[#lines + 1] = ("%s: %s\r\n"):format(k, v) end
  lines[#lines + 1] = "\r\n"
  lines[#lines + 1] = body
  local data = table.concat(lines)
  local deadline = socket.gettime() + (o.timeout or 5)
  local resp, err, kind, retry = self:_once(req, data, deadline)
  if not resp and retry then resp, err, kind = self:_once(req, data, deadline) end -- a stale keep-alive
  if resp then return resp end
  return nil, err, kind
end

--- Closes the kept connection (the next request opens a new one).
function Client:close()
  if self.conn then self.conn:close() end
  self.conn, self.rd = nil, nil
end

return M

--- Webhook delivery for the multi-use public key service: one HTTP/1.1 POST over
-- LuaSocket (plain HTTP; https URLs use LuaSec with the system CA or opts.cafile).
--
--   local post = require("payhsm.mupk.webhook").post
--   local status, err, kind = post(url, body, headers, {timeout = 5, pump = fn, cafile = path})
--
-- The answer is read as HTTP/1.1 frames it (RFC 9112 section 6): the status line (1xx
-- interim answers skipped), the headers, then a body delimited by Transfer-Encoding:
-- chunked, else Content-Length, else the end of the connection (none for 204/304). So a
-- 2xx on a connection the receiver keeps alive is one delivery, not a timeout.
--
-- Over https the server's certificate must chain to the CA file (verify = "peer"), the
-- ClientHello carries the host as SNI (RFC 6066 section 3), and the certificate must name
-- the host (RFC 6125 / RFC 2818 section 3.1): an IP host must be one of its
-- subjectAltName iPAddress entries; a DNS host one of its dNSName entries (a "*" only as
-- the whole left-most label), or its subject CN when it has no subjectAltName at all.
--
-- On failure the third value says whether the request may have reached the receiver:
-- "not_sent" (bad URL, connect, TLS or hostname failure, or the request not fully sent)
-- or "ambiguous" (sent, but no complete answer before the deadline or the connection
-- broke): the receiver may have acted on it, which is why every notification carries an
-- id (eventId / Webhook-Id) that lets it drop a repeat.
--
-- opts.pump (optional) is called whenever the socket would block: a listener served
-- from the same Lua thread (payhsm.http's run_once) gets its turn, so a scenario can
-- host the merchant's webhook endpoint in the same process as the service.
-- opts.resolve (optional) = {[host] = "IPv4 address"}: connect there instead of asking the
-- resolver (as curl's --resolve); the Host header, SNI and the certificate check still use
-- the URL's host.
local socket = require "socket"
local util = require "payhsm.util"

local M = {}

--- "http://host:port/path" -> scheme, host, port, path
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

-- A buffered reader over a non-blocking (pump) or blocking socket.
local function reader(sock, pump, deadline)
  local buf, closed = "", false
  local r = {}
  local function more()
    if closed then return nil, "closed" end
    local data, err, partial = sock:receive(8192)
    local got = data or partial
    if got and got ~= "" then buf = buf .. got return true end
    if err == "closed" then closed = true return nil, "closed" end
    if err ~= "timeout" and err ~= "wantread" and err ~= nil then return nil, err end
    local left = deadline - socket.gettime()
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
        if err == "closed" then return buf end
        return nil, err
      end
    end
  end
  return r
end

local MAX_BODY = 1024 * 1024

-- Reads one answer: status, headers (lower-case names), body; or nil, error.
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
  local body = {}
  if status == 204 or status == 304 or status == 101 then
    return status, headers, ""
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
  end
  return status, headers, table.concat(body)
end

-- ---- the POST ---------------------------------------------------------------------------------

--- POSTs body to url; returns the HTTP status (a number), the answer's headers and body,
-- or nil, error, "not_sent" | "ambiguous".
function M.post(url, body, headers, opts)
  util.checkfields(opts, "webhook.post", { "cafile", "pump", "resolve", "timeout" })
  opts = opts or {}
  local scheme, host, port, path = M.parse_url(url)
  if not scheme then return nil, "bad webhook URL", "not_sent" end
  local timeout = opts.timeout or 5
  local deadline = socket.gettime() + timeout
  local pump = opts.pump
  local sock = socket.tcp()
  sock:settimeout(pump and 0 or timeout)
  local ok, err = sock:connect(opts.resolve and opts.resolve[host] or host, port)
  if not ok and err ~= "timeout" and err ~= "Operation already in progress" then
    sock:close()
    return nil, "connect: " .. tostring(err), "not_sent"
  end
  if not ok then -- non-blocking connect in progress: wait until writable
    while true do
      local _, w = socket.select(nil, { sock }, 0)
      if w and w[1] then break end
      if socket.gettime() > deadline then sock:close() return nil, "connect: timeout", "not_sent" end
      if pump then pump() end
    end
  end
  if scheme == "https" then
    local ssl = require "ssl"
    local conn, werr = ssl.wrap(sock, { mode = "client", protocol = "any", verify = "peer",
      options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" },
      cafile = opts.cafile or "/etc/ssl/certs/ca-certificates.crt" })
    if not conn then sock:close() return nil, "tls: " .. tostring(werr), "not_sent" end
    if not is_ip(host) then conn:sni(host) end -- RFC 6066: SNI carries DNS names only
    conn:settimeout(pump and 0 or timeout)
    local hok, herr = io_loop(function() return conn:dohandshake() end, pump, deadline)
    if not hok then conn:close() return nil, "tls handshake: " .. tostring(herr), "not_sent" end
    local cert = conn:getpeercertificate()
    local named, names = false, "no certificate"
    if cert then named, names = M.cert_names_host(cert, host) end
    if not named then
      conn:close()
      return nil, ("tls: the certificate does not name %s (it names: %s)"):format(host, tostring(names)), "not_sent"
    end
    sock = conn
  end
  local lines = { ("POST %s HTTP/1.1"):format(path), ("Host: %s:%d"):format(host, port),
    "Content-Type: application/json", "Content-Length: " .. #body, "Connection: close" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  local req = table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
  local sent = 0
  while sent < #req do
    local n, serr, last = sock:send(req, sent + 1)
    if n then sent = n
    elseif serr == "timeout" or serr == "wantwrite" then
      sent = last or sent
      if socket.gettime() > deadline then
        sock:close()
        return nil, "send: timeout", sent > 0 and "ambiguous" or "not_sent"
      end
      if pump then pump() end
    else
      sock:close()
      return nil, "send: " .. tostring(serr), sent > 0 and "ambiguous" or "not_sent"
    end
  end
  sock:settimeout(0) -- the reader waits itself (select or pump), up to the deadline
  local status, rheaders, rbody = read_response(reader(sock, pump, deadline))
  sock:close()
  if not status then return nil, "receive: " .. tostring(rheaders), "ambiguous" end
  return status, rheaders, rbody
end

return M

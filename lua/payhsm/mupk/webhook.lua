--- Webhook delivery for the multi-use public key service: one HTTP/1.1 POST over
-- LuaSocket (plain HTTP; https URLs use LuaSec with the system CA or opts.cafile).
--
--   local post = require("payhsm.mupk.webhook").post
--   local status, err = post(url, body, headers, {timeout = 5, pump = fn})
--
-- The request carries "Connection: close" and the response is read to the end of the
-- connection. opts.pump (optional) is called whenever the socket would block: a
-- listener served from the same Lua thread (payhsm.http's run_once) gets its turn, so a
-- scenario can host the merchant's webhook endpoint in the same process as the service.
local socket = require "socket"

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

--- POSTs body to url; returns the HTTP status (a number) or nil, error.
function M.post(url, body, headers, opts)
  opts = opts or {}
  local scheme, host, port, path = M.parse_url(url)
  if not scheme then return nil, "bad webhook URL" end
  local timeout = opts.timeout or 5
  local deadline = socket.gettime() + timeout
  local pump = opts.pump
  local sock = socket.tcp()
  sock:settimeout(pump and 0 or timeout)
  local ok, err = sock:connect(host, port)
  if not ok and err ~= "timeout" and err ~= "Operation already in progress" then
    sock:close()
    return nil, "connect: " .. tostring(err)
  end
  if not ok then -- non-blocking connect in progress: wait until writable
    while true do
      local _, w = socket.select(nil, { sock }, 0)
      if w and w[1] then break end
      if socket.gettime() > deadline then sock:close() return nil, "connect: timeout" end
      if pump then pump() end
    end
  end
  if scheme == "https" then
    local ssl = require "ssl"
    local conn, werr = ssl.wrap(sock, { mode = "client", protocol = "any", verify = "peer",
      options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" },
      cafile = opts.cafile or "/etc/ssl/certs/ca-certificates.crt" })
    if not conn then sock:close() return nil, "tls: " .. tostring(werr) end
    conn:settimeout(pump and 0 or timeout)
    local hok, herr = io_loop(function() return conn:dohandshake() end, pump, deadline)
    if not hok then conn:close() return nil, "tls handshake: " .. tostring(herr) end
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
      if socket.gettime() > deadline then sock:close() return nil, "send: timeout" end
      if pump then pump() end
    else sock:close() return nil, "send: " .. tostring(serr) end
  end
  local buf = {}
  while true do
    local data, rerr, partial = sock:receive("*a")
    if data then buf[#buf + 1] = data break end
    if partial and partial ~= "" then buf[#buf + 1] = partial end
    if rerr == "closed" then break end
    if rerr ~= "timeout" and rerr ~= "wantread" then sock:close() return nil, "receive: " .. tostring(rerr) end
    if socket.gettime() > deadline then sock:close() return nil, "receive: timeout" end
    if pump then pump() else socket.sleep(0.001) end
  end
  sock:close()
  local status = tonumber(table.concat(buf):match("^HTTP/1%.%d (%d%d%d)"))
  if not status then return nil, "bad response" end
  return status
end

return M

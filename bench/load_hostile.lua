--- Hostile load on `bin/payhsm serve gateway` over loopback, bounded in count and time:
--   1. slow handshakes: 1,000 TLS connections without a client certificate that send the
--      first bytes of a ClientHello and then one byte every 2 s (from 20 loopback source
--      addresses, 50 each, under the per-address limit), while a legitimate mutual-TLS
--      client makes 10 requests, each on a new connection (handshake included); every one
--      must complete within a second; the hostile ones must be closed by header_timeout;
--   2. bodies before authentication: 400 plain HTTP connections without credentials, then
--      400 with credentials, each sending 1 MiB less one byte; the server's resident set
--      must move by less than 20 MB.
--   lua5.4 bench/load_hostile.lua [hostile connections] [bodies]   (from the repo root; `make load`)
-- Exit 1 when a target is missed.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local socket = require "socket"
local http = require "payhsm.http"
local pki = require "spec.support.pki"
local serve = require "spec.support.serve"

local HOSTILE = tonumber(arg[1]) or 1000
local BODIES = tonumber(arg[2]) or 400
local PER_ADDR, HEADER_TIMEOUT = 50, 10
local keys = pki.make()
local ok = true
local ZMK = ("5E"):rep(32)

local function gateway(tls)
  return serve.start("gateway", ([[{
    listen = "127.0.0.1:0", %s
    basic_auth = { integrator = "pa55word" }, store = { backend = "memory" },
    limits = { header_timeout = %d },
    master_keys = { { label = "ZMK_PAN", key_type = "PAN", algorithm = "AES_256", hex = %q } } }]]):format(
    tls and ("tls = { cert = %q, key = %q, client_ca = %q },"):format(keys.path("server.pem"), keys.path("server.key"),
      keys.path("ca.pem")) or "", HEADER_TIMEOUT, ZMK))
end

local function closed(socks)
  local n = 0
  for _, s in ipairs(socks) do
    local _, err = s:receive(1)
    if err == "closed" then n = n + 1 end
  end
  return n
end

-- 1. slow handshakes ------------------------------------------------------------------
local srv = gateway(true)
local socks = {}
local t0 = http.clock()
for i = 1, HOSTILE do
  local s = socket.tcp()
  assert(s:bind("127.0.0." .. (2 + math.floor((i - 1) / PER_ADDR)), 0))
  s:settimeout(2)
  local c, err = s:connect("127.0.0.1", srv.port)
  if not c then error("hostile connect " .. i .. ": " .. tostring(err)) end
  s:send("\22\3\1\2\0")
  s:settimeout(0)
  socks[i] = s
end
socket.sleep(0.5)
local open_at_start = HOSTILE - closed(socks)
print(("hostile: %d TLS connections without a client certificate, ClientHello never finished (1 byte / 2 s), %d addresses x %d")
  :format(HOSTILE, math.ceil(HOSTILE / PER_ADDR), PER_ADDR))
print(("  held open when the legitimate client starts: %d (opened in %.2f s)"):format(open_at_start, http.clock() - t0))
local lat, failed = {}, 0
local url = ("https://127.0.0.1:%d/key-mgmt/session-keys/keys/sessionKeyLabel=LOAD"):format(srv.port)
for i = 1, 10 do
  for _, s in ipairs(socks) do s:send("\1") end -- the dribble
  local p = io.popen(("env -u LD_PRELOAD curl -s -o /dev/null -w '%%{http_code} %%{time_total}' --max-time 5 -u integrator:pa55word "
    .. "--cacert %s --cert %s --key %s %s"):format(keys.path("ca.pem"), keys.path("client.pem"), keys.path("client.key"), url))
  local out = p:read("*a")
  p:close()
  local code, t = out:match("^(%d+) ([%d.]+)")
  if code ~= "404" then failed = failed + 1 else lat[#lat + 1] = tonumber(t) * 1000 end
  socket.sleep(0.3)
end
table.sort(lat)
local still = HOSTILE - closed(socks)
print(("  legitimate mutual-TLS client: %d/10 answered, handshake + request min %.1f ms, median %.1f ms, max %.1f ms")
  :format(#lat, lat[1] or -1, lat[math.max(1, math.floor(#lat / 2))] or -1, lat[#lat] or -1))
print(("  hostile still open after the legitimate requests (%.1f s): %d"):format(http.clock() - t0, still))
if failed > 0 or (lat[#lat] or 1e9) >= 1000 then ok = false end
while http.clock() - t0 < HEADER_TIMEOUT + 3 do
  for _, s in ipairs(socks) do s:send("\1") end
  socket.sleep(1)
end
local gone = closed(socks)
print(("  closed by the server at header_timeout (%d s): %d of %d"):format(HEADER_TIMEOUT, gone, HOSTILE))
if gone < HOSTILE then ok = false end
for _, s in ipairs(socks) do s:close() end
srv.stop() srv.cleanup()

-- 2. bodies before authentication -----------------------------------------------------
srv = gateway(false)
local function upload(auth)
  local conns = {}
  for i = 1, BODIES do
    local s = socket.tcp()
    assert(s:bind("127.0.0." .. (2 + math.floor((i - 1) / PER_ADDR)), 0))
    s:settimeout(2)
    assert(s:connect("127.0.0.1", srv.port))
    s:send("POST /key-management/keys/import HTTP/1.1\r\nHost: x\r\n" .. (auth or "")
      .. "Content-Type: application/json\r\nContent-Length: 1048575\r\n\r\n")
    s:settimeout(0)
    conns[i] = { s = s, left = 1048575 }
  end
  local chunk, t = ("x"):rep(65536), http.clock()
  repeat
    local busy = false
    for _, c in ipairs(conns) do
      if c.left > 0 then
        local n, err, part = c.s:send(chunk, 1, math.min(#chunk, c.left))
        c.left = c.left - (n or part or 0)
        if err == "closed" then c.left, c.refused = 0, true end
        busy = busy or c.left > 0
      end
    end
    if busy then socket.sleep(0.005) end
  until not busy or http.clock() - t > 20
  local sent = 0
  local refused = 0
  for _, c in ipairs(conns) do if c.refused then refused = refused + 1 end end
  return conns, refused
end
socket.sleep(0.3)
local base = srv.rss_kib()
for _, case in ipairs { { "no credentials", nil }, { "good credentials", "Authorization: Basic aW50ZWdyYXRvcjpwYTU1d29yZA==\r\n" } } do
  local conns, refused = upload(case[2])
  local r = srv.rss_kib()
  print(("memory: %d plain HTTP connections, %s, each 1 MiB less one byte: %d closed by the server before their body ended; RSS %d KiB -> %d KiB (%+d KiB)")
    :format(BODIES, case[1], refused, base, r, r - base))
  if r - base >= 20 * 1000 then ok = false end
  for _, c in ipairs(conns) do c.s:close() end
end
print(("load_hostile: %s"):format(ok and "targets met" or "TARGETS MISSED"))
srv.stop() srv.cleanup()
pki.remove(keys)
os.exit(ok and 0 or 1)

--- Webhook delivery for the multi-use public key service: one HTTP/1.1 POST over
-- LuaSocket (plain HTTP; https URLs use LuaSec with the system CA or opts.cafile).
--
--   local post = require("payhsm.mupk.webhook").post
--   local status, err, kind = post(url, body, headers, {timeout = 5, pump = fn, cafile = path})
--
-- The transport is payhsm.http_client, one connection per notification (Connection:
-- close): the answer is read as HTTP/1.1 frames it (chunked, Content-Length or the end of
-- the connection), so a 2xx on a connection the receiver keeps alive is one delivery, not
-- a timeout. Over https the server's certificate must chain to the CA file, the
-- ClientHello carries the host as SNI and the certificate must name the host.
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
local http_client = require "payhsm.http_client"
local util = require "payhsm.util"

local M = {}

--- "http://host:port/path" -> scheme, host, port, path
M.parse_url = http_client.parse_url

--- Whether the certificate (a LuaSec x509 object) names host (RFC 6125); true, or false
-- and the names it carries.
M.cert_names_host = http_client.cert_names_host

--- POSTs body to url; returns the HTTP status (a number), the answer's headers and body,
-- or nil, error, "not_sent" | "ambiguous".
function M.post(url, body, headers, opts)
  util.checkfields(opts, "webhook.post", { "cafile", "pump", "resolve", "timeout" })
  opts = opts or {}
  local scheme, host, port, path = M.parse_url(url)
  if not scheme then return nil, "bad webhook URL", "not_sent" end
  local c = http_client.new { host = host, port = port, timeout = opts.timeout or 5, pump = opts.pump,
    resolve = opts.resolve, keep_alive = false,
    tls = scheme == "https" and { cafile = opts.cafile or "/etc/ssl/certs/ca-certificates.crt" } or nil }
  local h = { ["Content-Type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  local resp, err, kind = c:request { method = "POST", path = path, headers = h, body = body }
  c:close()
  if not resp then return nil, err, kind end
  return resp.status, resp.headers, resp.body
end

return M

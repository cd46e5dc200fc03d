-- A fuzzing client over loopback: hostile variants of real requests against every
-- system's real handlers (`bin/payhsm serve gateway|pos|mupk`, each its own process).
--
-- The templates are the requests the systems' own clients send in a normal session
-- (recorded from their transport): the gateway integrator's imports, key lookups, PAN
-- re-encryption and PIN translation; a POS device's attestation, key download,
-- configuration, activation and charge; a merchant's key generation, lookup and
-- transaction. Each is then mutated with a fixed pseudo-random sequence (so a failure
-- replays): JSON values replaced by other types (objects, arrays, numbers, booleans,
-- null, long strings), fields dropped or added, bodies truncated or bit-flipped, paths
-- with encoded control bytes or extra segments, repeated headers, wrong methods and
-- Content-Length lies. Every request goes over its own TCP connection, raw, so nothing
-- is tidied on the way.
--
-- What must hold: every request gets an HTTP answer within the timeout, none of them
-- a 5xx (a wrong type anywhere is the client's error: 4xx with the system's code), and
-- the server is alive and answers a clean request afterwards. A path or query that
-- decodes to a control byte (%00, %0A ...) and a second copy of a header that must be
-- single (Authorization, Host, Content-Length, Content-Type and the system's own, e.g.
-- X-Device-Id, Client-Request-Id) are answered 400 exactly, whether a mutation made them
-- or the fixed cases after the mutations. Bounded: a fixed number of requests per system.
local hsm = require "payhsm"
local cjson = require "cjson"
local socket = require "socket"
local serve = require "spec.support.serve"

local PER_SYSTEM = tonumber(os.getenv("HTTP_FUZZ_REQUESTS") or "") or 300

-- A small deterministic generator (LCG, Numerical Recipes constants), the same on every Lua.
local function rng(seed)
  local s = seed
  return function(n)
    s = (s * 1664525 + 1013904223) % 4294967296
    return math.floor(s / 65536) % n + 1
  end
end

local function copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

-- A transport for the systems' clients that records each request and forwards it.
local function recording(port, log)
  local c = require("payhsm.http_client").new { host = "127.0.0.1", port = port, timeout = 5 }
  return function(req)
    log[#log + 1] = { method = req.method, path = req.path, headers = copy(req.headers), body = req.body or "" }
    return c:request(req)
  end, c
end

-- Raw HTTP/1.1 over a new TCP connection: returns the status (number) or nil, error.
local function send_raw(port, text)
  local s = socket.tcp()
  s:settimeout(5)
  local ok, err = s:connect("127.0.0.1", port)
  if not ok then return nil, "connect: " .. tostring(err) end
  s:send(text)
  local line, rerr = s:receive("*l")
  s:close()
  if not line then return nil, "no answer: " .. tostring(rerr) end
  local status = line:match("^HTTP/1%.[01] (%d%d%d)")
  if not status then return nil, "not an HTTP status line: " .. line:sub(1, 80) end
  return tonumber(status)
end

local function render(req, extra_headers, content_length)
  local lines = { ("%s %s HTTP/1.1"):format(req.method, req.path), "Host: 127.0.0.1", "Connection: close" }
  for k, v in pairs(req.headers or {}) do
    local lk = k:lower()
    if lk ~= "host" and lk ~= "connection" and lk ~= "content-length" then lines[#lines + 1] = k .. ": " .. v end
  end
  for _, h in ipairs(extra_headers or {}) do lines[#lines + 1] = h end
  lines[#lines + 1] = "Content-Length: " .. (content_length or #req.body)
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. req.body
end

local ODD_VALUES = { {}, { 1, 2 }, { a = { b = { c = {} } } }, 0, -1, 1e308, true, false, cjson.null,
  ("A"):rep(5000), "", "\0", "é", "0x41", "{}" }

-- Replaces one value somewhere in a decoded JSON document (depth-first, by index).
local function mutate_json(doc, r)
  local slots = {}
  local function walk(t)
    for k, v in pairs(t) do
      slots[#slots + 1] = { t, k }
      if type(v) == "table" then walk(v) end
    end
  end
  walk(doc)
  if #slots == 0 then return doc end
  local slot = slots[r(#slots)]
  local what = r(4)
  if what == 1 then
    slot[1][slot[2]] = nil
  elseif what == 2 and type(slot[2]) == "string" then
    slot[1][slot[2] .. "x"] = slot[1][slot[2]]
  else
    slot[1][slot[2]] = ODD_VALUES[r(#ODD_VALUES)]
  end
  return doc
end

-- The headers no request may repeat (payhsm.http and each system's module's single_headers).
local SINGLE = { authorization = true, host = true, ["content-length"] = true, ["content-type"] = true }
local single = SINGLE

-- Returns the request's text and the status it must get (nil: any but 5xx).
local function mutate(tpl, r)
  local req = { method = tpl.method, path = tpl.path, headers = copy(tpl.headers), body = tpl.body }
  local kind, extra, clen, expect = r(9), nil, nil, nil
  if kind <= 3 then
    local ok, doc = pcall(cjson.decode, req.body)
    if ok and type(doc) == "table" then req.body = cjson.encode(mutate_json(doc, r))
    else req.body = "{\"x\":{}}" end
  elseif kind == 4 then
    req.body = req.body:sub(1, r(#req.body + 1) - 1)
  elseif kind == 5 and #req.body > 0 then
    local i = r(#req.body)
    req.body = req.body:sub(1, i - 1) .. string.char((req.body:byte(i) + r(255)) % 256) .. req.body:sub(i + 1)
  elseif kind == 6 then
    local tails = { "%00", "%00xyz", "%0A", "%0d%0aX-Evil:%201", "/..", "//", "/" .. ("a"):rep(3000), "?%00=1", "%ZZ" }
    local tail = tails[r(#tails)]
    req.path = req.path .. tail
    if tail:find("%%0[0adAD]") then expect = 400 end
  elseif kind == 7 then
    local names = {}
    for k in pairs(req.headers) do names[#names + 1] = k end
    table.sort(names)
    local name = names[r(#names + 1)] or "Authorization"
    extra = { name .. ": " .. (req.headers[name] or "Basic Zm9vOmJhcg==") .. "x" }
    if single[name:lower()] and req.headers[name] then expect = 400 end
  elseif kind == 8 then
    local methods = { "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "post" }
    req.method = methods[r(#methods)]
    if req.method == "HEAD" then req.method = "GET" end -- a HEAD answer has no body to wait for
  else
    clen = tostring(#req.body + r(3) - 2) -- one byte short, exact, or one byte over (then closed)
    if tonumber(clen) > #req.body then clen = tostring(#req.body) end
    if tonumber(clen) < 0 then clen = "0" end
  end
  return render(req, extra, clen), expect
end

-- Fixed hostile cases on a template: each must be answered 400.
local function fixed_cases(tpl, sys_single)
  local cases = {}
  local function add(path, extra) cases[#cases + 1] = render({ method = tpl.method, path = path, headers = tpl.headers,
    body = tpl.body }, extra) end
  add(tpl.path .. "%00xyz")
  add(tpl.path .. "%0A")
  add(tpl.path .. "?x=%00")
  add(tpl.path .. "%1B")
  add(tpl.path, { "Authorization: Basic Zm9vOmJhcg==", "Authorization: Basic YmFyOmZvbw==" })
  add(tpl.path, { "Host: 127.0.0.2" })
  add(tpl.path, { "Content-Length: " .. #tpl.body })
  for _, h in ipairs(sys_single or {}) do add(tpl.path, { h .. ": a", h .. ": b" }) end
  return cases
end

local function fuzz(name, srv, templates, start, sys_single)
  assert.is_true(#templates > 0, name .. ": no templates recorded")
  local r = rng(start)
  local seen, findings = {}, {}
  single = copy(SINGLE)
  for _, h in ipairs(sys_single or {}) do single[h] = true end
  local fixed = fixed_cases(templates[1], sys_single)
  for i = 1, PER_SYSTEM + #fixed do
    local tpl = templates[(i - 1) % #templates + 1]
    if tpl.fresh then tpl = tpl.fresh(tpl) end
    local text, expect
    if i > PER_SYSTEM then text, expect = fixed[i - PER_SYSTEM], 400
    else text, expect = mutate(tpl, r) end
    local status, err = send_raw(srv.port, text)
    if not status then
      findings[#findings + 1] = ("%s #%d %s %s: %s"):format(name, i, tpl.method, tpl.path, err)
    elseif expect and status ~= expect then
      findings[#findings + 1] = ("%s #%d: %d, not %d\n%s"):format(name, i, status, expect, text:sub(1, 400))
    elseif status >= 500 then
      findings[#findings + 1] = ("%s #%d %s %s: %d\n%s"):format(name, i, tpl.method, tpl.path, status, text:sub(1, 400))
    else
      seen[status] = (seen[status] or 0) + 1
    end
    if #findings >= 5 then break end
  end
  if os.getenv("HTTP_FUZZ_VERBOSE") then
    for st, n in pairs(seen) do print(name, st, n) end
  end
  assert.is_true(srv.alive(), name .. ": the server died")
  assert.same({}, findings)
  return seen
end

describe("hostile requests over loopback", function()
  it("never make the gateway answer 5xx or die", function()
    local srv = serve.start("gateway", ([[{
      listen = "127.0.0.1:0", basic_auth = { integrator = "pa55word" }, store = { backend = "memory" },
      master_keys = {
        { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = %q },
        { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = %q },
      } }]]):format(("5E"):rep(32), ("6F"):rep(32)))
    finally(function() srv.stop() srv.cleanup() end)
    local log = {}
    local transport, raw = recording(srv.port, log)
    local client = require("payhsm.gateway.client").new {
      transport = transport, user = "integrator", password = "pa55word",
      zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = hsm.key.import("AES_256", ("5E"):rep(32)) },
               PIN = { label = "ZMK_PIN_XXX_YYY", key = hsm.key.import("AES_256", ("6F"):rep(32)) } },
    }
    local pan = assert(client:rotate("PAN", "DEK_XX_XXYY"))
    assert(client:rotate("PIN", "PEK_XX_XXYY"))
    assert(client:get_keys("DEK_XX_XXYY"))
    assert(client:get_key(pan.sessionKeyId))
    local enc = require("payhsm.gateway.client").encrypt_pan(pan.key, "4111111111111111")
    client:reencrypt_pan(pan.sessionKeyId, pan.key, "4111111111111111")
    assert.is_truthy(enc)
    raw:close()
    local seen = fuzz("gateway", srv, log, 4001, require("payhsm.gateway").single_headers)
    assert.is_true((seen[400] or 0) > 0)
    -- still answers a clean request
    local again = {}
    local t2, raw2 = recording(srv.port, again)
    local c2 = require("payhsm.gateway.client").new { transport = t2, user = "integrator", password = "pa55word",
      zmks = { PAN = { label = "ZMK_PAN_XXX_YYY", key = hsm.key.import("AES_256", ("5E"):rep(32)) } } }
    assert(c2:get_keys("DEK_XX_XXYY"))
    raw2:close()
  end)

  it("never make the POS server answer 5xx or die", function()
    local pos = require "payhsm.pos.server"
    local ZMK, DAK, DEV = ("3A"):rep(32), ("4B"):rep(32), "POS-8F3A2C91"
    local srv = serve.start("pos", ([[{
      listen = "127.0.0.1:0", store = { backend = "memory" }, storage_key = { hex = %q },
      devices = { { device_id = %q, zmk = %q, attestation_key = %q } } }]]):format(("5C"):rep(32), DEV, ZMK, DAK))
    finally(function() srv.stop() srv.cleanup() end)
    local log = {}
    local transport, raw = recording(srv.port, log)
    local dev = require("payhsm.pos.device").new {
      device_id = DEV, transport = transport,
      zmk = hsm.key.import("AES_256", ZMK, { usage = "K1", mode = "B" }),
      attestation_key = hsm.key.import("HMAC_SHA256", DAK, { usage = "M7", mode = "C" }),
    }
    assert(dev:activate_all())
    local c = pos.TEST_ISSUER.cards[1]
    local card = require("payhsm.pos.device").card { pan = c.pan, psn = c.psn,
      imk = hsm.key.import("TDES_2KEY", pos.TEST_ISSUER.imk), atc = 7 }
    local ch = assert(dev:charge { amount = 1250, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" })
    assert(dev:refund(ch.charge_id, 100))
    -- an attestation is tried with a fresh challenge each time, so the checks behind the
    -- challenge (the proof over device id, challenge and firmware version) are reached
    local chal_tpl
    for _, t in ipairs(log) do if t.path == "/pos/attest/challenge" then chal_tpl = t end end
    for _, t in ipairs(log) do
      if t.path == "/pos/attest" then
        t.fresh = function(tpl)
          local resp = assert(transport { method = "POST", path = chal_tpl.path, headers = chal_tpl.headers, body = chal_tpl.body })
          local doc = cjson.decode(tpl.body)
          doc.challenge = cjson.decode(resp.body).challenge
          return { method = tpl.method, path = tpl.path, headers = tpl.headers, body = cjson.encode(doc) }
        end
      end
    end
    fuzz("pos", srv, log, 4002, pos.single_headers)
    raw:close()
  end)

  it("never make the multi-use public key service answer 5xx or die", function()
    local srv = serve.start("mupk", ([[{
      listen = "127.0.0.1:0", store = { backend = "memory" }, basic_auth = { shop = "s3cret" },
      storage_key = { algorithm = "AES_256", hex = %q } }]]):format(("3D"):rep(32)))
    finally(function() srv.stop() srv.cleanup() end)
    local log = {}
    local transport, raw = recording(srv.port, log)
    local m = require("payhsm.mupk.merchant").new { merchant_id = "123456789012345", clock = os.time,
      auto_rotate = false, user = "shop", password = "s3cret",
      service = { handle = function(_, req) return transport(req) end } }
    local k = assert(m:request_key())
    assert(m:capture { amount = 12.00, currency = "EUR", pan = "4005550000000019", exp_month = "01", exp_year = "2031" })
    m:forward()
    log[#log + 1] = { method = "GET", path = "/security/v1/keys/" .. k.keyId .. "?merchantId=123456789012345",
      headers = { authorization = "Basic " .. require("payhsm.util").b64encode("shop:s3cret") }, body = "" }
    raw:close()
    -- key generation is RSA-2048: keep the generate templates out of the run
    local templates = {}
    for _, t in ipairs(log) do if not t.path:find("generate", 1, true) then templates[#templates + 1] = t end end
    fuzz("mupk", srv, templates, 4003, require("payhsm.mupk").single_headers)
  end)
end)

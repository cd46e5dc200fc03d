--- Small helpers the simulators share: base64 (RFC 4648 sections 4 and 5), UUIDs
-- (RFC 9562 version 4), trace identifiers and HTTP Basic credentials (RFC 7617).
local core = require "payhsm.core"

local M = {}

local STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function encoder(alphabet)
  local enc = {}
  for i = 1, 64 do enc[i - 1] = alphabet:sub(i, i) end
  return enc
end
local ENC_STD, ENC_URL = encoder(STD), encoder(URL)

local DEC = {}
for i = 1, 64 do
  DEC[STD:byte(i)] = i - 1
  DEC[URL:byte(i)] = i - 1
end

-- Plain arithmetic on the 24-bit groups (no bitwise operators: this file runs on Lua
-- 5.1, 5.2 and LuaJIT too), with every quotient and remainder of a byte or sextet looked
-- up in a table made once, so the loops make no function call per character. A group of
-- bytes a, b, c is the sextets a//4, (a%4)*16 + b//16, (b%16)*4 + c//64, c%64.
local floor = math.floor
local A_HI, A_LO, B_HI, B_LO, C_HI, C_LO = {}, {}, {}, {}, {}, {}
for x = 0, 255 do
  A_HI[x], A_LO[x] = floor(x / 4), x % 4 * 16
  B_HI[x], B_LO[x] = floor(x / 16), x % 16 * 4
  C_HI[x], C_LO[x] = floor(x / 64), x % 64
end
-- and back: sextets v1..v4 give the bytes v1*4 + v2//16, (v2%16)*16 + v3//4, (v3%4)*64 + v4
local V2_HI, V2_LO, V3_HI, V3_LO = {}, {}, {}, {}
for v = 0, 63 do
  V2_HI[v], V2_LO[v] = floor(v / 16), v % 16 * 16
  V3_HI[v], V3_LO[v] = floor(v / 4), v % 4 * 64
end

local function encode(s, enc, pad)
  local out, n = {}, #s
  for i = 1, n - 2, 3 do
    local a, b, c = s:byte(i, i + 2)
    out[#out + 1] = enc[A_HI[a]] .. enc[A_LO[a] + B_HI[b]] .. enc[B_LO[b] + C_HI[c]] .. enc[C_LO[c]]
  end
  local rest = n % 3
  if rest == 1 then
    local a = s:byte(n)
    out[#out + 1] = enc[A_HI[a]] .. enc[A_LO[a]] .. (pad and "==" or "")
  elseif rest == 2 then
    local a, b = s:byte(n - 1, n)
    out[#out + 1] = enc[A_HI[a]] .. enc[A_LO[a] + B_HI[b]] .. enc[B_LO[b]] .. (pad and "=" or "")
  end
  return table.concat(out)
end

--- base64 (padded, standard alphabet).
function M.b64encode(s) return encode(s, ENC_STD, true) end
--- base64url without padding.
function M.b64url(s) return encode(s, ENC_URL, false) end

--- Decodes base64 or base64url, padded or not. Returns nil for anything else
-- (characters outside the alphabet, impossible lengths, non-zero trailing bits).
function M.b64decode(s)
  if type(s) ~= "string" then return nil end
  s = s:gsub("=+$", "", 1)
  local n = #s
  if n % 4 == 1 or s:find("=", 1, true) then return nil end
  local out, char = {}, string.char
  local full = n - n % 4
  for i = 1, full, 4 do
    local c1, c2, c3, c4 = s:byte(i, i + 3)
    local v1, v2, v3, v4 = DEC[c1], DEC[c2], DEC[c3], DEC[c4]
    if not (v1 and v2 and v3 and v4) then return nil end
    out[#out + 1] = char(v1 * 4 + V2_HI[v2], V2_LO[v2] + V3_HI[v3], V3_LO[v3] + v4)
  end
  local rest = n - full
  if rest >= 2 then
    local v1, v2 = DEC[s:byte(full + 1)], DEC[s:byte(full + 2)]
    if not (v1 and v2) then return nil end
    if rest == 2 then
      if V2_LO[v2] ~= 0 then return nil end -- non-zero trailing bits
      out[#out + 1] = char(v1 * 4 + V2_HI[v2])
    else
      local v3 = DEC[s:byte(full + 3)]
      if not v3 or V3_LO[v3] ~= 0 then return nil end
      out[#out + 1] = char(v1 * 4 + V2_HI[v2], V2_LO[v2] + V3_HI[v3])
    end
  end
  return table.concat(out)
end

-- "4A6f" -> "Jo": every hex pair, in either case, looked up in one table.
local FROM_HEX = {}
for b = 0, 255 do
  local hi, lo = ("%02X"):format(b):byte(1, 2)
  for _, h in ipairs { string.char(hi), string.char(hi):lower() } do
    for _, l in ipairs { string.char(lo), string.char(lo):lower() } do FROM_HEX[h .. l] = string.char(b) end
  end
end

--- Bytes of a hex string (raises on anything that is not an even number of hex digits:
-- callers hand it hex that payhsm.core made).
function M.hex_to_bin(h)
  assert(type(h) == "string" and #h % 2 == 0 and not h:find("[^%x]"), "util.hex_to_bin: not hex")
  return (h:gsub("..", FROM_HEX))
end

--- A request's query as a table {name = value}: payhsm.http hands handlers a table of
-- decoded arguments already; embedding hosts (lighttpd, nginx) the raw string, which is
-- split at & and = and percent-decoded ('+' as space). nil gives {}.
function M.query_table(q)
  if type(q) == "table" then return q end
  local t = {}
  if type(q) ~= "string" then return t end
  local function dec(x)
    return (x:gsub("+", " "):gsub("%%(%x%x)", function(hx) return string.char(tonumber(hx, 16)) end))
  end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    if k ~= "" and t[dec(k)] == nil then t[dec(k)] = dec(v) end
  end
  return t
end

--- A random (version 4) UUID, lower case.
function M.uuid()
  local h = core.random(16):lower()
  local v = tonumber(h:sub(17, 17), 16) % 4 + 1
  local variant = ("89ab"):sub(v, v)
  return ("%s-%s-4%s-%s%s-%s"):format(h:sub(1, 8), h:sub(9, 12), h:sub(14, 16), variant, h:sub(18, 20),
    h:sub(21, 32))
end

--- A fresh trace id: 20 random bytes in base64url (27 characters, like Fiserv's
-- "aGHOa5LKbwclIS3C4oh6pQAAATo").
function M.trace_id()
  return M.b64url(M.hex_to_bin(core.random(20)))
end

-- A per-process HMAC key: secrets of different lengths are compared through their
-- HMACs, which all have one length, so the time says nothing of a password's length.
local compare_key
local function digest(s)
  compare_key = compare_key or core.key.generate("HMAC_SHA256")
  return core.hmac(compare_key, s)
end

--- Whether two secret strings are equal, in time that depends on neither's content
-- nor length (both are HMACed under a per-process key, then compared in constant time).
function M.secret_equal(a, b)
  return core.equal(digest(a), digest(b)) and core.equal(a, b)
end

--- Checks an Authorization header against {user = "password", ...}: true when it is
-- "Basic base64(user:password)" for a configured user. Passwords are compared in
-- constant time, whatever their lengths; unknown users still cost one comparison.
function M.basic_auth_ok(header, users)
  if type(header) ~= "string" then return false end
  local cred = header:match("^[Bb][Aa][Ss][Ii][Cc] +([%w+/=_-]+)%s*$")
  cred = cred and M.b64decode(cred)
  local user, pass = (cred or ""):match("^([^:]*):(.*)$")
  if not user then return false end
  local want = users[user]
  local ok = M.secret_equal(pass, type(want) == "string" and want or "\0never")
  return ok and type(want) == "string"
end

-- ---- UTC time stamps ("YYYY-MM-DDThh:mm:ssZ") -----------------------------------

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = floor((y >= 0 and y or y - 399) / 400)
  local yoe = y - era * 400
  local doy = floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Seconds since the epoch -> "2025-12-13T14:25:30Z".
function M.format_time(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

--- checkfields(t, fn, allowed): raises "fn: unknown option 'x' (expected one of: a, b)" when
-- the table t has a field not in the list allowed, as payhsm_checkfields does for the C
-- functions, so a misspelt option is an error instead of a silently different result.
function M.checkfields(t, fn, allowed)
  if type(t) ~= "table" then return t end
  for k in pairs(t) do
    local known = false
    for _, a in ipairs(allowed) do
      if a == k then known = true break end
    end
    if not known then
      error(("%s: unknown option '%s' (expected one of: %s)"):format(fn, tostring(k), table.concat(allowed, ", ")), 3)
    end
  end
  return t
end

--- "2025-12-13T14:25:30Z" -> seconds since the epoch, or nil. opts.fraction accepts
-- (and drops) fractional seconds ("…:30.250Z"); opts.leap accepts second 60.
function M.parse_time(s, opts)
  M.checkfields(opts, "parse_time", { "fraction", "leap" })
  if type(s) ~= "string" then return nil end
  opts = opts or {}
  local y, mo, d, h, mi, se, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
  if not y or not (rest == "Z" or (opts.fraction and rest:match("^%.%d*Z$"))) then return nil end
  y, mo, d, h, mi, se = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(se)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or se > (opts.leap and 60 or 59) then return nil end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se
end

-- ---- storage keys --------------------------------------------------------------------

--- Records the CMAC check value of a service's local master key in its store under
-- `name`, or, when the store already holds one, refuses (raises) a different key: a
-- store written under one LMK cannot be read under another. `who` and `advice` shape
-- the message.
function M.check_storage_key(store, name, lmk, who, advice)
  local kcv = lmk:kcv("CMAC")
  local stored = store:get(name)
  if stored == nil then
    store:put(name, kcv)
  elseif stored ~= kcv then
    error(("%s: the store was written under another local master key (KCV %s, configured %s); %s"):format(who,
      stored, kcv, advice), 0)
  end
end

-- ---- JSON with field order -----------------------------------------------------
-- Responses are written field by field in the order of the documents they model (lua-cjson
-- 2.1 has neither ordered objects nor empty arrays). util.object{"a", 1, "b", 2} and
-- util.array{...} build values; strings are escaped by cjson.
local cjson = require "cjson"
local OBJ, ARR = {}, {}

function M.object(kv) return setmetatable({ kv = kv }, OBJ) end
function M.array(t) return setmetatable({ items = t }, ARR) end

-- Field names, encoded once ("name":): they are the modelled APIs' names, written in the code.
local NAMES, n_names = {}, 0

local function enc(v, out)
  local t = type(v)
  if t == "string" then
    -- plain text as is; anything cjson would escape (control characters, quote,
    -- backslash, slash) or leave to UTF-8 goes through cjson, so the bytes are cjson's
    if v:find('[^ !#-.0-%[%]-~]') then out[#out + 1] = cjson.encode(v)
    else out[#out + 1] = '"' .. v .. '"' end
    return
  elseif t ~= "table" then
    out[#out + 1] = cjson.encode(v)
    return
  end
  local mt = getmetatable(v)
  if mt == OBJ then
    out[#out + 1] = "{"
    local kv, first = v.kv, true
    for i = 1, #kv, 2 do
      if kv[i + 1] ~= nil then
        if not first then out[#out + 1] = "," end
        first = false
        local name = kv[i]
        local q = NAMES[name]
        if not q then
          q = cjson.encode(name) .. ":"
          if n_names < 4096 then NAMES[name], n_names = q, n_names + 1 end
        end
        out[#out + 1] = q
        enc(kv[i + 1], out)
      end
    end
    out[#out + 1] = "}"
  elseif mt == ARR then
    out[#out + 1] = "["
    for i, item in ipairs(v.items) do
      if i > 1 then out[#out + 1] = "," end
      enc(item, out)
    end
    out[#out + 1] = "]"
  else
    out[#out + 1] = cjson.encode(v)
  end
end

--- Encodes util.object / util.array trees (and plain JSON values) to text; fields
-- whose value is nil are left out.
function M.json(v)
  local out = {}
  enc(v, out)
  return table.concat(out)
end

return M

--- AWS Signature Version 4 (AWS General Reference, "Signature Version 4 signing
-- process" / IAM user guide "Create a signed AWS API request"): the canonical request,
-- the string to sign and the signature, for both sides: sign() for a client, and a
-- verifier for a server that answers as AWS's JSON services do when a signature is
-- missing, malformed, made with an unknown access key, wrong, or outside the
-- clock-skew window (5 minutes by default).
--
-- SHA-256 is core.digest; the signing key is core.sigv4.signing_key (a payhsm HMAC key
-- object, so the derived bytes stay in C) and the signature core.hmac under it.
local core = require "payhsm.core"

local M = {}

M.ALGORITHM = "AWS4-HMAC-SHA256"
M.EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

--- Lower-case hex SHA-256 of a string (the payload hash and the hash of the
-- canonical request).
function M.sha256(s) return core.digest("SHA256", s):lower() end

-- RFC 3986 percent-encoding: everything but the unreserved characters A-Z a-z 0-9 - _ . ~
local function enc_char(c) return ("%%%02X"):format(c:byte()) end

--- Percent-encodes s as SigV4 requires (upper-case hex); keep_slash leaves "/" alone.
function M.uri_encode(s, keep_slash)
  if s == "/" and keep_slash then return s end
  return (s:gsub(keep_slash and "[^%w%-%._~/]" or "[^%w%-%._~]", enc_char))
end

--- The canonical query string of a query given as a string ("a=1&b=2", not decoded
-- further: each name and value is decoded once and encoded again) or as a table
-- {name = value | {values}}: pairs sorted by encoded name, then value.
function M.canonical_query(q)
  if q == nil or q == "" or (type(q) == "table" and next(q) == nil) then return "" end
  local pairs_ = {}
  if type(q) == "string" then
    for part in q:gmatch("[^&]+") do
      local k, v = part:match("^([^=]*)=?(.*)$")
      local function dec(x) return (x:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
      pairs_[#pairs_ + 1] = { M.uri_encode(dec(k)), M.uri_encode(dec(v)) }
    end
  elseif type(q) == "table" then
    for k, v in pairs(q) do
      if type(v) == "table" then
        for _, x in ipairs(v) do pairs_[#pairs_ + 1] = { M.uri_encode(k), M.uri_encode(tostring(x)) } end
      else
        pairs_[#pairs_ + 1] = { M.uri_encode(k), M.uri_encode(tostring(v)) }
      end
    end
  end
  table.sort(pairs_, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  local out = {}
  for i, p in ipairs(pairs_) do out[i] = p[1] .. "=" .. p[2] end
  return table.concat(out, "&")
end

-- A header value as SigV4 canonicalises it: trimmed, inner runs of spaces collapsed;
-- several values (a table) joined with ",".
local function canon_value(v)
  if type(v) == "table" then
    local t = {}
    for i, x in ipairs(v) do t[i] = canon_value(x) end
    return table.concat(t, ",")
  end
  v = tostring(v)
  local first, last = v:byte(1), v:byte(-1)
  if first ~= 32 and last ~= 32 and not v:find("[\t\r\n]") and not v:find("  ", 1, true) then return v end
  return (v:gsub("^%s+", ""):gsub("%s+$", ""):gsub("%s+", " "))
end

--- The canonical request: method, canonical URI (already encoded as the signer wants
-- it), canonical query, the signed headers (headers: lower-case name -> value; names:
-- sorted list of the signed names), the signed-header list and the payload hash.
function M.canonical_request(method, uri, query, headers, names, payload_hash)
  local lines = { method, uri, query }
  for _, n in ipairs(names) do lines[#lines + 1] = n .. ":" .. canon_value(headers[n] or "") end
  lines[#lines + 1] = ""
  lines[#lines + 1] = table.concat(names, ";")
  lines[#lines + 1] = payload_hash
  return table.concat(lines, "\n")
end

--- The string to sign: algorithm, request time, credential scope, hash of the
-- canonical request.
function M.string_to_sign(amz_date, scope, creq)
  return M.ALGORITHM .. "\n" .. amz_date .. "\n" .. scope .. "\n" .. M.sha256(creq)
end

--- The signature (lower-case hex) of a string to sign.
function M.signature(secret, date, region, service, sts)
  local k = core.sigv4.signing_key(secret, date, region, service)
  local sig = core.hmac(k, sts):lower()
  k:close()
  return sig
end

--- "20150830T123600Z" for a time in seconds since the epoch.
function M.amz_date(t) return os.date("!%Y%m%dT%H%M%SZ", math.floor(t)) end

--- Signs a request for a client. req = {method, path (as it goes on the wire, already
-- percent-encoded), query (string or table), headers = {name = value} (host required),
-- body}; opts = {access_key, secret_key, session_token, region, service, time (seconds,
-- default os.time()), unsigned_payload}. Adds x-amz-date, x-amz-content-sha256 when
-- opts.content_sha256, x-amz-security-token and authorization to req.headers (lower-
-- case names) and returns req, plus the canonical request and string to sign.
function M.sign(req, opts)
  local h = {}
  for k, v in pairs(req.headers or {}) do h[k:lower()] = v end
  assert(h.host, "sigv4.sign: the host header is required")
  local amz = h["x-amz-date"] or M.amz_date(opts.time or os.time())
  h["x-amz-date"] = amz
  if opts.session_token then h["x-amz-security-token"] = opts.session_token end
  local payload = opts.unsigned_payload and "UNSIGNED-PAYLOAD" or M.sha256(req.body or "")
  if opts.content_sha256 then h["x-amz-content-sha256"] = payload end
  local names = {}
  for k in pairs(h) do if k ~= "authorization" then names[#names + 1] = k end end
  table.sort(names)
  local uri = M.uri_encode(req.path or "/", true)
  local creq = M.canonical_request(req.method or "GET", uri, M.canonical_query(req.query), h, names, payload)
  local date = amz:sub(1, 8)
  local scope = ("%s/%s/%s/aws4_request"):format(date, opts.region, opts.service)
  local sts = M.string_to_sign(amz, scope, creq)
  local sig = M.signature(opts.secret_key, date, opts.region, opts.service, sts)
  h.authorization = ("%s Credential=%s/%s, SignedHeaders=%s, Signature=%s"):format(M.ALGORITHM, opts.access_key,
    scope, table.concat(names, ";"), sig)
  req.headers = h
  return req, creq, sts
end

-- ---- the server side ----------------------------------------------------------------

local Verifier = {}
Verifier.__index = Verifier

--- A verifier for the configured credentials {[access_key_id] = secret}, region and
-- service. opts.skew: the clock-skew window in seconds (default 300); opts.wire_path:
-- function(decoded path) -> the path as the client sent it, percent-encoded (the HTTP
-- layer decodes %2F to "/", so only the service's URI templates know which "/" were
-- inside a label); default: every segment encoded, "/" kept.
function M.verifier(credentials, region, service, opts)
  opts = opts or {}
  return setmetatable({ creds = credentials, region = region, service = service, skew = opts.skew or 300,
    wire_path = opts.wire_path or function(p) return M.uri_encode(p, true) end,
    keys = {}, nkeys = 0, names_of = {}, n_names = 0 }, Verifier)
end

local function refuse(kind, message) return { type = kind, message = message } end

-- The date of "20150830T123600Z" in seconds since the epoch, or nil (the last one
-- parsed is remembered: clients send the same second many times).
local last_amz, last_t
local function parse_amz(s)
  if s == last_amz then return last_t end
  local t = nil
  local y, mo, d, h, mi, se = tostring(s):match("^(%d%d%d%d)(%d%d)(%d%d)T(%d%d)(%d%d)(%d%d)Z$")
  if y then t = require("payhsm.util").parse_time(("%s-%s-%sT%s:%s:%sZ"):format(y, mo, d, h, mi, se)) end
  if t then last_amz, last_t = s, t end
  return t
end

-- The signing key of (access key, date), derived once per day and kept (at most 64).
function Verifier:_key(akid, secret, date)
  local id = akid .. "/" .. date
  local k = self.keys[id]
  if not k then
    if self.nkeys >= 64 then
      for _, old in pairs(self.keys) do old:close() end
      self.keys, self.nkeys = {}, 0
    end
    k = core.sigv4.signing_key(secret, date, self.region, self.service)
    self.keys[id], self.nkeys = k, self.nkeys + 1
  end
  return k
end

--- Verifies a request {method, path (decoded, as the HTTP layer hands it over),
-- query (table), headers (lower-case names), body} at time `now`. Returns the access
-- key id, or nil and a refusal {type = AWS error type, message = AWS's text}.
function Verifier:verify(req, now)
  local h = req.headers or {}
  local auth = h.authorization
  if type(auth) ~= "string" or auth == "" then
    if type(req.query) == "table" and req.query["X-Amz-Signature"] then
      return nil, refuse("IncompleteSignatureException", "Presigned requests (query authentication) are not supported by this service")
    end
    return nil, refuse("MissingAuthenticationTokenException", "Missing Authentication Token")
  end
  local alg, rest = auth:match("^(%S+)%s+(.*)$")
  if alg ~= M.ALGORITHM then
    return nil, refuse("IncompleteSignatureException", "Unsupported authorization type: " .. tostring(alg or auth:match("^%S*")))
  end
  local f = {}
  -- the form every SDK sends, in one match; anything else field by field
  f.Credential, f.SignedHeaders, f.Signature = rest:match("^Credential=([^,%s]+),%s*SignedHeaders=([^,%s]+),%s*Signature=(%x+)$")
  if not f.Credential then
    for k, v in rest:gmatch("(%w+)=([^,%s]*)") do f[k] = v end
  end
  for _, need in ipairs { "Credential", "SignedHeaders", "Signature" } do
    if not f[need] then
      return nil, refuse("IncompleteSignatureException", ("Authorization header requires '%s' parameter. "
        .. "Authorization=%s"):format(need, M.ALGORITHM))
    end
  end
  local akid, cdate, cregion, cservice, term = f.Credential:match("^([^/]+)/(%d%d%d%d%d%d%d%d)/([^/]+)/([^/]+)/([^/]+)$")
  if not akid or term ~= "aws4_request" then
    return nil, refuse("IncompleteSignatureException", "Authorization header requires a well-formed 'Credential' "
      .. "parameter (ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request)")
  end
  local amz = h["x-amz-date"] or h.date
  local t = parse_amz(amz)
  if not t then
    return nil, refuse("IncompleteSignatureException", "Authorization header requires existence of either a "
      .. "'X-Amz-Date' or a 'Date' header")
  end
  local secret = self.creds[akid]
  if type(secret) ~= "string" then
    return nil, refuse("UnrecognizedClientException", "The security token included in the request is invalid.")
  end
  if cdate ~= amz:sub(1, 8) then
    return nil, refuse("InvalidSignatureException", ("Date in Credential scope does not match YYYYMMDD from ISO-8601 "
      .. "version of date from HTTP: '%s' != '%s', from '%s'."):format(cdate, amz:sub(1, 8), amz))
  end
  if cregion ~= self.region then
    return nil, refuse("InvalidSignatureException", ("Credential should be scoped to a valid region. "
      .. "The configured region is '%s', the request is scoped to '%s'."):format(self.region, cregion))
  end
  if cservice ~= self.service then
    return nil, refuse("InvalidSignatureException", ("Credential should be scoped to correct service: '%s'. ")
      :format(self.service))
  end
  if t < now - self.skew then
    return nil, refuse("InvalidSignatureException", ("Signature expired: %s is now earlier than %s (%s - %g min.)")
      :format(amz, M.amz_date(now - self.skew), M.amz_date(now), self.skew / 60))
  elseif t > now + self.skew then
    return nil, refuse("InvalidSignatureException", ("Signature not yet current: %s is still later than %s (%s + %g min.)")
      :format(amz, M.amz_date(now + self.skew), M.amz_date(now), self.skew / 60))
  end
  local names = self.names_of[f.SignedHeaders]
  if not names then
    names = {}
    for n in f.SignedHeaders:gmatch("[^;]+") do names[#names + 1] = n end
    if self.n_names >= 64 then self.names_of, self.n_names = {}, 0 end
    self.names_of[f.SignedHeaders], self.n_names = names, self.n_names + 1
  end
  local signed_host = false
  for _, n in ipairs(names) do if n == "host" then signed_host = true end end
  if not signed_host then
    return nil, refuse("InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
  end
  local payload = M.sha256(req.body or "")
  local given_payload = h["x-amz-content-sha256"]
  if given_payload and given_payload ~= payload and given_payload ~= "UNSIGNED-PAYLOAD" then
    return nil, refuse("InvalidSignatureException", "The provided 'x-amz-content-sha256' header does not match what was computed.")
  end
  -- SigV4 encodes the path as sent once more (every service but S3)
  local uri = M.uri_encode(self.wire_path(req.path or "/"), true)
  local creq = M.canonical_request(req.method or "GET", uri, M.canonical_query(req.query), h, names,
    given_payload == "UNSIGNED-PAYLOAD" and given_payload or payload)
  local sts = M.string_to_sign(amz, ("%s/%s/%s/aws4_request"):format(cdate, cregion, cservice), creq)
  local want = core.hmac(self:_key(akid, secret, cdate), sts)
  if not core.equal(want, f.Signature:upper()) then
    return nil, refuse("InvalidSignatureException", "The request signature we calculated does not match the signature "
      .. "you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
  end
  return akid
end

return M

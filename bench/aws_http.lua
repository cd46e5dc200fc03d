--- AWS Payment Cryptography over keep-alive HTTP against `bin/payhsm serve aws` (its own
-- process: one thread, so one core), every request verified by SigV4 (payload hash,
-- canonical request, HMAC under the day's cached signing key), memory and sqlite stores:
-- the control plane's GetKey and the data plane's VerifyAuthRequestCryptogram (EMV common
-- session key, ARPC method 1), VerifyCardValidationData (CVV2) and GenerateMac (ISO 9797-1
-- algorithm 3). Target: >= 5,000 requests/s each.
--   lua5.4 bench/aws_http.lua [seconds]      (from the repo root)
-- Clients, HTTP/1.1 keep-alive, plain HTTP on loopback:
--   * wrk (Debian), 1 thread, 8 connections, the same signed GetKey request every time
--     (a SigV4 signature stays valid for its 5-minute window, as on AWS; the server
--     verifies each one in full). The server's CPU time per request comes from
--     /proc/PID/stat.
--   * the Lua client (payhsm.aws), one connection, signing each request afresh: latency-
--     bound, client and server on the same machine.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local cjson = require "cjson"
local serve = require "spec.support.serve"
local sigv4 = require "payhsm.aws.sigv4"
local aws = require "payhsm.aws"
local socket = require "socket"

local SECONDS = tonumber(arg[1]) or 5
local AKID, SECRET = "AKIDBENCH", "bench-secret-access-key"

local function config(backend, db)
  return ([[{listen = "127.0.0.1:0", region = "us-east-1", account = "111122223333",
    credentials = {%s = %q}, store = {backend = %q, path = %q},
    storage_key = {algorithm = "AES_256", hex = %q}}]]):format(AKID, SECRET, backend, db, ("A5"):rep(32))
end

local CLK_TCK
do
  local p = io.popen("getconf CLK_TCK")
  CLK_TCK = tonumber(p:read("*l")) or 100
  p:close()
end
local function cpu_seconds(pid)
  local f = assert(io.open("/proc/" .. pid .. "/stat"))
  local stat = f:read("*a")
  f:close()
  local fields = {}
  for w in stat:gsub("^.-%) ", ""):gmatch("%S+") do fields[#fields + 1] = w end
  return (tonumber(fields[12]) + tonumber(fields[13])) / CLK_TCK
end

local function record(name, n, dt, errors, extra)
  print(("%-52s %9.0f req/s  (%d requests in %.1f s, %d non-2xx or failed)%s"):format(name, n / dt, n, dt, errors,
    extra or ""))
end


-- wrk: one signed request, sent again and again; returns requests/s.
local function wrk(srv, name, path, body, headers)
  local req = sigv4.sign({ method = "POST", path = path, body = body, headers = headers },
    { access_key = AKID, secret_key = SECRET, region = "us-east-1", service = "payment-cryptography" })
  local hdrs = {}
  for k, v in pairs(req.headers) do
    if k ~= "host" then hdrs[#hdrs + 1] = ("[%q] = %q"):format(k, v) end
  end
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(([[
local body = %q
local headers = {%s}
request = function() return wrk.format("POST", %q, headers, body) end
done = function(summary)
  local e = summary.errors
  io.write(("RESULT %%d %%f %%d\n"):format(summary.requests, summary.duration / 1e6,
    e.status + e.connect + e.read + e.write + e.timeout))
end
]]):format(body, table.concat(hdrs, ", "), path))
  f:close()
  local cpu0 = cpu_seconds(srv.pid)
  local p = io.popen(("wrk -t1 -c8 -d%ds -s %s http://127.0.0.1:%d/ 2>&1"):format(SECONDS, script, srv.port))
  local out = p:read("*a")
  p:close()
  os.remove(script)
  local cpu = cpu_seconds(srv.pid) - cpu0
  local n, dt, errs = out:match("RESULT (%d+) ([%d.]+) (%d+)")
  if not n then print(out) error("wrk gave no result") end
  n, dt, errs = tonumber(n), tonumber(dt), tonumber(errs)
  record(name, n, dt, errs, ("  server CPU %.1f us/req"):format(cpu / n * 1e6))
end

-- Known keys brought in as an issuer brings them: a KEK by key cryptogram, TR-31 under it.
local function import_keys(pc)
  local hsm = require "payhsm"
  local p = assert(pc:GetParametersForImport { KeyMaterialType = "KEY_CRYPTOGRAM", WrappingKeyAlgorithm = "RSA_2048" })
  local cert = assert(hsm.core.pki.parse(require("payhsm.util").b64decode(p.WrappingKeyCertificate)))
  local kek = assert(hsm.key.import("AES_128", "2B7E151628AED2A6ABF7158809CF4F3C", { usage = "K0", mode = "B" }))
  local kek_arn = assert(pc:ImportKey { KeyMaterial = { KeyCryptogram = { KeyAttributes = {
    KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY", KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_128",
    KeyModesOfUse = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true } }, Exportable = true,
    WrappedKeyCryptogram = hsm.core.pki.oaep_wrap(cert.public_key, kek, "SHA_256"),
    ImportToken = p.ImportToken } } }).Key.KeyArn
  local function tr31(usage, mode)
    local k = assert(hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = usage, mode = mode }))
    return assert(pc:ImportKey { KeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = kek_arn,
      WrappedKeyBlock = assert(hsm.tr31.wrap(kek, k, { version = "D" })) } } }).Key.KeyArn
  end
  return { imk = tr31("E0", "X"), cvk = tr31("C0", "C"), mac = tr31("M3", "C") }
end

-- The data-plane requests: the values are those of spec/aws_data_spec.lua (psec, pyemv).
local function data_plane(srv, backend, keys)
  local host = { host = "127.0.0.1:" .. srv.port, ["content-type"] = "application/json" }
  wrk(srv, ("VerifyAuthRequestCryptogram, %s, wrk 8 conns"):format(backend), "/cryptogram/verify",
    cjson.encode { KeyIdentifier = keys.imk, TransactionData =
      "0000000010000000000000000840000000000840230101005A8CE1B200000000", AuthRequestCryptogram = "13437BD21D9827D8",
      MajorKeyDerivationMode = "EMV_OPTION_A", SessionKeyDerivationAttributes = { EmvCommon = {
        PrimaryAccountNumber = "4123456789012345", PanSequenceNumber = "00", ApplicationTransactionCounter = "0001" } },
      AuthResponseAttributes = { ArpcMethod1 = { AuthResponseCode = "3030" } } }, host)
  wrk(srv, ("VerifyCardValidationData, %s, wrk 8 conns"):format(backend), "/cardvalidationdata/verify",
    cjson.encode { KeyIdentifier = keys.cvk, PrimaryAccountNumber = "4123456789012345", ValidationData = "636",
      VerificationAttributes = { CardVerificationValue2 = { CardExpiryDate = "8701" } } }, host)
  wrk(srv, ("GenerateMac, %s, wrk 8 conns"):format(backend), "/mac/generate",
    cjson.encode { KeyIdentifier = keys.mac, MessageData = "4E6F77206973207468652074696D6520666F7220616C6C20",
      GenerationAttributes = { Algorithm = "ISO9797_ALGORITHM3" } }, host)
end

for _, backend in ipairs { "memory", "sqlite" } do
  local db = os.tmpname()
  local srv = serve.start("aws", config(backend, db))
  local pc = aws.new { endpoint = "http://127.0.0.1:" .. srv.port, region = "us-east-1", access_key = AKID,
    secret_key = SECRET }
  local key = assert(pc:CreateKey { Exportable = true, KeyAttributes = { KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY",
    KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_256",
    KeyModesOfUse = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true } } }).Key
  wrk(srv, ("GetKey, %s, wrk 8 conns, SigV4"):format(backend), "/", cjson.encode { KeyIdentifier = key.KeyArn },
    { host = "127.0.0.1:" .. srv.port, ["content-type"] = "application/x-amz-json-1.0",
      ["x-amz-target"] = "PaymentCryptographyControlPlane.GetKey" })
  data_plane(srv, backend, import_keys(pc))
  -- the Lua client, one connection, a fresh signature per request
  local count, fails, t0 = 0, 0, socket.gettime()
  while socket.gettime() - t0 < SECONDS do
    local out2 = pc:GetKey { KeyIdentifier = key.KeyArn }
    if not out2 then fails = fails + 1 end
    count = count + 1
  end
  record(("GetKey, %s, Lua client (payhsm.aws), 1 conn"):format(backend), count, socket.gettime() - t0, fails)
  pc:close()
  srv.stop()
  srv.cleanup()
  for _, s in ipairs { "", "-wal", "-shm", ".lmk" } do os.remove(db .. s) end
end

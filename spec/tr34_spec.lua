-- TR-34 key transport (csrc/tr34.c, tr34_unwrap.c, tr34_pki.c): ASC X9 TR-34-2019.
--
-- Known answers: the Annex B samples (spec/support/tr34_samples.lua, from the standard and
-- its corrigendum as reproduced in warthog33/keyblock tests/fromtr34.rs):
--  * B.2.2.3.1: with the published ephemeral key and IV (wrap's cek/iv), payhsm's envelope
--    equals the sample byte for byte except the RSA-OAEP encrypted key (OAEP is randomised),
--    so the B.2.2.2.1 key block, its padding and the TDES-CBC encryption are reproduced.
--  * B.2.2.3.2: its encrypted content reproduces under AES-128-CBC only with the IV read as
--    0123456789ABCDEF followed by eight zero bytes: the sample's IV field has 8 bytes, which
--    is no AES-CBC IV, and it encrypts the TDES key block (header A0256K0TB00E0000), not the
--    AES one of B.2.2.2.4.
--  * B.8 and B.9: the KDH 1 signature, the envelope digest and the B.9 nonce verify (a
--    changed nonce or byte is refused with its code), but no sample token opens:
--    the B.2.1.5 KDH 1 certificate carries Basic Constraints and Key Usage twice (RFC 5280
--    4.2 forbids it; OpenSSL 3 refuses the certificate: TR34_CERT_CHAIN), and the
--    encrypted keys of B.2.2.3.1/B.2.2.3.2 (and so of B.8/B.9) do not decrypt under the
--    published B.2.1.7 KRD 1 private key: below, the B.2.2.3.1 envelope re-signed by the
--    test KDH reaches decryption and is refused (TR34_RECIPIENT); RSAES-OAEP with any
--    SHA-1/SHA-2 hash pair fails on it too (checked with pyca/cryptography), as the
--    implementation the samples were taken from notes.
-- Round trips cover both roles, TDES and AES KEKs, the three forms and both nonce modes;
-- tools/crosscheck/tr34_pyca.py checks payhsm's tokens against pyca/cryptography and the
-- openssl command line, and opens tokens built the way AWS Payment Cryptography's TR-34
-- import sample builds them.
local hsm = require "payhsm"
local S = require "spec.support.tr34_samples"
local unpack = table.unpack or unpack

local T2019 = 1560358800 -- 2019-06-12 12:20 UTC: inside every Annex B validity period

local function sh(cmd)
  local ok = os.execute("env -u LD_PRELOAD " .. cmd .. " >/dev/null 2>&1")
  assert(ok == true or ok == 0, "command failed: " .. cmd)
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- An RSA PKI made with the openssl command line: CA, KDH, KRD, a second KRD, a KDH under
-- a stranger CA, and a KDH whose certificate only allows key encipherment.
local function make_pki()
  local dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. dir)
  local function ca(name)
    sh(("openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj '/CN=%s' -keyout %s/%s.key -out %s/%s.pem")
      :format(name, dir, name, dir, name))
  end
  local function leaf(name, issuer, ku, bits)
    sh(("openssl req -newkey rsa:%d -nodes -subj '/O=TR34 Test/CN=%s' -keyout %s/%s.key -out %s/%s.csr")
      :format(bits or 2048, name, dir, name, dir, name))
    local f = assert(io.open(dir .. "/" .. name .. ".ext", "w"))
    f:write("keyUsage=" .. ku .. "\n")
    f:close()
    sh(("openssl x509 -req -in %s/%s.csr -CA %s/%s.pem -CAkey %s/%s.key -CAcreateserial -days 10 -extfile %s/%s.ext -out %s/%s.pem")
      :format(dir, name, dir, issuer, dir, issuer, dir, name, dir, name))
  end
  ca("ca")
  ca("stranger")
  leaf("kdh", "ca", "digitalSignature")
  leaf("krd", "ca", "keyEncipherment")
  leaf("krd2", "ca", "keyEncipherment")
  leaf("rogue", "stranger", "digitalSignature")
  leaf("kdh_enc", "ca", "keyEncipherment")
  leaf("krd_small", "ca", "keyEncipherment", 1024)
  sh(("openssl pkcs8 -topk8 -nocrypt -outform DER -in %s/krd.key -out %s/krd.p8"):format(dir, dir))
  local P = {dir = dir}
  for _, n in ipairs({"ca", "stranger", "kdh", "krd", "krd2", "rogue", "kdh_enc", "krd_small"}) do
    P[n .. "_cert"] = read(dir .. "/" .. n .. ".pem")
    P[n .. "_key"] = read(dir .. "/" .. n .. ".key")
  end
  P.krd_p8 = read(dir .. "/krd.p8"):gsub(".", function(c) return ("%02X"):format(c:byte()) end)
  return P
end

local function merge(a, b)
  local o = {}
  for k, v in pairs(a) do o[k] = v end
  for k, v in pairs(b or {}) do o[k] = v end
  return o
end

-- Flips one hex digit of s at position i (1-based).
local function flip(s, i)
  local c = s:sub(i, i)
  local r = c == "0" and "1" or "0"
  return s:sub(1, i - 1) .. r .. s:sub(i + 1)
end

local function b64(s)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((s:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return chars:sub(c + 1, c + 1)
  end) .. ({"", "==", "="})[#s % 3 + 1])
end

-- DER as a tree, for tokens re-signed by the specs: der_parse(hex) -> {tag = n, value =
-- hex} or {tag = n, n children}; der_encode(node) -> hex (definite lengths, X.690 8.1.3).
local function der_parse(h)
  local nodes, i = {}, 1
  while i <= #h do
    local tag, len = tonumber(h:sub(i, i + 1), 16), tonumber(h:sub(i + 2, i + 3), 16)
    i = i + 4
    if len >= 0x80 then
      local k = len - 0x80
      len = tonumber(h:sub(i, i + 2 * k - 1), 16)
      i = i + 2 * k
    end
    local body = h:sub(i, i + 2 * len - 1)
    i = i + 2 * len
    local node = {tag = tag}
    if tag == 0x30 or tag == 0x31 or tag == 0xA0 then
      for _, c in ipairs(der_parse(body)) do node[#node + 1] = c end
    else
      node.value = body
    end
    nodes[#nodes + 1] = node
  end
  return nodes
end

local function der_encode(node)
  local body = node.value
  if not body then
    local parts = {}
    for _, c in ipairs(node) do parts[#parts + 1] = der_encode(c) end
    body = table.concat(parts)
  end
  local n = #body / 2
  local len = n < 0x80 and ("%02X"):format(n) or n < 0x100 and ("81%02X"):format(n) or ("82%04X"):format(n)
  return ("%02X"):format(node.tag) .. len .. body
end

local function tobytes(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end
local function tohex(s) return (s:gsub(".", function(c) return ("%02X"):format(c:byte()) end)) end

describe("tr34", function()
  local P, kdh_opts, krd_opts
  local NONCE = "8A1B2C3D4E5F6071"

  setup(function()
    P = make_pki()
    kdh_opts = {kdh_key = P.kdh_key, kdh_cert = P.kdh_cert, krd_cert = P.krd_cert, ca_cert = P.ca_cert, nonce = NONCE}
    krd_opts = {kdh_cert = P.kdh_cert, ca_cert = P.ca_cert, nonce = NONCE}
  end)

  teardown(function()
    os.execute("rm -rf " .. P.dir)
  end)

  -- Re-signs a token with the test KDH key (openssl dgst) after edit(signed_data, attrs)
  -- changed it; the messageDigest follows the (possibly new) envelope.
  local function resign(token, edit)
    local ci = der_parse(token)[1]
    local sd = ci[2][1]
    local si = sd[#sd][1]
    local attrs = si[4]
    edit(sd, attrs)
    local env = sd[3][2][1].value
    local f = assert(io.open(P.dir .. "/env.bin", "wb"))
    f:write(tobytes(env))
    f:close()
    sh(("openssl dgst -sha256 -binary -out %s/md.bin %s/env.bin"):format(P.dir, P.dir))
    for _, a in ipairs(attrs) do
      if a[1].value == "2A864886F70D010904" then a[2][1].value = tohex(read(P.dir .. "/md.bin")) end
    end
    f = assert(io.open(P.dir .. "/attrs.bin", "wb"))
    f:write(tobytes(der_encode({tag = 0x31, unpack(attrs)})))
    f:close()
    sh(("openssl dgst -sha256 -sign %s/kdh.key -out %s/sig.bin %s/attrs.bin"):format(P.dir, P.dir, P.dir))
    si[#si].value = tohex(read(P.dir .. "/sig.bin"))
    return der_encode(ci)
  end

  describe("TR-34-2019 Annex B samples", function()
    local kek = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210")
    local function sample_wrap(extra)
      return assert(hsm.tr34.wrap(kek, merge({kdh_key = S.kdh1_key, kdh_cert = S.kdh1_cert, krd_cert = S.krd1_cert,
        ca_cert = S.root_cert, chain = S.ca_krd_cert, time = T2019, header = "A0256K0TB00E0000",
        form = "TR34_2019", nonce = "167EB0E72781E4940112233445566778"}, extra)))
    end
    local function hexstr(s) return (s:gsub("%s", "")) end

    it("B.2.2.3.1: the TDES envelope is reproduced but for the RSA-OAEP encrypted key", function()
      local env = hexstr(S.envelope_tdes)
      local blk = sample_wrap({cek = hsm.key.import("TDES_3KEY", "0123456789ABCDEFFEDCBA9876543210FFEEDDCCBBAA9988"),
        iv = "0123456789ABCDEF"})
      local ek = env:find("04820100", 1, true)
      assert.is_truthy(blk:find(env:sub(1, ek + 7), 1, true))    -- version, recipient, OAEP parameters
      assert.is_truthy(blk:find(env:sub(ek + 8 + 512), 1, true)) -- IV and TDES-CBC content
      -- the encrypted content decrypts to the B.2.2.2.1 key block (+ 03 03 03 padding)
      assert.equal(hexstr(S.keyblock_tdes) .. "030303", hsm.cipher.decrypt(
        hsm.key.import("TDES_3KEY", "0123456789ABCDEFFEDCBA9876543210FFEEDDCCBBAA9988"), "CBC", env:sub(-272),
        "0123456789ABCDEF"))
    end)

    it("B.2.2.3.2: the AES content reproduces with its 8-byte IV field padded with zeros", function()
      local env = hexstr(S.envelope_aes)
      local blk = sample_wrap({cipher = "AES", cek = hsm.key.import("AES_128", "0123456789ABCDEFFEDCBA9876543210"),
        iv = "0123456789ABCDEF0000000000000000"})
      assert.is_truthy(blk:find(env:sub(-288), 1, true))
      assert.equal("0123456789ABCDEF", env:sub(-288 - 6 - 16, -288 - 7))
    end)

    it("B.2.2.3.1: its encrypted key does not open with the B.2.1.7 KRD 1 private key", function()
      -- the sample envelope, signed afresh by the test KDH, reaches the decryption step
      local kek2 = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210")
      local tok = assert(hsm.tr34.wrap(kek2, merge(kdh_opts, {krd_cert = S.krd1_cert, ca_cert = S.root_cert,
        chain = S.ca_krd_cert, time = T2019, form = "TR34_2019"})))
      local forged = resign(tok, function(sd) sd[3][2][1].value = hexstr(S.envelope_tdes) end)
      local k, msg, code = hsm.tr34.unwrap(S.krd1_key, forged, merge(krd_opts, {krd_cert = S.krd1_cert}))
      assert.is_nil(k, msg)
      assert.equal("TR34_RECIPIENT", code)
      assert.equal("tr34.unwrap: the envelope does not open with krd_key", msg)
      -- while the same re-signing around payhsm's own envelope opens
      local k2, info = hsm.tr34.unwrap(S.krd1_key, resign(tok, function() end), krd_opts)
      assert.is_truthy(k2, info)
      assert.equal(hsm.kcv(kek2), hsm.kcv(k2))
    end)

    local b9_opts = {kdh_cert = S.kdh1_cert, ca_cert = S.root_cert, chain = S.ca_kdh_cert, time = T2019,
      nonce = "167EB0E72781E4940112233445566778", krd_cert = S.krd1_cert}

    it("B.9: signature, digest and nonce verify; the KDH 1 certificate itself is refused", function()
      local k, msg, code = hsm.tr34.unwrap(S.krd1_key, hexstr(S.token_2pass), b9_opts)
      assert.is_nil(k)
      assert.equal("TR34_CERT_CHAIN", code)
      assert.matches("TR34 Sample KDH 1", msg)
    end)

    it("B.9: another nonce is refused as stale", function()
      local _, _, code = hsm.tr34.unwrap(S.krd1_key, hexstr(S.token_2pass),
        merge(b9_opts, {nonce = "167EB0E72781E4940112233445566779"}))
      assert.equal("TR34_NONCE", code)
      local opts = merge(b9_opts)
      opts.nonce = nil
      _, _, code = hsm.tr34.unwrap(S.krd1_key, hexstr(S.token_2pass), opts)
      assert.equal("TR34_NONCE", code) -- a two-pass token needs the KRD's nonce
    end)

    it("B.9: a changed signature byte or a changed envelope byte", function()
      local tok = hexstr(S.token_2pass)
      local _, _, code = hsm.tr34.unwrap(S.krd1_key, flip(tok, #tok - 2), b9_opts)
      assert.equal("TR34_SIGNATURE", code)
      _, _, code = hsm.tr34.unwrap(S.krd1_key, flip(tok, 200), b9_opts)
      assert.equal("TR34_ENVELOPE", code)
      _, _, code = hsm.tr34.unwrap(S.krd1_key, tok, merge(b9_opts, {kdh_cert = S.ca_kdh_cert}))
      assert.equal("TR34_SIGNER", code)
    end)

    it("B.8: the one-pass token verifies up to the same certificate", function()
      local opts = merge(b9_opts, {})
      opts.nonce = nil
      local _, _, code = hsm.tr34.unwrap(S.krd1_key, hexstr(S.token_1pass), opts)
      assert.equal("TR34_CERT_CHAIN", code)
      _, _, code = hsm.tr34.unwrap(S.krd1_key, hexstr(S.token_1pass), b9_opts)
      assert.equal("TR34_NONCE", code) -- a one-pass token carries no nonce
    end)
  end)

  describe("round trips", function()
    local cases = {
      {"TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", "T", "TDES"},
      {"TDES_3KEY", "0123456789ABCDEFFEDCBA9876543210FFEEDDCCBBAA9988", "T", "TDES"},
      {"AES_128", "000102030405060708090A0B0C0D0E0F", "A", "AES"},
      {"AES_192", "000102030405060708090A0B0C0D0E0F1011121314151617", "A", "AES"},
      {"AES_256", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", "A", "AES"},
    }
    for _, form in ipairs({"X9_TR34_2012", "TR34_2019", "RFC5652"}) do
      for _, c in ipairs(cases) do
        it(("%s KEK, form %s"):format(c[1], form), function()
          local kek = hsm.key.import(c[1], c[2], {usage = "K1", mode = "D", version = "07", exportability = "S"})
          local blk = assert(hsm.tr34.wrap(kek, merge(kdh_opts, {form = form})))
          assert.matches("^[0-9A-F]+$", blk)
          local k, info = hsm.tr34.unwrap(P.krd_key, blk, merge(krd_opts, {krd_cert = P.krd_cert}))
          assert.is_truthy(k, info)
          assert.equal(hsm.kcv(kek), hsm.kcv(k))
          assert.equal(c[1], info.algorithm)
          assert.equal("D9999K1" .. c[3] .. "D07S0000", info.header)
          assert.same({"K1", "D", "07", "S"}, {info.usage, info.mode, info.version, info.exportability})
          assert.equal(form, info.form)
          assert.equal(c[4], info.cipher)
          assert.equal(NONCE, info.nonce)
          assert.matches("usage K1", tostring(k))
        end)
      end
    end

    it("the AWS Payment Cryptography layout: eContent holds the EnvelopedData fields unwrapped", function()
      local kek = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210")
      local blk = hsm.tr34.wrap(kek, kdh_opts)
      -- ContentInfo { signedData, [0] { SignedData { 1, {sha256}, { envelopedData, [0] OCTET STRING {
      -- INTEGER 0, SET ... (no SEQUENCE header): the shape AWS's TR-34 import and export samples build and walk
      assert.matches("^308[12]....06092A864886F70D010702A08[12]....308[12]....020101310D300B0609608648016503040201", blk)
      assert.matches("06092A864886F70D010703A08[12]....048[12]....020100318201", blk)
      -- RSAES-OAEP with the three untagged AlgorithmIdentifiers of TR-34-2019 B.2.2.3
      assert.is_truthy(blk:find("06092A864886F70D0101073038300D06096086480165030402010500301806092A864886F70D010108"
        .. "300B0609608648016503040201300D06092A864886F70D0101090400", 1, true))
      -- signed attributes: contentType, randomNonce (8 bytes), the header, messageDigest, in that (DER) order
      assert.is_truthy(blk:find("3018" .. "06092A864886F70D010903310B06092A864886F70D010703" .. "3018060A2A864886F70D01091903310A0408"
        .. NONCE .. "301F06092A864886F70D0107013112" .. "0410" .. "44393939394B30544230304530303030", 1, true))
      -- the signature: rsaEncryption NULL, 256 bytes
      assert.matches("300D06092A864886F70D01010105000482010[0-9A-F]+$", blk)
    end)

    it("one-pass tokens carry signingTime instead of a nonce", function()
      local kek = hsm.key.import("AES_128", "000102030405060708090A0B0C0D0E0F")
      local o = merge(kdh_opts)
      o.nonce = nil
      local blk = assert(hsm.tr34.wrap(kek, merge(o, {time = os.time() + 60})))
      local o2 = merge(krd_opts)
      o2.nonce = nil
      local k, info = hsm.tr34.unwrap(P.krd_key, blk, o2)
      assert.is_truthy(k, info)
      assert.is_nil(info.nonce)
      assert.equal(os.date("!%y%m%d%H%M", os.time() + 60), info.signing_time:sub(1, 10))
      assert.equal("Z", info.signing_time:sub(-1))
    end)

    it("certificates as AWS passes them (base64 of PEM), keys as payhsm.RsaKey", function()
      local aes = hsm.key.generate("AES_256")
      local krd_rsa = assert(hsm.rsa.unwrap(aes, hsm.rsa.kwp_wrap(aes, P.krd_p8)))
      local kek = hsm.key.import("TDES_3KEY", "0123456789ABCDEFFEDCBA9876543210FFEEDDCCBBAA9988")
      local blk = assert(hsm.tr34.wrap(kek, merge(kdh_opts, {krd_cert = b64(P.krd_cert), ca_cert = b64(P.ca_cert),
        kdh_cert = b64(P.kdh_cert), kdh_key = b64(P.kdh_key)})))
      local k, info = hsm.tr34.unwrap(krd_rsa, blk, merge(krd_opts, {kdh_cert = b64(P.kdh_cert)}))
      assert.is_truthy(k, info)
      assert.equal(hsm.kcv(kek), hsm.kcv(k))
    end)

    it("a fresh ephemeral key and IV for every token", function()
      local kek = hsm.key.import("AES_128", "000102030405060708090A0B0C0D0E0F")
      assert.are_not.equal(hsm.tr34.wrap(kek, kdh_opts), hsm.tr34.wrap(kek, kdh_opts))
    end)
  end)

  describe("refusals", function()
    local kek = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210")
    local blk
    before_each(function()
      blk = blk or assert(hsm.tr34.wrap(kek, kdh_opts))
    end)
    local function code_of(key, block, opts)
      local k, msg, code = hsm.tr34.unwrap(key or P.krd_key, block or blk, merge(krd_opts, opts))
      assert.is_nil(k)
      assert.is_string(msg)
      assert.matches("^tr34.unwrap: ", msg)
      return code
    end

    it("a token signed by another KDH than kdh_cert", function()
      assert.equal("TR34_SIGNER", code_of(nil, nil, {kdh_cert = P.kdh_enc_cert}))
    end)
    it("an altered signature or signed attribute", function()
      assert.equal("TR34_SIGNATURE", code_of(nil, flip(blk, #blk - 3)))
      local at = blk:find(NONCE, 1, true)
      assert.equal("TR34_SIGNATURE", code_of(nil, flip(blk, at), {nonce = flip(NONCE, 1)}))
    end)
    it("an altered envelope", function()
      assert.equal("TR34_ENVELOPE", code_of(nil, flip(blk, blk:find("04820100", 1, true) + 20)))
    end)
    it("a stale, missing or unexpected nonce", function()
      assert.equal("TR34_NONCE", code_of(nil, nil, {nonce = "0000000000000000"}))
      local o = merge(krd_opts)
      o.nonce = nil
      local k, _, code = hsm.tr34.unwrap(P.krd_key, blk, o)
      assert.is_nil(k)
      assert.equal("TR34_NONCE", code)
      local onepass = merge(kdh_opts)
      onepass.nonce = nil
      assert.equal("TR34_NONCE", code_of(nil, hsm.tr34.wrap(kek, onepass)))
    end)
    it("an expired or not yet valid KDH certificate", function()
      assert.equal("TR34_CERT_EXPIRED", code_of(nil, nil, {time = os.time() + 20 * 86400}))
      assert.equal("TR34_CERT_EXPIRED", code_of(nil, nil, {time = os.time() - 2 * 86400}))
    end)
    it("a KDH certificate from an untrusted CA", function()
      assert.equal("TR34_CERT_CHAIN", code_of(nil, nil, {ca_cert = P.stranger_cert}))
      local rogue = assert(hsm.tr34.wrap(kek, merge(kdh_opts, {kdh_key = P.rogue_key, kdh_cert = P.rogue_cert})))
      assert.equal("TR34_CERT_CHAIN", code_of(nil, rogue, {kdh_cert = P.rogue_cert}))
    end)
    it("a KDH certificate whose key usage forbids signatures", function()
      local t = assert(hsm.tr34.wrap(kek, merge(kdh_opts, {kdh_key = P.kdh_enc_key, kdh_cert = P.kdh_enc_cert})))
      assert.equal("TR34_CERT_USAGE", code_of(nil, t, {kdh_cert = P.kdh_enc_cert}))
    end)
    it("a token made for another KRD", function()
      assert.equal("TR34_RECIPIENT", code_of(P.krd2_key))
      assert.equal("TR34_RECIPIENT", code_of(nil, nil, {krd_cert = P.krd2_cert}))
    end)
    it("a signed header that differs from the one inside the key block", function()
      -- the KDH signs K1 where the key block says K0: the signed attributes are changed and
      -- signed again with the KDH key (openssl dgst), so only the header check can catch it
      local forged = resign(blk, function(_, attrs)
        for _, a in ipairs(attrs) do
          if a[1].value == "2A864886F70D010701" then a[2][1].value = tohex("D9999K1TB00E0000") end
        end
      end)
      assert.equal(#blk, #forged)
      assert.equal("TR34_HEADER", code_of(nil, forged))
      assert.is_truthy(hsm.tr34.unwrap(P.krd_key, resign(blk, function() end), krd_opts))
    end)
    it("what is not a TR-34 token", function()
      assert.equal("TR34_FORMAT", code_of(nil, "3003020101"))
      assert.equal("TR34_FORMAT", code_of(nil, blk .. "00"))
      assert.equal("BAD_HEX", code_of(nil, "ZZ"))
    end)
    it("unreadable certificates and keys", function()
      assert.equal("TR34_CERT", code_of(nil, nil, {kdh_cert = "not a certificate"}))
      assert.equal("TR34_CERT", code_of(nil, nil, {ca_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}))
      assert.equal("TR34_KEY", code_of("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
    end)

    describe("wrap", function()
      local function wrap_code(k, opts)
        local r, msg, code = hsm.tr34.wrap(k or kek, merge(kdh_opts, opts))
        assert.is_nil(r)
        assert.matches("^tr34.wrap: ", msg)
        return code
      end
      it("checks the KRD certificate against the CA", function()
        assert.equal("TR34_CERT_CHAIN", wrap_code(nil, {ca_cert = P.stranger_cert}))
        assert.equal("TR34_CERT_EXPIRED", wrap_code(nil, {time = os.time() + 20 * 86400}))
        assert.equal("TR34_CERT_USAGE", wrap_code(nil, {krd_cert = P.kdh_cert}))
        assert.equal("TR34_CERT", wrap_code(nil, {krd_cert = P.krd_small_cert})) -- RSA-1024
      end)
      it("refuses a KDH key that is not kdh_cert's", function()
        assert.equal("TR34_KEY", wrap_code(nil, {kdh_key = P.krd_key}))
        assert.equal("TR34_KEY", wrap_code(nil, {kdh_key = "garbage"}))
      end)
      it("refuses keys TR-34 does not carry or that may not leave", function()
        assert.equal("KEY_TYPE", wrap_code(hsm.key.generate("HMAC_SHA256")))
        assert.equal("KEY_TYPE", wrap_code(hsm.key.import("DES", "0123456789ABCDEF")))
        assert.equal("KEY_USAGE", wrap_code(hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210",
          {exportability = "N"})))
      end)
      it("checks the nonce option", function()
        assert.equal("BAD_HEX", wrap_code(nil, {nonce = "XY"}))
        assert.equal("BAD_LENGTH", wrap_code(nil, {nonce = "0011"}))
      end)
      it("raises on misuse", function()
        assert.has_error(function() hsm.tr34.wrap(kek, merge(kdh_opts, {nonse = NONCE})) end,
          "tr34.wrap: unknown option 'nonse' (expected one of: kdh_key, kdh_cert, krd_cert, ca_cert, chain, nonce, header, cipher, form, time, cek, iv)")
        assert.has_error(function() hsm.tr34.wrap(kek, merge(kdh_opts, {header = "D9999K0AB00E0000"})) end)
        assert.has_error(function() hsm.tr34.wrap(kek, merge(kdh_opts, {form = "PKCS7"})) end)
        assert.has_error(function() hsm.tr34.unwrap(P.krd_key, blk, {ca_cert = P.ca_cert}) end,
          "tr34.unwrap: kdh_cert and ca_cert are required")
        assert.has_error(function() hsm.tr34.unwrap(42, blk, krd_opts) end)
      end)
    end)
  end)
end)

--- Every core operation with marked keys (spec/support/marked.lua), its results handed to
-- emit(label, value) as text: keys by tostring, tables serialised, error messages of
-- raising misuse and of every bad-input row (spec/support/bad_input.lua) included.
-- spec/secrets_spec.lua calls it in process (scanning each value) and runs it as a script,
-- which prints every value, to scan stdout and stderr:
--   lua5.4 spec/support/secret_ops.lua
-- Nothing here calls key:export(): that is the one way clear bytes are meant to leave.
if not package.loaded["spec.support.secret_ops"] and ... ~= "spec.support.secret_ops" then
  -- run as a script: put payhsm on the path (in process, the spec's paths stand)
  package.path = "./?.lua;./lua/?.lua;./lua/?/init.lua;" .. package.path
  package.cpath = "./build/?.so;" .. package.cpath
end
local hsm = require "payhsm"
local marked = require "spec.support.marked"

local function text(v, seen)
  if type(v) == "table" then
    seen = seen or {}
    if seen[v] then return "<cycle>" end
    seen[v] = true
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. text(v[k], seen) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

return function(emit)
  local function out(label, ...)
    local r = table.pack(...)
    for i = 1, r.n do emit(label, text(r[i])) end
  end
  -- raising calls: the message is emitted
  local function raise(label, f, ...)
    local ok, err = pcall(f, ...)
    emit(label, ok and "(did not raise)" or text(err))
  end

  -- tags from 80 up, even (DES ignores each byte's low bit)
  local tag = 0x7E
  local function key(alg, n, attrs)
    tag = tag + 2
    local k = assert(hsm.key.import(alg, marked.hex(n, ("%02X"):format(tag), "secret_ops " .. alg), attrs))
    out("tostring " .. alg, k)
    out("fields " .. alg, k.algorithm, k.bits, k.usage, k.mode, k.version, k.exportability, k.closed)
    return k
  end

  -- keys of every algorithm and their check values
  local des = key("DES", 8)
  local tdes2, tdes3 = key("TDES_2KEY", 16), key("TDES_3KEY", 24)
  local aes128, aes192, aes256 = key("AES_128", 16), key("AES_192", 24), key("AES_256", 32)
  local h256, h384, h512 = key("HMAC_SHA256", 32), key("HMAC_SHA384", 48), key("HMAC_SHA512", 64)
  local h_short = key("HMAC_SHA256", 5)
  for _, k in ipairs { des, tdes2, tdes3, aes128, aes192, aes256 } do
    out("kcv", k:kcv(), k:kcv("CMAC"), hsm.kcv(k, "ANSI_X9_24"))
  end
  for _, k in ipairs { h256, h384, h512, h_short } do out("kcv hmac", k:kcv(), hsm.kcv(k, "HMAC")) end
  local kdk = key("AES_256", 32, { usage = "B0" })
  out("derive", hsm.key.derive(kdk, "AES_128", "label", "context", { usage = "D0" }))
  out("derive hmac", hsm.key.derive(key("HMAC_SHA256", 32), "TDES_2KEY", "l", "c"))
  out("generate", hsm.key.generate("TDES_2KEY", { usage = "K0" }))

  -- ciphers
  for _, k in ipairs { des, tdes2, tdes3, aes128, aes192, aes256 } do
    local bs = k.algorithm:match("^AES") and 16 or 8
    local ecb = hsm.cipher.encrypt(k, "ECB", ("00"):rep(2 * bs))
    local cbc = hsm.cipher.encrypt(k, "CBC", ("11"):rep(2 * bs), ("22"):rep(bs))
    out("cipher " .. k.algorithm, ecb, cbc, hsm.cipher.decrypt(k, "ECB", ecb), hsm.cipher.decrypt(k, "CBC", cbc))
  end

  -- MACs
  local data = "4E6F77206973207468652074696D6520666F7220616C6C20"
  for _, c in ipairs {
    { des, "ISO9797_ALGORITHM1" }, { tdes2, "ISO9797_ALGORITHM1" }, { aes128, "ISO9797_ALGORITHM1" },
    { tdes2, "ISO9797_ALGORITHM3" }, { tdes3, "CMAC" }, { aes256, "CMAC" },
    { h256, "HMAC_SHA256" }, { h384, "HMAC_SHA384" }, { h512, "HMAC" },
  } do
    local mac = hsm.mac.generate(c[1], c[2], data)
    out("mac " .. c[2], mac, hsm.mac.verify(c[1], c[2], data, mac), hsm.mac.verify(c[1], c[2], data, ("00"):rep(math.floor(#mac / 2))))
  end
  local hm = hsm.hmac(h256, "a message")
  out("hmac", hm, hsm.hmac_verify(h256, "a message", hm), hsm.hmac_verify(h256, "another", hm))

  -- TR-31
  local kbpk_d = key("AES_256", 32, { usage = "K1", mode = "B" })
  local kbpk_b = key("TDES_3KEY", 24, { usage = "K0", mode = "B" })
  local pek = key("AES_128", 16, { usage = "P0", mode = "E", exportability = "E" })
  local pek_t = key("TDES_2KEY", 16, { usage = "P0", mode = "B" })
  for _, c in ipairs {
    { kbpk_d, pek, { version = "D" } }, { kbpk_d, h256, { usage = "M7", mode = "C" } }, { kbpk_b, pek_t, { version = "B" } },
    { kbpk_b, pek_t, { version = "A" }, { legacy = true } }, { kbpk_b, pek_t, { version = "C" }, { legacy = true } },
    { kbpk_d, pek, { version = "D" }, { obfuscate = false } },
  } do
    local block = assert(hsm.tr31.wrap(c[1], c[2], c[3], c[4]))
    local k2, header = hsm.tr31.unwrap(c[1], block)
    out("tr31", block, k2, header, hsm.tr31.parse(block))
    out("tr31 tampered", hsm.tr31.unwrap(c[1], block:sub(1, -2) .. (block:sub(-1) == "0" and "1" or "0")))
  end

  -- PIN blocks
  local pan = "4111111111111111"
  local pek_aes = key("AES_128", 16, { usage = "P0", mode = "B" })
  for _, f in ipairs { "ISO_FORMAT_0", "ISO_FORMAT_1", "ISO_FORMAT_2", "ISO_FORMAT_3", "ISO_FORMAT_4" } do
    local k = f == "ISO_FORMAT_4" and pek_aes or pek_t
    local p = f ~= "ISO_FORMAT_1" and f ~= "ISO_FORMAT_2" and pan or nil
    local clear = hsm.pin.format(f, "1234", p)
    local block = hsm.pin.encrypt(k, f, "1234", p)
    out("pin " .. f, clear, hsm.pin.parse(f, clear, p), block, hsm.pin.decrypt(k, f, block, p))
  end
  out("pin translate", hsm.pin.translate(pek_t, "ISO_FORMAT_0", hsm.pin.encrypt(pek_t, "ISO_FORMAT_0", "1234", pan),
    pek_aes, "ISO_FORMAT_4", pan))

  -- EMV
  local imk = key("TDES_2KEY", 16, { usage = "E0" })
  local emv_data = "0000000010000000000000000840000000000008402303010000000001"
  for _, mode in ipairs { "EMV_OPTION_A", "EMV_OPTION_B" } do
    local mk = hsm.emv.derive_icc_master_key(imk, "12345678901234567", "01", mode)
    out("emv icc " .. mode, mk)
    for _, d in ipairs { "EMV_COMMON", "MASTERCARD", "EMV2000" } do
      out("emv session " .. d, hsm.emv.derive_session_key(mk, d, { atc = "001C", un = "3804823E" }))
    end
  end
  for _, d in ipairs { "EMV_COMMON", "MASTERCARD", "EMV2000", "VISA", "AMEX" } do
    local p = { derivation = d, pan = pan, psn = "00", atc = "0001", un = "12345678", data = emv_data }
    p.arqc = hsm.emv.generate_arqc(imk, p)
    out("emv arqc " .. d, p.arqc, hsm.emv.verify_arqc(imk, p))
    p.arc = "3030"
    out("emv arpc " .. d, hsm.emv.generate_arpc(imk, p))
    p.method, p.csu = 2, "00800000"
    out("emv arpc2 " .. d, hsm.emv.generate_arpc(imk, p))
  end
  out("emv compute_arpc", hsm.emv.compute_arpc(tdes2, { arqc = ("12"):rep(8), arc = "0000" }))

  -- AS2805
  local kek = key("TDES_2KEY", 16, { usage = "K0" })
  for _, m in ipairs { "VARIANT_MASK_82C0", "VARIANT_MASK_82" } do
    local r = hsm.as2805.kek_validation_request(kek, { variant_mask = m, random_key_max_length = "BYTES_16" })
    local krr = hsm.as2805.kek_validation_response(kek, r.random_key_send, { variant_mask = m })
    out("as2805 " .. m, r, krr, hsm.as2805.kek_validation_verify(kek, r.random_key_send, krr, { variant_mask = m }))
  end

  -- ZKA
  local zmk = key("TDES_2KEY", 16, { usage = "B0" })
  local rnd = ("3C"):rep(16)
  local sk_mac = hsm.zka.derive_session_key(zmk, "MAC", rnd)
  out("zka", hsm.zka.derive_session_key(zmk, "PAC", rnd), sk_mac, hsm.zka.derive_session_key(zmk, "ENC", rnd))
  local zmac = hsm.zka.mac(sk_mac, data, { length = 8 })
  out("zka mac", zmac, hsm.zka.verify_mac(sk_mac, data, zmac), hsm.zka.verify_mac(sk_mac, data, ("00"):rep(8)))

  -- envelopes
  local msk = key("AES_256", 32, { usage = "D0" })
  for _, o in ipairs { {}, { chunked = true, chunk_size = 32 } } do
    local e = hsm.envelope.seal(msk, ("plaintext "):rep(10), o)
    local json = hsm.envelope.encode(e)
    out("envelope", e, json, hsm.envelope.open(msk, json),
      hsm.envelope.open(msk, json, { mac_key = h256, hmac = hsm.hmac(h256, json) }),
      hsm.envelope.open(key("AES_256", 32), json))
  end

  -- rotation state
  local rot = hsm.rotation.new { ids = { "1001", "1002", "1003" } }
  out("rotation", rot:import { kcv = pek:kcv(), block = hsm.tr31.wrap(kbpk_d, pek, {}) })
  out("rotation", rot:active(), rot:list(), rot:snapshot(), hsm.rotation.restore(rot:snapshot()))

  -- misuse raises: the messages must not carry key bytes either
  raise("raise bad attrs", hsm.key.import, "AES_128", marked.hex(16, "FE", "secret_ops raise"), { usage = "ZZ" })
  raise("raise hmac usage", hsm.key.import, "HMAC_SHA256", marked.hex(32, "FC", "secret_ops raise"), { usage = "P0" })
  raise("raise unknown alg", hsm.key.import, "AES_512", marked.hex(64, "FA", "secret_ops raise"))
  raise("raise kcv type", hsm.kcv, h256, "CMAC")
  raise("raise cipher mode", hsm.cipher.encrypt, aes128, "XTS", ("00"):rep(16))
  raise("raise mac alg", hsm.mac.generate, tdes2, "NOPE", "00")
  raise("raise mac length", hsm.mac.generate, tdes2, "ISO9797_ALGORITHM3", "00", { length = 2 })
  raise("raise key as data", hsm.cipher.encrypt, aes128, "ECB", aes128)
  raise("raise derive des", hsm.key.derive, tdes2, "AES_128", "l", "c")
  raise("raise emv", hsm.emv.generate_arqc, imk, { pan = pan, atc = "0001" })
  raise("raise policy", hsm.policy, { clear_export = "maybe" })
  local closed = key("AES_128", 16)
  closed:close()
  out("closed", closed, closed.closed)
  raise("raise closed kcv", closed.kcv, closed)
  raise("raise closed export", closed.export, closed)
  raise("raise closed use", hsm.cipher.encrypt, closed, "ECB", ("00"):rep(16))

  -- every bad-input row, with the marked keys of its fixtures
  local bad_input = require "spec.support.bad_input"
  local env = bad_input.env()
  for _, row in ipairs(bad_input.rows) do
    local o = bad_input.run(row, env)
    out("bad input " .. row[1] .. ": " .. row[2], o.raised or o.body or o.results)
  end
end

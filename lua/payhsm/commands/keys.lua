--- bin/payhsm subcommands for keys: `dukpt derive|initial-key` (ANSI X9.24-1:2009 Annex A,
-- X9.24-3:2017; AWS Payment Cryptography's DukptAttributes member names),
-- `tr34 wrap|unwrap` (ASC X9 TR-34-2019; AWS's Tr34KeyBlock member names) and
-- `key combine|split` (ANSI X9.24-1 key components). Keys come from and go to key files
-- with their TR-31 attributes (mode 0600, --force to replace); components are read from
-- files or stdin, never from the command line. Loaded by payhsm.commands.
local hsm = require "payhsm"
local util = require "payhsm.util"
local core = require "payhsm.core"

return function(C, H)
  local fail, required, call, load_key, save_key = H.fail, H.required, H.call, H.load_key, H.save_key
  local kcv_of, kcv_alg, obj, read_secret, KEYALG, FORCE = H.kcv_of, H.kcv_alg, H.obj, H.read_secret, H.KEYALG, H.FORCE
  local OUT = { "out", "write the key to this file (mode 0600; - for stdout)" }

  local function key_result(key, file, ...)
    return obj("KeyAlgorithm", key.algorithm, "KeyCheckValue", kcv_of(key), "KeyCheckValueAlgorithm", kcv_alg(key),
      "KeyUsage", key.usage, "KeyModeOfUse", key.mode, ...)
  end

  C.dukpt = {
    summary = "DUKPT host side: derive (a transaction's working key) | initial-key (a device's IPEK / initial key)",
    subs = { derive = true, ["initial-key"] = true },
    options = { { "key-identifier", "the BDK (file:, env: or -)" }, KEYALG,
      { "key-serial-number", "KSN: 20 hex digits (TDES) or 24 (AES)" },
      { "purpose", "derive: PIN, MAC, DATA or KEY_ENCRYPTION (AES)", subs = { derive = true } },
      { "dukpt-key-variant", "derive: REQUEST, RESPONSE or BIDIRECTIONAL (default; MAC and DATA keys)",
        subs = { derive = true } },
      { "dukpt-key-derivation-type", "derive: TDES_2KEY, TDES_3KEY, AES_128, AES_192, AES_256 (default: the BDK's)",
        subs = { derive = true } },
      { "key-usage", "derive: TR-31 usage of the derived key (default P0, M3/M6, D0, K0)", subs = { derive = true } },
      OUT, FORCE },
    run = function(o, sub)
      local bdk = load_key(o, "key-identifier", "key-algorithm")
      local ksn = required(o, "key-serial-number")
      local key
      if sub == "initial-key" then
        key = call(hsm.dukpt.initial_key, bdk, ksn)
      else
        key = call(hsm.dukpt.working_key, bdk, ksn, { purpose = required(o, "purpose"),
          variant = o["dukpt-key-variant"], derivation_type = o["dukpt-key-derivation-type"], usage = o["key-usage"] })
      end
      local file = save_key(o, key)
      return key_result(key, file, "KeySerialNumber", ksn:upper(), "KeyFile", file)
    end,
  }

  -- A certificate (public): PATH or file:PATH.
  local function cert(o, name, optional)
    local v = o[name]
    if v == nil then
      if optional then return nil end
      fail("CLI_USAGE", "--%s is required (a PEM file)", name)
    end
    local path = v:gsub("^file:", "")
    local f, err = io.open(path, "rb")
    if not f then fail("CLI_INPUT", "--%s: cannot read %s (%s)", name, path, tostring(err)) end
    local pem = f:read("*a")
    f:close()
    return pem
  end
  local function private_key(o, name)
    return read_secret(required(o, name), "--" .. name) .. "\n"
  end

  C.tr34 = {
    summary = "TR-34 key transport of a KEK: wrap (the KDH) | unwrap (the KRD)",
    subs = { wrap = true, unwrap = true },
    options = { { "key-identifier", "wrap: the KEK to send (file:, env: or -)", subs = { wrap = true } }, KEYALG,
      { "signing-key-identifier", "wrap: the KDH's RSA private key, PEM (file: or env:)", subs = { wrap = true } },
      { "signing-key-certificate", "the KDH's certificate, PEM file (wrap: its own; unwrap: the signer's)" },
      { "wrapping-key-certificate", "the KRD's certificate, PEM file (wrap: required; unwrap: optional, the token "
        .. "must name it)" },
      { "wrapping-key-identifier", "unwrap: the KRD's RSA private key, PEM (file: or env:)", subs = { unwrap = true } },
      { "certificate-authority-public-key-identifier", "the CA certificate (PEM file) that issued the other side's" },
      { "certificate-chain", "intermediate certificates, PEM file (optional)" },
      { "random-nonce", "the KRD's random number, hex (two-pass token; absent: one-pass with signingTime)" },
      { "key-block-format", "wrap: X9_TR34_2012 (default), TR34_2019 or RFC5652", subs = { wrap = true } },
      { "wrapped-key-block", "unwrap: the token, hex (or file:PATH)", subs = { unwrap = true } },
      { "out", "unwrap: write the received key to this file (mode 0600)", subs = { unwrap = true } },
      { "force", "unwrap: replace an existing --out file (flag)", flag = true, subs = { unwrap = true } } },
    run = function(o, sub)
      if sub == "wrap" then
        local kek = load_key(o, "key-identifier", "key-algorithm")
        local token = call(hsm.tr34.wrap, kek, { kdh_key = private_key(o, "signing-key-identifier"),
          kdh_cert = cert(o, "signing-key-certificate"), krd_cert = cert(o, "wrapping-key-certificate"),
          ca_cert = cert(o, "certificate-authority-public-key-identifier"),
          chain = cert(o, "certificate-chain", true), nonce = o["random-nonce"], form = o["key-block-format"] })
        return util.object { "WrappedKeyBlock", token, "KeyCheckValue", kcv_of(kek) }
      end
      local block = required(o, "wrapped-key-block")
      if block:match("^file:") then block = read_secret(block, "--wrapped-key-block") end
      local key, info = call(hsm.tr34.unwrap, private_key(o, "wrapping-key-identifier"), block, {
        kdh_cert = cert(o, "signing-key-certificate"), ca_cert = cert(o, "certificate-authority-public-key-identifier"),
        chain = cert(o, "certificate-chain", true), krd_cert = cert(o, "wrapping-key-certificate", true),
        nonce = o["random-nonce"] })
      local file = save_key(o, key)
      return key_result(key, file, "KeyBlockFormat", info.form, "KeyFile", file)
    end,
  }

  -- The components of --components: file:PATH, env:NAME or - (all of stdin), one hex
  -- component per line (or separated by spaces).
  local function components(o)
    local spec = required(o, "components")
    local text
    if spec == "-" then
      text = io.read("*a") or ""
    else
      text = read_secret(spec, "--components")
    end
    local list = {}
    for c in text:gmatch("%S+") do list[#list + 1] = c end
    return list
  end

  C.key = {
    summary = "clear key components (ANSI X9.24-1): combine | split",
    subs = { combine = true, split = true },
    options = { { "components", "combine: file:PATH, env:NAME or - (stdin): one hex component per line, 2 to 9",
      subs = { combine = true } },
      { "key-algorithm", "combine: the key's algorithm; split: the key file's, unless in the file" },
      { "key-identifier", "split: the key (file:, env: or -)", subs = { split = true } },
      { "number-of-components", "split: 2 to 9", subs = { split = true } },
      { "key-check-value-algorithm", "ANSI_X9_24 (default for TDES and AES), CMAC, HMAC" },
      { "key-usage", "combine: TR-31 usage kept in the file", subs = { combine = true } },
      { "key-mode-of-use", "combine: TR-31 mode of use", subs = { combine = true } },
      { "exportability", "combine: E, N or S", subs = { combine = true } },
      { "out", "combine: the key file to write; split: the prefix of the component files PREFIX.1 ... PREFIX.N "
        .. "(mode 0600)" }, FORCE },
    run = function(o, sub)
      local kalg = o["key-check-value-algorithm"]
      if sub == "combine" then
        local alg = required(o, "key-algorithm"):upper()
        required(o, "out")
        local key, report = call(hsm.key.from_components, alg, components(o), { usage = o["key-usage"],
          mode = o["key-mode-of-use"], exportability = o.exportability }, { kcv_algorithm = kalg })
        local file = save_key(o, key)
        return obj("KeyAlgorithm", key.algorithm, "KeyCheckValue", report.kcv, "KeyCheckValueAlgorithm",
          kalg or kcv_alg(key), "ComponentCheckValues", util.array(report.component_kcvs), "KeyUsage", key.usage,
          "KeyModeOfUse", key.mode, "KeyFile", file)
      end
      local key = load_key(o, "key-identifier", "key-algorithm")
      local prefix = required(o, "out")
      if prefix == "-" then fail("CLI_USAGE", "--out: split writes files PREFIX.1 ... PREFIX.N, not stdout") end
      local n = tonumber(required(o, "number-of-components"))
      if not n or n < 2 or n > 9 or n ~= math.floor(n) then fail("CLI_USAGE", "--number-of-components: 2 to 9") end
      local parts = call(hsm.key.split, key, n)
      local kcvs, files = {}, {}
      for i, hex in ipairs(parts) do
        local c = call(hsm.key.import, key.algorithm, hex)
        kcvs[i] = call(c.kcv, c, kalg or kcv_alg(key)) -- a component's check value, as ceremonies record it
        local path = prefix .. "." .. i
        local ok, msg, code = core.write_secret_file(path, hex .. "\n", { force = o.force == true })
        if not ok then
          if code == "FILE_EXISTS" then fail("CLI_USAGE", "--out: %s exists; pass --force to replace it", path) end
          fail(code, "--out: %s", (tostring(msg):gsub("^write_secret_file: ", "")))
        end
        files[i] = path
      end
      return util.object { "KeyAlgorithm", key.algorithm, "KeyCheckValue", call(key.kcv, key, kalg or kcv_alg(key)),
        "KeyCheckValueAlgorithm", kalg or kcv_alg(key), "ComponentCheckValues", util.array(kcvs),
        "ComponentFiles", util.array(files) }
    end,
  }
end

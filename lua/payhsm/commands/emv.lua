--- bin/payhsm subcommands for EMV and AS2805 (AWS Payment Cryptography's
-- verify-auth-request-cryptogram and generate-as2805-kek-validation): `arqc`, `arpc`,
-- `as2805`. Loaded by payhsm.commands, which passes its command table and helpers.
local hsm = require "payhsm"
local util = require "payhsm.util"

return function(C, H)
local fail, required, call, load_key, kcv_of = H.fail, H.required, H.call, H.load_key, H.kcv_of
local verified, structure, exclusive, only, SHAPE, KEYALG = H.verified, H.structure, H.exclusive, H.only, H.SHAPE, H.KEYALG

local EMV_OPTS = { { "key-identifier", "the issuer master key (file:, env: or -)" }, KEYALG,
  { "major-key-derivation-mode", "EMV_OPTION_A or EMV_OPTION_B (required with the AWS form; default A otherwise)" },
  { "session-key-derivation-attributes", "SessionKeyDerivation: EmvCommon={PrimaryAccountNumber=PAN,"
    .. "PanSequenceNumber=01,ApplicationTransactionCounter=0001}, Mastercard={...,UnpredictableNumber=8 hex}, "
    .. "Emv2000={...}, Visa={PrimaryAccountNumber=,PanSequenceNumber=}, Amex={...} or JSON" },
  { "transaction-data", "hex" }, { "padding", "payhsm: pad the transaction data, ISO 9797-1 method 1 or 2 (AWS form: "
    .. "default 0, the data taken as given; older form: the derivation's)" },
  { "auth-request-cryptogram", "the ARQC (verify, arpc)" } }
local EMV_ALIASES = { { "session-key-derivation", "EMV_COMMON, MASTERCARD, EMV2000, VISA, AMEX, with the four below" },
  { "primary-account-number", "the PAN" }, { "pan-sequence-number", "2 digits (default 00)" },
  { "application-transaction-counter", "ATC, 4 hex (not for VISA, AMEX)" },
  { "unpredictable-number", "8 hex (MASTERCARD)" } }
local SKD_FLAT = { "session-key-derivation", "primary-account-number", "pan-sequence-number",
  "application-transaction-counter", "unpredictable-number" }
local SKD = { EmvCommon = "EMV_COMMON", Mastercard = "MASTERCARD", Emv2000 = "EMV2000", Amex = "AMEX", Visa = "VISA" }

-- In AWS's form (--session-key-derivation-attributes) the members AWS marks required are
-- required (MajorKeyDerivationMode too), and the transaction data is taken as given, as
-- AWS takes it (its user guide: pad before sending); payhsm's --padding 1|2 pads it.
local function emv_params(o)
  local p = { mode = o["major-key-derivation-mode"] or "EMV_OPTION_A", data = o["transaction-data"],
    padding = tonumber(o.padding), arqc = o["auth-request-cryptogram"] }
  if o.padding ~= nil and not (o.padding == "0" or o.padding == "1" or o.padding == "2") then
    fail("CLI_USAGE", "--padding: 0 (none), 1 or 2 (ISO 9797-1 padding method)")
  end
  local v = structure(o, "session-key-derivation-attributes", SHAPE.SessionKeyDerivation)
  if v then
    exclusive(o, "session-key-derivation-attributes", SKD_FLAT)
    if o["major-key-derivation-mode"] == nil then
      fail("CLI_USAGE", "--major-key-derivation-mode is required with --session-key-derivation-attributes "
        .. "(EMV_OPTION_A or EMV_OPTION_B)")
    end
    p.padding = p.padding or 0
    local member, m = only(v)
    p.derivation, p.pan, p.psn = SKD[member], m.PrimaryAccountNumber, m.PanSequenceNumber
    p.atc, p.un = m.ApplicationTransactionCounter, m.UnpredictableNumber
    return p
  end
  if o["session-key-derivation"] == nil then
    fail("CLI_USAGE", "--session-key-derivation-attributes is required (or the older --session-key-derivation)")
  end
  p.derivation, p.pan = required(o, "session-key-derivation"), required(o, "primary-account-number")
  p.psn, p.un = o["pan-sequence-number"] or "00", o["unpredictable-number"]
  if p.derivation == "VISA" or p.derivation == "AMEX" then p.atc = o["application-transaction-counter"]
  else p.atc = required(o, "application-transaction-counter") end
  return p
end

-- ARPC inputs: AWS's CryptogramAuthResponse (ArpcMethod1={AuthResponseCode=...} or
-- ArpcMethod2={CardStatusUpdate=...,ProprietaryAuthenticationData=...}) into p; true when given.
local ARPC_FLAT = { "method", "auth-response-code", "card-status-update", "proprietary-authentication-data" }
local function arpc_attributes(o, p)
  local v = structure(o, "auth-response-attributes", SHAPE.CryptogramAuthResponse)
  if not v then return false end
  for _, a in ipairs(ARPC_FLAT) do
    if o[a] ~= nil then exclusive(o, "auth-response-attributes", { a }) end
  end
  local member, m = only(v)
  if member == "ArpcMethod1" then p.method, p.arc = 1, m.AuthResponseCode
  else p.method, p.csu, p.proprietary = 2, m.CardStatusUpdate, m.ProprietaryAuthenticationData end
  return true
end

local ARQC_OPTS = {}
for _, v in ipairs(EMV_OPTS) do ARQC_OPTS[#ARQC_OPTS + 1] = v end
ARQC_OPTS[#ARQC_OPTS + 1] = { "auth-response-attributes", "verify: also make the ARPC, CryptogramAuthResponse: "
  .. "ArpcMethod1={AuthResponseCode=4 hex} or ArpcMethod2={CardStatusUpdate=8 hex,ProprietaryAuthenticationData=hex}" }

C.arqc = {
  summary = "EMV ARQC: generate | verify (AWS verify-auth-request-cryptogram)",
  subs = { generate = true, verify = true },
  options = ARQC_OPTS,
  aliases = EMV_ALIASES,
  run = function(o, sub)
    local imk = load_key(o, "key-identifier", "key-algorithm")
    local p = emv_params(o)
    p.data = required(o, "transaction-data")
    if sub == "generate" then
      if o["auth-response-attributes"] ~= nil then fail("CLI_USAGE", "--auth-response-attributes is for arqc verify") end
      return util.object { "AuthRequestCryptogram", call(hsm.emv.generate_arqc, imk, p), "KeyCheckValue", kcv_of(imk) }
    end
    required(o, "auth-request-cryptogram")
    local want_arpc = arpc_attributes(o, p)
    verified(imk, "ARQC_MISMATCH", hsm.emv.verify_arqc, imk, p)
    return util.object { "KeyCheckValue", kcv_of(imk), "Valid", true,
      "AuthResponseValue", want_arpc and call(hsm.emv.generate_arpc, imk, p) or nil }
  end,
}

local ARPC_OPTS = {}
for _, v in ipairs(EMV_OPTS) do ARPC_OPTS[#ARPC_OPTS + 1] = v end
ARPC_OPTS[#ARPC_OPTS + 1] = { "auth-response-attributes", "CryptogramAuthResponse: ArpcMethod1={AuthResponseCode="
  .. "4 hex} or ArpcMethod2={CardStatusUpdate=8 hex,ProprietaryAuthenticationData=hex} or JSON" }
local ARPC_ALIASES = {}
for _, v in ipairs(EMV_ALIASES) do ARPC_ALIASES[#ARPC_ALIASES + 1] = v end
ARPC_ALIASES[#ARPC_ALIASES + 1] = { "method", "1 (ARC, default) or 2 (CSU)" }
ARPC_ALIASES[#ARPC_ALIASES + 1] = { "auth-response-code", "method 1: 4 hex" }
ARPC_ALIASES[#ARPC_ALIASES + 1] = { "card-status-update", "method 2: 8 hex" }
ARPC_ALIASES[#ARPC_ALIASES + 1] = { "proprietary-authentication-data", "method 2: hex (optional)" }

C.arpc = {
  summary = "EMV ARPC (method 1 or 2) without verifying the ARQC (arqc verify --auth-response-attributes does both)",
  options = ARPC_OPTS,
  aliases = ARPC_ALIASES,
  run = function(o)
    local imk = load_key(o, "key-identifier", "key-algorithm")
    local p = emv_params(o)
    required(o, "auth-request-cryptogram")
    if not arpc_attributes(o, p) then
      p.method = tonumber(o.method or "1")
      p.arc, p.csu, p.proprietary = o["auth-response-code"], o["card-status-update"], o["proprietary-authentication-data"]
    end
    return util.object { "AuthResponseValue", call(hsm.emv.generate_arpc, imk, p), "KeyCheckValue", kcv_of(imk) }
  end,
}

-- DeriveKeyAlgorithm: AWS's SymmetricKeyAlgorithm lists TDES_2KEY, TDES_3KEY, AES_* and
-- HMAC_*; AS2805 KEK validation (AS 2805.6.1) is defined for the TDES KEKs only.
local AS2805_ALGS = { TDES_2KEY = true, TDES_3KEY = true }
local AS2805_MASKS = { VARIANT_MASK_82C0 = true, VARIANT_MASK_82 = true }
local function as2805_algorithm(a)
  if not AS2805_ALGS[a] then
    fail("CLI_USAGE", "DeriveKeyAlgorithm %s is not supported: AS2805 KEK validation is defined for TDES KEKs; "
      .. "use TDES_2KEY or TDES_3KEY", (tostring(a):match("^[%u%d_]+$") and #a <= 20) and a or "(a value not shown)")
  end
  return a
end

C.as2805 = {
  summary = "AS2805 KEK validation: generate | request | response (AWS generate-as2805-kek-validation)",
  subs = { generate = true, request = true, response = true },
  options = { { "key-identifier", "the KEK (file:, env: or -)" }, KEYALG,
    { "kek-validation-type", "As2805KekValidationType: KekValidationRequest={DeriveKeyAlgorithm=TDES_2KEY|TDES_3KEY"
      .. "[,RandomKeyMaxLength=BYTES_8|BYTES_16|BYTES_24]} or KekValidationResponse={RandomKeySend=hex} or JSON "
      .. "(generate: required; request/response: optional)" },
    { "random-key-send-variant-mask", "VARIANT_MASK_82C0 or VARIANT_MASK_82 (required with --kek-validation-type; "
      .. "default 82C0 otherwise)" } },
  aliases = { { "derive-key-algorithm", "request: TDES_2KEY (default) or TDES_3KEY" },
    { "random-key-max-length", "request: BYTES_8, BYTES_16 (default), BYTES_24 (KekValidationRequest's RandomKeyMaxLength)" },
    { "random-key-send", "response: the KRs (hex)" },
    { "variant-mask", "in place of --random-key-send-variant-mask" } },
  run = function(o, sub)
    local kek = load_key(o, "key-identifier", "key-algorithm")
    local mask = o["random-key-send-variant-mask"]
    if mask ~= nil then exclusive(o, "random-key-send-variant-mask", { "variant-mask" }) end
    local derive, krs, maxlen
    local v = structure(o, "kek-validation-type", SHAPE.As2805KekValidationType)
    if v then
      exclusive(o, "kek-validation-type", { "derive-key-algorithm", "random-key-send" })
      if (mask or o["variant-mask"]) == nil then
        fail("CLI_USAGE", "--random-key-send-variant-mask is required with --kek-validation-type "
          .. "(VARIANT_MASK_82C0 or VARIANT_MASK_82)")
      end
      local member, m = only(v)
      local kind = member == "KekValidationRequest" and "request" or "response"
      if sub ~= "generate" and sub ~= kind then
        fail("CLI_USAGE", "--kek-validation-type is a %s: use as2805 %s or as2805 generate", member, kind)
      end
      if m.RandomKeyMaxLength ~= nil then exclusive(o, "kek-validation-type", { "random-key-max-length" }) end
      sub, derive, krs, maxlen = kind, m.DeriveKeyAlgorithm and as2805_algorithm(m.DeriveKeyAlgorithm),
        m.RandomKeySend, m.RandomKeyMaxLength
    elseif sub == "generate" then
      fail("CLI_USAGE", "--kek-validation-type is required")
    end
    mask = mask or o["variant-mask"] or "VARIANT_MASK_82C0"
    if not AS2805_MASKS[mask] then fail("CLI_USAGE", "--random-key-send-variant-mask: VARIANT_MASK_82C0 or VARIANT_MASK_82") end
    if sub == "request" then
      derive = derive or as2805_algorithm(o["derive-key-algorithm"] or "TDES_2KEY")
      local r = call(hsm.as2805.kek_validation_request, kek, { derive_algorithm = derive,
        random_key_max_length = maxlen or o["random-key-max-length"] or "BYTES_16", variant_mask = mask })
      return util.object { "RandomKeySend", r.random_key_send, "RandomKeyReceive", r.random_key_receive,
        "KeyCheckValue", r.kcv }
    end
    if o["random-key-max-length"] ~= nil then fail("CLI_USAGE", "--random-key-max-length is for a request") end
    krs = krs or required(o, "random-key-send")
    local krr = call(hsm.as2805.kek_validation_response, kek, krs, { variant_mask = mask })
    return util.object { "RandomKeySend", krs:upper(), "RandomKeyReceive", krr, "KeyCheckValue", kcv_of(kek) }
  end,
}

end

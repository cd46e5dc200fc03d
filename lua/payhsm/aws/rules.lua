--- Which key attributes go together, as AWS Payment Cryptography's user guide lists
-- them ("Understanding key attributes for AWS Payment Cryptography key": allowed key
-- algorithms and allowed combinations of key modes of use per key usage), and the
-- translation between AWS's attribute names and TR-31 / ANSI X9.143-2022 header
-- fields (Table 6 key usage, Table 8 mode of use).
local M = {}

local SYM = { "TDES_2KEY", "TDES_3KEY", "AES_128", "AES_192", "AES_256" }
local TDES = { "TDES_2KEY", "TDES_3KEY" }
local HMAC = { "HMAC_SHA224", "HMAC_SHA256", "HMAC_SHA384", "HMAC_SHA512" }
local RSA = { "RSA_2048", "RSA_3072", "RSA_4096" }
local ECC = { "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521" }

local DERIVE = { { "DeriveKey" }, { "NoRestrictions" } }
local GEN_VER = { { "Generate" }, { "Verify" }, { "Generate", "Verify" }, { "NoRestrictions" } }
local CIPHER = { { "Encrypt", "Decrypt", "Wrap", "Unwrap" }, { "Encrypt", "Wrap" }, { "Decrypt", "Unwrap" },
  { "NoRestrictions" } }
local ASYM_CIPHER = { { "Encrypt", "Decrypt", "Wrap", "Unwrap" }, { "Encrypt", "Wrap" }, { "Decrypt", "Unwrap" } }

-- usage -> {algorithms, combinations of modes, class}
M.ALLOWED = {
  TR31_B0_BASE_DERIVATION_KEY = { SYM, DERIVE },
  TR31_C0_CARD_VERIFICATION_KEY = { SYM, GEN_VER },
  TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY = { SYM, CIPHER },
  TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS = { SYM, DERIVE },
  TR31_E1_EMV_MKEY_CONFIDENTIALITY = { SYM, DERIVE },
  TR31_E2_EMV_MKEY_INTEGRITY = { SYM, DERIVE },
  TR31_E4_EMV_MKEY_DYNAMIC_NUMBERS = { SYM, DERIVE },
  TR31_E5_EMV_MKEY_CARD_PERSONALIZATION = { SYM, DERIVE },
  TR31_E6_EMV_MKEY_OTHER = { SYM, DERIVE },
  TR31_K0_KEY_ENCRYPTION_KEY = { SYM, CIPHER },
  TR31_K1_KEY_BLOCK_PROTECTION_KEY = { SYM, CIPHER },
  TR31_M1_ISO_9797_1_MAC_KEY = { TDES, GEN_VER },
  TR31_M3_ISO_9797_3_MAC_KEY = { TDES, GEN_VER },
  TR31_M6_ISO_9797_5_CMAC_KEY = { SYM, GEN_VER },
  TR31_M7_HMAC_KEY = { HMAC, GEN_VER },
  TR31_P0_PIN_ENCRYPTION_KEY = { SYM, CIPHER },
  TR31_P1_PIN_GENERATION_KEY = { SYM, GEN_VER },
  TR31_V1_IBM3624_PIN_VERIFICATION_KEY = { TDES, GEN_VER },
  TR31_V2_VISA_PIN_VERIFICATION_KEY = { TDES, GEN_VER },
  TR31_D1_ASYMMETRIC_KEY_FOR_DATA_ENCRYPTION = { RSA, ASYM_CIPHER, "asymmetric" },
  TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE = { { RSA[1], RSA[2], RSA[3], ECC[1], ECC[2], ECC[3] },
    { { "Sign" }, { "Verify" }, { "Sign", "Verify" } }, "asymmetric" },
  TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT = { ECC, { { "DeriveKey" } }, "asymmetric" },
  TR31_K2_TR34_ASYMMETRIC_KEY = { RSA, { { "Encrypt", "Wrap" }, { "Decrypt", "Unwrap" },
    { "Encrypt", "Decrypt", "Wrap", "Unwrap" }, { "Verify" }, { "Sign" } }, "asymmetric" },
}

local MODE_NAMES = { "Encrypt", "Decrypt", "Wrap", "Unwrap", "Generate", "Sign", "Verify", "DeriveKey", "NoRestrictions" }
M.MODE_NAMES = MODE_NAMES

-- the set of modes that are true, as a sorted "A+B" string
local function mode_set(modes)
  local on = {}
  for _, n in ipairs(MODE_NAMES) do if modes and modes[n] == true then on[#on + 1] = n end end
  return table.concat(on, "+")
end
M.mode_set = mode_set

local function combo_key(list)
  local set = {}
  for _, n in ipairs(list) do set[n] = true end
  return mode_set(set)
end

local function has(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

--- Checks KeyAttributes for CreateKey (class "SYMMETRIC_KEY" or "ASYMMETRIC_KEY_PAIR")
-- or for an import (any class the usage allows). Returns true or nil, message.
function M.check(attrs, purpose)
  local rule = M.ALLOWED[attrs.KeyUsage]
  if not rule then
    return nil, ("KeyUsage %s cannot be used for %s"):format(attrs.KeyUsage, purpose or "this key")
  end
  local algs, combos, asym = rule[1], rule[2], rule[3]
  if not has(algs, attrs.KeyAlgorithm) then
    return nil, ("KeyAlgorithm %s is not allowed for KeyUsage %s (allowed: %s)"):format(attrs.KeyAlgorithm,
      attrs.KeyUsage, table.concat(algs, ", "))
  end
  local want = mode_set(attrs.KeyModesOfUse)
  local ok = false
  local allowed = {}
  for _, c in ipairs(combos) do
    local k = combo_key(c)
    allowed[#allowed + 1] = "{" .. k:gsub("%+", ", ") .. "}"
    if k == want then ok = true end
  end
  if not ok then
    return nil, ("KeyModesOfUse {%s} are not allowed for KeyUsage %s (allowed: %s)"):format(want:gsub("%+", ", "),
      attrs.KeyUsage, table.concat(allowed, " "))
  end
  local class = attrs.KeyClass
  if asym then
    if purpose == "CreateKey" and class ~= "ASYMMETRIC_KEY_PAIR" then
      return nil, ("KeyClass must be ASYMMETRIC_KEY_PAIR for KeyUsage %s"):format(attrs.KeyUsage)
    end
  elseif class ~= "SYMMETRIC_KEY" then
    return nil, ("KeyClass must be SYMMETRIC_KEY for KeyUsage %s"):format(attrs.KeyUsage)
  end
  return true
end

-- ---- TR-31 -------------------------------------------------------------------------

--- "TR31_K0_KEY_ENCRYPTION_KEY" -> "K0"
function M.usage_code(usage) return usage:match("^TR31_(%w%w)_") end

local USAGE_BY_CODE = {}
for usage in pairs(M.ALLOWED) do USAGE_BY_CODE[M.usage_code(usage)] = usage end
--- "K0" -> "TR31_K0_KEY_ENCRYPTION_KEY" (nil for a usage AWS does not name)
function M.usage_name(code) return USAGE_BY_CODE[code] end

local MODE_CHAR = {
  ["Decrypt+Encrypt+Unwrap+Wrap"] = "B", ["Encrypt+Wrap"] = "E", ["Decrypt+Unwrap"] = "D",
  ["Generate+Verify"] = "C", Generate = "G", Verify = "V", DeriveKey = "X", NoRestrictions = "N", Sign = "S",
  ["Sign+Verify"] = "S",
}
-- mode_set sorts by MODE_NAMES order, not alphabetically: index both spellings
MODE_CHAR["Encrypt+Decrypt+Wrap+Unwrap"] = "B"
MODE_CHAR["Decrypt+Unwrap"] = "D"

--- KeyModesOfUse -> the TR-31 mode of use character (nil when none fits)
function M.mode_char(modes) return MODE_CHAR[mode_set(modes)] end

local MODES_OF_CHAR = {
  B = { "Encrypt", "Decrypt", "Wrap", "Unwrap" }, E = { "Encrypt", "Wrap" }, D = { "Decrypt", "Unwrap" },
  C = { "Generate", "Verify" }, G = { "Generate" }, V = { "Verify" }, X = { "DeriveKey" },
  N = { "NoRestrictions" }, S = { "Sign" }, T = { "Sign" },
}
--- TR-31 mode of use -> KeyModesOfUse (every member present, as AWS answers)
function M.modes_of(char)
  local out = {}
  for _, n in ipairs(MODE_NAMES) do out[n] = false end
  for _, n in ipairs(MODES_OF_CHAR[char] or {}) do out[n] = true end
  return out
end

--- KeyModesOfUse with every member present (false for those not given)
function M.full_modes(modes)
  local out = {}
  for _, n in ipairs(MODE_NAMES) do out[n] = modes and modes[n] == true or false end
  return out
end

--- The default KeyCheckValueAlgorithm of a key algorithm (AWS: ANSI X9.24 for TDES,
-- CMAC for AES, HMAC for HMAC keys).
function M.default_kcv(alg)
  if alg:match("^TDES") then return "ANSI_X9_24" end
  if alg:match("^HMAC") then return "HMAC" end
  return "CMAC"
end

return M

--- The request shapes of AWS Payment Cryptography's control plane, and a validator
-- that answers as the service does: the first broken constraint, naming the member.
--
-- Members, types, required members and unions are those of AWS's published service
-- model (payment-cryptography-2021-09-14, as shipped in the aws-sdk v2 package,
-- apis/payment-cryptography-2021-09-14.min.json; the enums and the union members
-- added since, e.g. DiffieHellmanTr31KeyBlock, from @aws-sdk/client-payment-cryptography
-- 3.882); lengths, ranges and patterns from the AWS Payment Cryptography Control Plane
-- API reference (the "Length Constraints" / "Pattern" lines of each member).
-- spec/aws_sdk_spec.lua checks this table against the model files themselves.
local M = {}

-- What follows "arn:aws:payment-cryptography:[a-z]{2}-[a-z]{1,16}-[0-9]+:[0-9]{12}:", or nil.
local function arn_rest(s)
  local mid, rest = s:match("^arn:aws:payment%-cryptography:%l%l%-(%l+)%-%d+:%d%d%d%d%d%d%d%d%d%d%d%d:(.*)$")
  if not mid or #mid > 16 then return nil end
  return rest
end

local function key_id(s)
  local id = s:match("^key/(%w+)$")
  return id ~= nil and #id >= 16 and #id <= 64
end

local function alias_name(s) return s:match("^alias/[%w/_%-]+$") ~= nil end

-- arn:...:key/[0-9a-zA-Z]{16,64}
local function key_arn(s)
  local rest = arn_rest(s)
  return rest ~= nil and key_id(rest)
end

-- a key ARN, an alias ARN, or alias/NAME
local function key_identifier(s)
  if alias_name(s) then return true end
  local rest = arn_rest(s)
  return rest ~= nil and (key_id(rest) or alias_name(rest))
end

local function upper_hex(s) return s:match("^[0-9A-F]+$") ~= nil end
local function upper_alnum(s) return s:match("^[0-9A-Z]+$") ~= nil end
local function token(prefix)
  return function(s)
    local t = s:match("^" .. prefix .. "(%w+)$")
    return t ~= nil and #t >= 16 and #t <= 64
  end
end
local function certificate(s) return not s:find("[%[;%]<>]") end

local function str(min, max, pattern, text, sensitive)
  return { type = "string", min = min, max = max, pattern = pattern, pattern_text = text, sensitive = sensitive }
end
local function enum(...) return { type = "string", enum = { ... } } end
local BOOL = { type = "boolean" }

local KEY_IDENTIFIER = str(7, 322, key_identifier,
  "arn:aws:payment-cryptography:[a-z]{2}-[a-z]{1,16}-[0-9]+:[0-9]{12}:(key/[0-9a-zA-Z]{16,64}|alias/[a-zA-Z0-9/_-]+)$|^alias/[a-zA-Z0-9/_-]+")
local KEY_ARN = str(70, 150, key_arn,
  "arn:aws:payment-cryptography:[a-z]{2}-[a-z]{1,16}-[0-9]+:[0-9]{12}:key/[0-9a-zA-Z]{16,64}")
local ALIAS_NAME = str(7, 256, alias_name, "alias/[a-zA-Z0-9/_-]+")
local CERT = str(1, 32768, certificate, "[^\\[;\\]<>]+", true)
local NEXT_TOKEN = str(1, 8192)
local MAX_RESULTS = { type = "integer", min = 1, max = 100 }

M.KEY_USAGES = { "TR31_B0_BASE_DERIVATION_KEY", "TR31_C0_CARD_VERIFICATION_KEY",
  "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", "TR31_D1_ASYMMETRIC_KEY_FOR_DATA_ENCRYPTION",
  "TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS", "TR31_E1_EMV_MKEY_CONFIDENTIALITY", "TR31_E2_EMV_MKEY_INTEGRITY",
  "TR31_E4_EMV_MKEY_DYNAMIC_NUMBERS", "TR31_E5_EMV_MKEY_CARD_PERSONALIZATION", "TR31_E6_EMV_MKEY_OTHER",
  "TR31_K0_KEY_ENCRYPTION_KEY", "TR31_K1_KEY_BLOCK_PROTECTION_KEY", "TR31_K2_TR34_ASYMMETRIC_KEY",
  "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT", "TR31_M1_ISO_9797_1_MAC_KEY", "TR31_M3_ISO_9797_3_MAC_KEY",
  "TR31_M6_ISO_9797_5_CMAC_KEY", "TR31_M7_HMAC_KEY", "TR31_P0_PIN_ENCRYPTION_KEY", "TR31_P1_PIN_GENERATION_KEY",
  "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE", "TR31_V1_IBM3624_PIN_VERIFICATION_KEY",
  "TR31_V2_VISA_PIN_VERIFICATION_KEY" }
M.KEY_ALGORITHMS = { "AES_128", "AES_192", "AES_256", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
  "HMAC_SHA224", "HMAC_SHA256", "HMAC_SHA384", "HMAC_SHA512", "RSA_2048", "RSA_3072", "RSA_4096",
  "TDES_2KEY", "TDES_3KEY" }
M.MODES = { "Encrypt", "Decrypt", "Wrap", "Unwrap", "Generate", "Sign", "Verify", "DeriveKey", "NoRestrictions" }

local MODES_OF_USE = { type = "structure", members = {} }
for _, m in ipairs(M.MODES) do MODES_OF_USE.members[m] = BOOL end

local KEY_ATTRIBUTES = { type = "structure", required = { "KeyUsage", "KeyClass", "KeyAlgorithm", "KeyModesOfUse" },
  members = {
    KeyUsage = { type = "string", enum = M.KEY_USAGES },
    KeyClass = enum("SYMMETRIC_KEY", "ASYMMETRIC_KEY_PAIR", "PRIVATE_KEY", "PUBLIC_KEY"),
    KeyAlgorithm = { type = "string", enum = M.KEY_ALGORITHMS },
    KeyModesOfUse = MODES_OF_USE,
  } }
local KCV_ALGORITHM = enum("CMAC", "ANSI_X9_24", "HMAC")
local TAG = { type = "structure", required = { "Key" }, members = { Key = str(1, 128), Value = str(0, 256) } }
local TAGS = { type = "list", member = TAG, min = 0, max = 200 }
local KEY_BLOCK_HEADERS = { type = "structure", members = {
  KeyModesOfUse = MODES_OF_USE,
  KeyExportability = enum("EXPORTABLE", "NON_EXPORTABLE", "SENSITIVE"),
  KeyVersion = str(2, 2, function(s) return s:match("^%w%w$") ~= nil end, "[0-9A-Z]{2}+"),
  OptionalBlocks = { type = "map", key = str(2, 2, function(s) return s:match("^%w%w$") ~= nil end, "[0-9A-Z]{2}"),
    value = str(1, 996, function(s) return not s:find("[^ -~]") end, "[0-9A-Z]+", true), max = 10 },
} }
local WRAPPING_SPEC = enum("RSA_OAEP_SHA_256", "RSA_OAEP_SHA_512")
local IMPORT_TOKEN = str(nil, nil, token("import%-token%-"), "import-token-[0-9a-zA-Z]{16,64}")
local EXPORT_TOKEN = str(nil, nil, token("export%-token%-"), "export-token-[0-9a-zA-Z]{16,64}")
local KEY_MATERIAL_TYPE = enum("TR34_KEY_BLOCK", "TR31_KEY_BLOCK", "ROOT_PUBLIC_KEY_CERTIFICATE",
  "TRUSTED_PUBLIC_KEY_CERTIFICATE", "KEY_CRYPTOGRAM")
local RSA_ALGORITHM = enum("RSA_2048", "RSA_3072", "RSA_4096")
local DH_DERIVATION = { type = "structure", union = true, members = { SharedInformation = str(2, 2048, upper_hex, "[0-9A-F]+") } }

local function op(required, members) return { type = "structure", required = required, members = members } end

--- Input shape of every control-plane operation.
M.input = {
  CreateAlias = op({ "AliasName" }, { AliasName = ALIAS_NAME, KeyArn = KEY_ARN }),
  CreateKey = op({ "KeyAttributes", "Exportable" }, { KeyAttributes = KEY_ATTRIBUTES,
    KeyCheckValueAlgorithm = KCV_ALGORITHM, Exportable = BOOL, Enabled = BOOL, Tags = TAGS,
    DeriveKeyUsage = enum("TR31_B0_BASE_DERIVATION_KEY", "TR31_C0_CARD_VERIFICATION_KEY",
      "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", "TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS", "TR31_E1_EMV_MKEY_CONFIDENTIALITY",
      "TR31_E2_EMV_MKEY_INTEGRITY", "TR31_E4_EMV_MKEY_DYNAMIC_NUMBERS", "TR31_E5_EMV_MKEY_CARD_PERSONALIZATION",
      "TR31_E6_EMV_MKEY_OTHER", "TR31_K0_KEY_ENCRYPTION_KEY", "TR31_K1_KEY_BLOCK_PROTECTION_KEY",
      "TR31_M1_ISO_9797_1_MAC_KEY", "TR31_M3_ISO_9797_3_MAC_KEY", "TR31_M6_ISO_9797_5_CMAC_KEY", "TR31_M7_HMAC_KEY",
      "TR31_P0_PIN_ENCRYPTION_KEY", "TR31_P1_PIN_GENERATION_KEY", "TR31_V1_IBM3624_PIN_VERIFICATION_KEY",
      "TR31_V2_VISA_PIN_VERIFICATION_KEY") }),
  DeleteAlias = op({ "AliasName" }, { AliasName = ALIAS_NAME }),
  DeleteKey = op({ "KeyIdentifier" }, { KeyIdentifier = KEY_IDENTIFIER,
    DeleteKeyInDays = { type = "integer", min = 3, max = 180 } }),
  ExportKey = op({ "KeyMaterial", "ExportKeyIdentifier" }, {
    ExportKeyIdentifier = KEY_IDENTIFIER,
    KeyMaterial = { type = "structure", union = true, members = {
      Tr31KeyBlock = op({ "WrappingKeyIdentifier" }, { WrappingKeyIdentifier = KEY_IDENTIFIER,
        KeyBlockHeaders = KEY_BLOCK_HEADERS }),
      Tr34KeyBlock = op({ "CertificateAuthorityPublicKeyIdentifier", "WrappingKeyCertificate", "ExportToken",
        "KeyBlockFormat" }, { CertificateAuthorityPublicKeyIdentifier = KEY_IDENTIFIER, WrappingKeyCertificate = CERT,
        ExportToken = EXPORT_TOKEN, KeyBlockFormat = enum("X9_TR34_2012"),
        RandomNonce = str(16, 16, upper_hex, "[0-9A-F]+"), KeyBlockHeaders = KEY_BLOCK_HEADERS }),
      KeyCryptogram = op({ "CertificateAuthorityPublicKeyIdentifier", "WrappingKeyCertificate" }, {
        CertificateAuthorityPublicKeyIdentifier = KEY_IDENTIFIER, WrappingKeyCertificate = CERT,
        WrappingSpec = WRAPPING_SPEC }),
      DiffieHellmanTr31KeyBlock = op({ "PrivateKeyIdentifier", "CertificateAuthorityPublicKeyIdentifier",
        "PublicKeyCertificate", "DeriveKeyAlgorithm", "KeyDerivationFunction", "KeyDerivationHashAlgorithm",
        "DerivationData" }, { PrivateKeyIdentifier = KEY_IDENTIFIER, CertificateAuthorityPublicKeyIdentifier =
        KEY_IDENTIFIER, PublicKeyCertificate = CERT, DeriveKeyAlgorithm = enum("TDES_2KEY", "TDES_3KEY", "AES_128",
        "AES_192", "AES_256", "HMAC_SHA224", "HMAC_SHA256", "HMAC_SHA384", "HMAC_SHA512"),
        KeyDerivationFunction = enum("NIST_SP800", "ANSI_X963"),
        KeyDerivationHashAlgorithm = enum("SHA_256", "SHA_384", "SHA_512"),
        DerivationData = DH_DERIVATION, KeyBlockHeaders = KEY_BLOCK_HEADERS }),
    } },
    ExportAttributes = { type = "structure", members = {
      ExportDukptInitialKey = op({ "KeySerialNumber" }, { KeySerialNumber = str(20, 24, function(v) return upper_hex(v) and (#v == 20 or #v == 24) end, "[0-9A-F]{20}$|^[0-9A-F]{24}") }),
      KeyCheckValueAlgorithm = KCV_ALGORITHM } },
  }),
  GetAlias = op({ "AliasName" }, { AliasName = ALIAS_NAME }),
  GetKey = op({ "KeyIdentifier" }, { KeyIdentifier = KEY_IDENTIFIER }),
  GetParametersForExport = op({ "KeyMaterialType", "SigningKeyAlgorithm" }, {
    KeyMaterialType = KEY_MATERIAL_TYPE, SigningKeyAlgorithm = RSA_ALGORITHM }),
  GetParametersForImport = op({ "KeyMaterialType", "WrappingKeyAlgorithm" }, {
    KeyMaterialType = KEY_MATERIAL_TYPE, WrappingKeyAlgorithm = RSA_ALGORITHM }),
  GetPublicKeyCertificate = op({ "KeyIdentifier" }, { KeyIdentifier = KEY_IDENTIFIER }),
  ImportKey = op({ "KeyMaterial" }, {
    KeyMaterial = { type = "structure", union = true, members = {
      RootCertificatePublicKey = op({ "KeyAttributes", "PublicKeyCertificate" }, { KeyAttributes = KEY_ATTRIBUTES,
        PublicKeyCertificate = CERT }),
      TrustedCertificatePublicKey = op({ "KeyAttributes", "PublicKeyCertificate",
        "CertificateAuthorityPublicKeyIdentifier" }, { KeyAttributes = KEY_ATTRIBUTES, PublicKeyCertificate = CERT,
        CertificateAuthorityPublicKeyIdentifier = KEY_IDENTIFIER }),
      Tr31KeyBlock = op({ "WrappingKeyIdentifier", "WrappedKeyBlock" }, { WrappingKeyIdentifier = KEY_IDENTIFIER,
        WrappedKeyBlock = str(56, 9984, upper_alnum, "[0-9A-Z]+", true) }),
      Tr34KeyBlock = op({ "CertificateAuthorityPublicKeyIdentifier", "SigningKeyCertificate", "ImportToken",
        "WrappedKeyBlock", "KeyBlockFormat" }, { CertificateAuthorityPublicKeyIdentifier = KEY_IDENTIFIER,
        SigningKeyCertificate = CERT, ImportToken = IMPORT_TOKEN,
        WrappedKeyBlock = str(2, 4096, upper_hex, "[0-9A-F]+", true), KeyBlockFormat = enum("X9_TR34_2012"),
        RandomNonce = str(16, 16, upper_hex, "[0-9A-F]+") }),
      KeyCryptogram = op({ "KeyAttributes", "Exportable", "WrappedKeyCryptogram", "ImportToken" }, {
        KeyAttributes = KEY_ATTRIBUTES, Exportable = BOOL,
        WrappedKeyCryptogram = str(16, 4096, upper_hex, "[0-9A-F]+", true), ImportToken = IMPORT_TOKEN,
        WrappingSpec = WRAPPING_SPEC }),
      DiffieHellmanTr31KeyBlock = op({ "PrivateKeyIdentifier", "CertificateAuthorityPublicKeyIdentifier",
        "PublicKeyCertificate", "DeriveKeyAlgorithm", "KeyDerivationFunction", "KeyDerivationHashAlgorithm",
        "DerivationData", "WrappedKeyBlock" }, { PrivateKeyIdentifier = KEY_IDENTIFIER,
        CertificateAuthorityPublicKeyIdentifier = KEY_IDENTIFIER, PublicKeyCertificate = CERT,
        DeriveKeyAlgorithm = enum("TDES_2KEY", "TDES_3KEY", "AES_128", "AES_192", "AES_256", "HMAC_SHA224",
          "HMAC_SHA256", "HMAC_SHA384", "HMAC_SHA512"),
        KeyDerivationFunction = enum("NIST_SP800", "ANSI_X963"),
        KeyDerivationHashAlgorithm = enum("SHA_256", "SHA_384", "SHA_512"), DerivationData = DH_DERIVATION,
        WrappedKeyBlock = str(56, 9984, upper_alnum, "[0-9A-Z]+", true) }),
    } },
    KeyCheckValueAlgorithm = KCV_ALGORITHM, Enabled = BOOL, Tags = TAGS,
  }),
  ListAliases = op({}, { KeyArn = KEY_ARN, NextToken = NEXT_TOKEN, MaxResults = MAX_RESULTS }),
  ListKeys = op({}, { KeyState = enum("CREATE_IN_PROGRESS", "CREATE_COMPLETE", "DELETE_PENDING", "DELETE_COMPLETE"),
    NextToken = NEXT_TOKEN, MaxResults = MAX_RESULTS }),
  ListTagsForResource = op({ "ResourceArn" }, { ResourceArn = KEY_ARN, NextToken = NEXT_TOKEN,
    MaxResults = MAX_RESULTS }),
  RestoreKey = op({ "KeyIdentifier" }, { KeyIdentifier = KEY_IDENTIFIER }),
  StartKeyUsage = op({ "KeyIdentifier" }, { KeyIdentifier = KEY_IDENTIFIER }),
  StopKeyUsage = op({ "KeyIdentifier" }, { KeyIdentifier = KEY_IDENTIFIER }),
  TagResource = op({ "ResourceArn", "Tags" }, { ResourceArn = KEY_ARN, Tags = TAGS }),
  UntagResource = op({ "ResourceArn", "TagKeys" }, { ResourceArn = KEY_ARN,
    TagKeys = { type = "list", member = str(1, 128), min = 0, max = 200 } }),
  UpdateAlias = op({ "AliasName" }, { AliasName = ALIAS_NAME, KeyArn = KEY_ARN }),
}

M.is_key_arn = key_arn
M.is_alias_name = alias_name

-- ---- validation -------------------------------------------------------------------

-- 'keyAttributes.keyUsage': the member path as AWS's messages write it.
local CAMEL = setmetatable({}, { __mode = "k" })
local function camel(name)
  local c = CAMEL[name]
  if not c then
    c = name:sub(1, 1):lower() .. name:sub(2)
    CAMEL[name] = c
  end
  return c
end

local function fail(path, constraint)
  error({ validation = ("1 validation error detected: Value at '%s' failed to satisfy constraint: %s")
    :format(path, constraint) }, 0)
end

local cjson_null
do
  local ok, cjson = pcall(require, "cjson.safe")
  cjson_null = ok and cjson.null or nil
end

local check
local NONE = {}

local function check_string(shape, v, path)
  if type(v) ~= "string" then fail(path, "Member must be a string") end
  if shape.min and #v < shape.min then fail(path, "Member must have length greater than or equal to " .. shape.min) end
  if shape.max and #v > shape.max then fail(path, "Member must have length less than or equal to " .. shape.max) end
  if shape.enum then
    for _, e in ipairs(shape.enum) do if e == v then return end end
    fail(path, "Member must satisfy enum value set: [" .. table.concat(shape.enum, ", ") .. "]")
  end
  if shape.pattern and not shape.pattern(v) then
    fail(path, "Member must satisfy regular expression pattern: " .. shape.pattern_text)
  end
end

-- Whether a string member passes every constraint (the fast path of check_string).
local function string_ok(shape, v)
  if type(v) ~= "string" then return false end
  local n = #v
  if (shape.min and n < shape.min) or (shape.max and n > shape.max) then return false end
  local e = shape.enum
  if e then
    for i = 1, #e do if e[i] == v then return true end end
    return false
  end
  return not shape.pattern or shape.pattern(v)
end

local function is_array(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  return n == #v
end

function check(shape, v, path)
  local t = shape.type
  if t == "string" then return check_string(shape, v, path) end
  if t == "boolean" then
    if type(v) ~= "boolean" then fail(path, "Member must be a boolean") end
    return
  end
  if t == "integer" then
    if type(v) ~= "number" or v ~= math.floor(v) then fail(path, "Member must be an integer") end
    if shape.min and v < shape.min then fail(path, "Member must have value greater than or equal to " .. shape.min) end
    if shape.max and v > shape.max then fail(path, "Member must have value less than or equal to " .. shape.max) end
    return
  end
  if t == "list" then
    if not is_array(v) then fail(path, "Member must be a list") end
    if shape.max and #v > shape.max then
      fail(path, "Member must have length less than or equal to " .. shape.max)
    end
    for i, item in ipairs(v) do
      if item == cjson_null then fail(path .. "." .. i, "Member must not be null") end
      check(shape.member, item, path .. "." .. i)
    end
    return
  end
  if t == "map" then
    if type(v) ~= "table" or (next(v) ~= nil and is_array(v)) then fail(path, "Member must be a map") end
    local n = 0
    for k, item in pairs(v) do
      n = n + 1
      check(shape.key, k, path .. ".key")
      check(shape.value, item, path .. "." .. tostring(k))
    end
    if shape.max and n > shape.max then fail(path, "Member must have length less than or equal to " .. shape.max) end
    return
  end
  -- structure (or union)
  -- decoded JSON: an array has [1], an object only string keys
  if type(v) ~= "table" or v[1] ~= nil then fail(path, "Member must be a structure") end
  for _, name in ipairs(shape.required or NONE) do
    if v[name] == nil or v[name] == cjson_null then
      fail((path ~= "" and path .. "." or "") .. camel(name), "Member must not be null")
    end
  end
  local set = 0
  for name, item in pairs(v) do
    local ms = shape.members[name]
    if ms and item ~= cjson_null then
      set = set + 1
      local t = ms.type
      -- a string member that passes needs no path: it is made only for a message
      if t ~= "string" or not string_ok(ms, item) then
        check(ms, item, (path ~= "" and path .. "." or "") .. camel(name))
      end
    end
  end
  if shape.union and set ~= 1 then
    fail(path, "Member must have exactly one of its members set (a union)")
  end
end

--- Validates an operation's input (decoded JSON). Returns true, or nil and AWS's
-- ValidationException message naming the member.
function M.validate(operation, input)
  local shape = M.input[operation]
  if not shape then return nil, "unknown operation " .. tostring(operation) end
  local ok, err = pcall(check, shape, input, "")
  if ok then return true end
  if type(err) == "table" and err.validation then return nil, err.validation end
  error(err, 0)
end

return M

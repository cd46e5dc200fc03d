--- AWS structure parameters for the bin/payhsm subcommands. The AWS CLI takes a
-- structure as JSON ('{"EmvCommon":{"PrimaryAccountNumber":"..."}}') or in its shorthand
-- (EmvCommon={PrimaryAccountNumber=...,PanSequenceNumber=01}). Both are parsed strictly
-- here and checked against the AWS shape: unknown members, missing required members,
-- non-string values and unions with other than one member are usage errors (CLI_USAGE).
-- Messages name options and members, never the values.
local cjson = require "cjson"
local cliutil = require "payhsm.cliutil"

local M = {}
local fail = cliutil.fail

-- A shape: {union = bool, members = {{Name, "string" | shape, required = bool}, ...},
-- unsupported = {Name = true} (AWS members payhsm does not implement)}.
local function S(members, union, unsupported)
  local by = {}
  for _, m in ipairs(members) do by[m[1]] = m end
  return { members = members, by = by, union = union, unsupported = unsupported or {} }
end
local function req(name, t) return { name, t or "string", required = true } end

local PAN, PSN, ATC = req "PrimaryAccountNumber", req "PanSequenceNumber", req "ApplicationTransactionCounter"
-- Card validation data (API_CardGenerationAttributes): Amex's CSC has no public
-- definition, so payhsm does not offer it.
local EXP, SC, UN = req "CardExpiryDate", req "ServiceCode", req "UnpredictableNumber"
local CARD = { { "CardVerificationValue1", S { EXP, SC } }, { "CardVerificationValue2", S { EXP } },
  { "DynamicCardVerificationValue", S { PSN, EXP, SC, ATC } },
  { "DynamicCardVerificationCode", S { UN, PSN, ATC, req "TrackData" } } }
local NO_AMEX = "payhsm does not offer Amex CSC: it has no public definition"
local CARD_NO = { AmexCardSecurityCodeVersion1 = NO_AMEX, AmexCardSecurityCodeVersion2 = NO_AMEX,
  CardHolderVerificationValue = "no public definition of AWS's CHV" }
local CARD_NO_VERIFY = { DiscoverDynamicCardVerificationCode = "no public definition" }
for k, v in pairs(CARD_NO) do CARD_NO_VERIFY[k] = v end
-- IBM 3624 members (API_Ibm3624PinOffset ...)
local DEC, PAD, PVD = req "DecimalizationTable", req "PinValidationDataPadCharacter", req "PinValidationData"
local NO_RANDOM = "payhsm generates no random PINs"
local SHAPE = {
  -- API_MacAttributes: a union; payhsm implements the Algorithm member
  MacAttributes = S({ { "Algorithm", "string" } }, true,
    { EmvMac = true, DukptIso9797Algorithm1 = true, DukptIso9797Algorithm3 = true, DukptCmac = true }),
  -- API_SessionKeyDerivation and SessionKeyEmvCommon / Mastercard / Emv2000 / Amex / Visa
  SessionKeyDerivation = S({ { "EmvCommon", S { PAN, PSN, ATC } },
    { "Mastercard", S { PAN, PSN, ATC, req "UnpredictableNumber" } }, { "Emv2000", S { PAN, PSN, ATC } },
    { "Amex", S { PAN, PSN } }, { "Visa", S { PAN, PSN } } }, true),
  -- API_CryptogramAuthResponse: ArpcMethod1 / ArpcMethod2
  CryptogramAuthResponse = S({ { "ArpcMethod1", S { req "AuthResponseCode" } },
    { "ArpcMethod2", S { req "CardStatusUpdate", { "ProprietaryAuthenticationData", "string" } } } }, true),
  -- API_TranslationIsoFormats: IsoFormat0/3/4 (TranslationPinDataIsoFormat034), IsoFormat1
  TranslationIsoFormats = S({ { "IsoFormat0", S { PAN } }, { "IsoFormat1", S {} }, { "IsoFormat3", S { PAN } },
    { "IsoFormat4", S { PAN } } }, true),
  -- API_As2805KekValidationType: KekValidationRequest {DeriveKeyAlgorithm, RandomKeyMaxLength} /
  -- KekValidationResponse {RandomKeySend}
  As2805KekValidationType = S({ { "KekValidationRequest", S { req "DeriveKeyAlgorithm", { "RandomKeyMaxLength", "string" } } },
    { "KekValidationResponse", S { req "RandomKeySend" } } }, true),
  -- API_CardGenerationAttributes / API_CardVerificationAttributes (unions)
  CardGenerationAttributes = S(CARD, true, CARD_NO),
  CardVerificationAttributes = S(CARD, true, CARD_NO_VERIFY),
  -- API_PinGenerationAttributes (union)
  PinGenerationAttributes = S({ { "VisaPinVerificationValue", S { req "EncryptedPinBlock", req("PinVerificationKeyIndex", "integer") } },
    { "Ibm3624PinOffset", S { req "EncryptedPinBlock", DEC, PAD, PVD } }, { "Ibm3624NaturalPin", S { DEC, PAD, PVD } } }, true,
    { VisaPin = NO_RANDOM, Ibm3624RandomPin = NO_RANDOM,
      Ibm3624PinFromOffset = "payhsm makes no clear PIN from an offset" }),
  -- API_PinVerificationAttributes (union)
  PinVerificationAttributes = S({ { "VisaPin", S { req("PinVerificationKeyIndex", "integer"), req "VerificationValue" } },
    { "Ibm3624Pin", S { DEC, PAD, PVD, req "PinOffset" } } }, true),
}
M.shapes = SHAPE

-- A member name fit to repeat in a message. It is user input, so only a name shaped like
-- AWS's (PascalCase: a capital, then letters and digits, some lower case, at most 32
-- characters, not all hex) is repeated: a key pasted in the wrong place never is.
local function said(name)
  if type(name) == "string" and #name <= 32 and name:match("^%u%w*$") and name:find("%l")
    and not name:match("^%x+$") then
    return "'" .. name .. "'"
  end
  return "(a name not shown)"
end

-- AWS CLI shorthand: Key=Value,Key2={Inner=Value},Key3="quoted, value",Empty={} -> table.
local function shorthand(s, opt)
  local pos = 1
  local function bad(what) fail("CLI_USAGE", "%s: malformed shorthand at character %d: %s", opt, pos, what) end
  local structure
  local function value()
    local c = s:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local t = structure("}")
      if s:sub(pos, pos) ~= "}" then bad("expected '}'") end
      pos = pos + 1
      return t
    elseif c == '"' or c == "'" then
      local close = s:find(c, pos + 1, true)
      if not close then bad("unterminated quote") end
      local v = s:sub(pos + 1, close - 1)
      pos = close + 1
      return v
    elseif c == "[" then
      bad("lists are not used by any payhsm option")
    end
    local v = s:match("^[^,{}%[%]=\"'%s]*", pos)
    pos = pos + #v
    return v
  end
  function structure(closing)
    local t = {}
    if closing and s:sub(pos, pos) == closing then return t end
    while true do
      local key = s:match("^%a[%w_]*", pos)
      if not key then bad("expected a member name") end
      pos = pos + #key
      if s:sub(pos, pos) ~= "=" then bad("expected '=' after " .. said(key)) end
      pos = pos + 1
      if t[key] ~= nil then bad(said(key) .. " given twice") end
      t[key] = value()
      local c = s:sub(pos, pos)
      if c == "" or (closing and c == closing) then return t end
      if c ~= "," then bad("expected ',' or the end") end
      pos = pos + 1
    end
  end
  local t = structure(nil)
  if pos <= #s then bad("expected ',' or the end") end
  return t
end

local function json_structure(s, opt)
  local ok, v = pcall(cjson.decode, s)
  if not ok then
    fail("CLI_USAGE", "%s: malformed JSON (%s)", opt, (tostring(v):gsub("^.-:%d+: ", ""):gsub("\n.*", "")))
  end
  if type(v) ~= "table" or v[1] ~= nil then fail("CLI_USAGE", "%s: expected a JSON object", opt) end
  return v
end

-- Checks v against shape; path names the place in messages ("--opt", "--opt EmvCommon").
local function conform(v, shape, path)
  if type(v) ~= "table" then fail("CLI_USAGE", "%s must be a structure", path) end
  local n = 0
  for k, x in pairs(v) do
    local m = type(k) == "string" and shape.by[k]
    if not m then
      local why = shape.unsupported[k]
      if why then
        fail("CLI_USAGE", "%s: %s is an AWS member payhsm does not implement%s", path, said(k),
          type(why) == "string" and (" (" .. why .. ")") or "")
      end
      local names = {}
      for _, mm in ipairs(shape.members) do names[#names + 1] = mm[1] end
      fail("CLI_USAGE", "%s: unknown member %s (%s)", path, said(k),
        #names > 0 and ("expected " .. table.concat(names, ", ")) or "expected none")
    end
    if m[2] == "string" then
      if type(x) ~= "string" then fail("CLI_USAGE", "%s: %s must be a string", path, k) end
    elseif m[2] == "integer" then
      -- a JSON number or, in the shorthand, digits; kept as the digit string
      if type(x) == "number" and x >= 0 and x == math.floor(x) and x < 1e9 then x = ("%d"):format(x) end
      if type(x) ~= "string" or not x:match("^%d+$") or #x > 9 then
        fail("CLI_USAGE", "%s: %s must be a whole number", path, k)
      end
      v[k] = x
    else
      conform(x, m[2], path .. " " .. k)
    end
    n = n + 1
  end
  if shape.union and n ~= 1 then
    local names = {}
    for _, mm in ipairs(shape.members) do names[#names + 1] = mm[1] end
    fail("CLI_USAGE", "%s: give exactly one of %s", path, table.concat(names, ", "))
  end
  for _, m in ipairs(shape.members) do
    if m.required and v[m[1]] == nil then fail("CLI_USAGE", "%s: %s is required", path, m[1]) end
  end
  return v
end

--- parse_structure(text, shape, opt): an AWS structure value (JSON, or the CLI shorthand) for option `opt`, checked
-- against `shape` (one of M.shapes); raises a CLI_USAGE failure on bad syntax or shape.
function M.parse_structure(text, shape, opt)
  if type(text) ~= "string" then fail("CLI_USAGE", "%s needs a value", opt) end
  local v
  if text:match("^%s*[{%[]") then v = json_structure(text, opt) else v = shorthand(text, opt) end
  return conform(v, shape, opt)
end

--- structure(o, name, shape): the structure option --name of the options o, parsed; nil when absent.
function M.structure(o, name, shape)
  if o[name] == nil then return nil end
  return M.parse_structure(o[name], shape, "--" .. name)
end

--- exclusive(o, name, aliases): the structure option --name excludes each older flattened alias.
function M.exclusive(o, name, aliases)
  for _, a in ipairs(aliases) do
    if o[a] ~= nil then
      fail("CLI_USAGE", "--%s and --%s are two forms of the same input; give one", name, a)
    end
  end
end

--- only(v): the one member of a union value: name, value.
function M.only(v) return next(v) end

return M

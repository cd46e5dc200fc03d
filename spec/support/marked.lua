--- Recognisable key values for the secrets and bad-input specs, and the scanner that
-- looks for them. A marked key of n bytes is the 4-byte groups A5 <tag> C3 <group
-- number> (tag: two hex digits, one per key), cut to n bytes: "A511C300A511C301...".
-- No payhsm output can contain such a run by chance (8 bytes: 2^-64 per position), and
-- no spec uses the pattern for data, so finding any 8 consecutive bytes of a marked key
-- (in hex, either case, or raw) means a key leaked.
local M = {}

M.registered = {} -- hex -> label, every marked key made so far

--- hex(nbytes, tag [, label]) -> the marked key's hex (upper case), registered for scans.
function M.hex(nbytes, tag, label)
  assert(type(tag) == "string" and tag:match("^%x%x$"), "tag: two hex digits")
  local parts = {}
  for g = 0, math.floor((nbytes + 3) / 4) - 1 do parts[#parts + 1] = ("A5%sC3%02X"):format(tag:upper(), g) end
  local hex = table.concat(parts):sub(1, 2 * nbytes)
  M.registered[hex] = label or ("marked key " .. tag)
  return hex
end

--- Registers a key hex found elsewhere (a scenario's literal, a generated key's export()).
function M.register(hex, label)
  M.registered[hex:upper()] = label or hex
end

local function unhex(h)
  return (h:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end))
end

-- The needles for one key: every 8-byte window (or the whole key when shorter), as
-- upper-case hex, lower-case hex and raw bytes.
local function needles(hex)
  local out = {}
  local n = math.floor(#hex / 2)
  local w = math.min(n, 8)
  for i = 0, n - w do
    local piece = hex:sub(2 * i + 1, 2 * (i + w))
    out[#out + 1] = piece:upper()
    out[#out + 1] = piece:lower()
    out[#out + 1] = unhex(piece)
  end
  return out
end

--- leak(text [, keys [, whole]]) -> nil, or a description of the first key (hex -> label;
-- default every registered key) of which 8 consecutive bytes occur in text. With whole,
-- only the whole key counts: for published test keys ("0123456789ABCDEF..."), whose
-- halves are common data patterns.
function M.leak(text, keys, whole)
  if type(text) ~= "string" then text = tostring(text) end
  for hex, label in pairs(keys or M.registered) do
    local list = whole and { hex:upper(), hex:lower(), unhex(hex) } or needles(hex)
    for _, needle in ipairs(list) do
      local at = text:find(needle, 1, true)
      if at then
        return ("%s (%s...) found at byte %d"):format(label, hex:sub(1, 16), at)
      end
    end
  end
  return nil
end

return M

--- gzip (RFC 1952) over DEFLATE (RFC 1951) in pure Lua (5.1 to 5.4, LuaJIT), for the POS terminal
-- parameters ("inner gzip JSON"). Debian 12 ships no zlib binding for Lua 5.4 and the
-- build links libcrypto only, so this small codec lives here:
--   compress(s)   -> gzip bytes: DEFLATE with fixed Huffman codes and a greedy LZ77
--                    (32 KiB window, hash chains of 3-byte prefixes); any gunzip reads it
--   decompress(s) -> bytes | nil, message: the whole of DEFLATE (stored, fixed and
--                    dynamic Huffman blocks), so it reads what gzip(1) or zlib write;
--                    CRC-32 and ISIZE are checked.
--
-- Bit fields are handled with arithmetic (shifts as products and floor quotients of
-- powers of two, masks as remainders), which every Lua reads the same; the one true bit
-- operation, the XOR of CRC-32, comes from bxor below.
local M = {}

local floor, char, byte = math.floor, string.char, string.byte

-- POW2[n] = 2^n as an integer on Lua 5.3+ (products of integers stay integers)
local POW2 = { [0] = 1 }
for n = 1, 32 do POW2[n] = POW2[n - 1] * 2 end

-- XOR of two 32-bit unsigned values: the native operator on 5.3+ (compiled from text,
-- so this file still parses on 5.1), bit32 on 5.2, LuaJIT's bit (made unsigned), or
-- per-nibble arithmetic on plain 5.1.
local bxor
if _VERSION ~= "Lua 5.1" and _VERSION ~= "Lua 5.2" then
  bxor = load("return function(a, b) return a ~ b end")()
elseif bit32 then
  bxor = bit32.bxor
elseif type(jit) == "table" and pcall(require, "bit") then
  local bit = require "bit"
  bxor = function(a, b) return bit.bxor(a, b) % 4294967296 end
else
  local X = {}
  for a = 0, 15 do
    X[a] = {}
    for b = 0, 15 do
      local r, p, x, y = 0, 1, a, b
      for _ = 1, 4 do
        if x % 2 ~= y % 2 then r = r + p end
        x, y, p = floor(x / 2), floor(y / 2), p * 2
      end
      X[a][b] = r
    end
  end
  bxor = function(a, b)
    local r, p = 0, 1
    for _ = 1, 8 do
      r = r + X[a % 16][b % 16] * p
      a, b, p = floor(a / 16), floor(b / 16), p * 16
    end
    return r
  end
end

-- little-endian unsigned integers of n bytes
local function le(v, n)
  local t = {}
  for i = 1, n do t[i] = char(v % 256) v = floor(v / 256) end
  return table.concat(t)
end
local function read_le(s, pos, n)
  local v = 0
  for i = n - 1, 0, -1 do v = v * 256 + byte(s, pos + i) end
  return v
end

-- ---- CRC-32 (ISO 3309, reflected 0xEDB88320) ----------------------------------------
local CRC = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    local h = floor(c / 2)
    c = (c % 2 == 1) and bxor(0xEDB88320, h) or h
  end
  CRC[i] = c
end

function M.crc32(s, crc)
  crc = bxor(crc or 0, 0xFFFFFFFF)
  for i = 1, #s do crc = bxor(CRC[bxor(crc % 256, byte(s, i))], floor(crc / 256)) end
  return bxor(crc, 0xFFFFFFFF)
end

-- ---- length and distance code tables (RFC 1951 3.2.5) ---------------------------------
local LBASE = { 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
  131, 163, 195, 227, 258 }
local LEXTRA = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0 }
local DBASE = { 1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
  2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577 }
local DEXTRA = { 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13 }

-- ---- compress ------------------------------------------------------------------------------

local function bit_writer()
  local out, acc, n = {}, 0, 0
  local w = {}
  function w.bits(v, count) -- LSB first; v < 2^count, acc < 2^n
    acc = acc + v * POW2[n]
    n = n + count
    while n >= 8 do
      out[#out + 1] = char(acc % 256)
      acc, n = floor(acc / 256), n - 8
    end
  end
  function w.huff(code, len) -- Huffman codes go MSB first
    local r = 0
    for _ = 1, len do r = r * 2 + code % 2; code = floor(code / 2) end
    w.bits(r, len)
  end
  function w.finish()
    if n > 0 then out[#out + 1] = char(acc % 256) end
    return table.concat(out)
  end
  return w
end

-- fixed literal/length code of symbol s
local function fixed_lit(w, s)
  if s < 144 then w.huff(0x30 + s, 8)
  elseif s < 256 then w.huff(0x190 + s - 144, 9)
  elseif s < 280 then w.huff(s - 256, 7)
  else w.huff(0xC0 + s - 280, 8) end
end

local function find_code(base, v)
  local i = #base
  while base[i] > v do i = i - 1 end
  return i
end

local function deflate_fixed(s)
  local w = bit_writer()
  w.bits(1, 1) -- BFINAL
  w.bits(1, 2) -- BTYPE 01: fixed Huffman
  local n, i = #s, 1
  local head, prev = {}, {}
  local function insert(pos)
    if pos + 2 <= n then
      local h = byte(s, pos) * 65536 + byte(s, pos + 1) * 256 + byte(s, pos + 2)
      prev[pos] = head[h]
      head[h] = pos
    end
  end
  while i <= n do
    local best_len, best_dist = 0, 0
    if i + 2 <= n then
      local h = byte(s, i) * 65536 + byte(s, i + 1) * 256 + byte(s, i + 2)
      local cand, tries = head[h], 32
      while cand and i - cand <= 32768 and tries > 0 do
        local len, max = 3, math.min(258, n - i + 1)
        while len < max and byte(s, cand + len) == byte(s, i + len) do len = len + 1 end
        if len > best_len then best_len, best_dist = len, i - cand end
        if len == max then break end
        cand, tries = prev[cand], tries - 1
      end
    end
    if best_len >= 3 then
      local lc = find_code(LBASE, best_len)
      fixed_lit(w, 256 + lc)
      if LEXTRA[lc] > 0 then w.bits(best_len - LBASE[lc], LEXTRA[lc]) end
      local dc = find_code(DBASE, best_dist)
      w.huff(dc - 1, 5)
      if DEXTRA[dc] > 0 then w.bits(best_dist - DBASE[dc], DEXTRA[dc]) end
      for p = i, i + best_len - 1 do insert(p) end
      i = i + best_len
    else
      fixed_lit(w, byte(s, i))
      insert(i)
      i = i + 1
    end
  end
  fixed_lit(w, 256)
  return w.finish()
end

--- gzip bytes of s (no file name, MTIME 0, OS 255 "unknown").
function M.compress(s)
  assert(type(s) == "string", "gzip.compress(string)")
  return "\31\139\8\0\0\0\0\0\0\255" .. deflate_fixed(s) .. le(M.crc32(s), 4) .. le(#s % 4294967296, 4)
end

-- ---- decompress ---------------------------------------------------------------------------

-- Canonical Huffman decoding table from code lengths: {count[len], symbols in order}.
local function build(lengths, n)
  local count, offs, symbols = {}, {}, {}
  for l = 0, 15 do count[l] = 0 end
  for s = 0, n - 1 do count[lengths[s] or 0] = count[lengths[s] or 0] + 1 end
  count[0] = 0
  offs[1] = 0
  for l = 1, 14 do offs[l + 1] = offs[l] + count[l] end
  for s = 0, n - 1 do
    local l = lengths[s] or 0
    if l > 0 then
      symbols[offs[l]] = s
      offs[l] = offs[l] + 1
    end
  end
  return { count = count, symbols = symbols }
end

local FIXED_LIT, FIXED_DIST
do
  local l = {}
  for s = 0, 143 do l[s] = 8 end
  for s = 144, 255 do l[s] = 9 end
  for s = 256, 279 do l[s] = 7 end
  for s = 280, 287 do l[s] = 8 end
  FIXED_LIT = build(l, 288)
  local d = {}
  for s = 0, 29 do d[s] = 5 end
  FIXED_DIST = build(d, 30)
end

local CL_ORDER = { 16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15 }

local function inflate(s, pos)
  local acc, nbits = 0, 0
  local out, olen = {}, 0
  local function need(k)
    while nbits < k do
      local b = byte(s, pos)
      if not b then error("gzip: truncated data", 0) end
      pos = pos + 1
      acc = acc + b * POW2[nbits]
      nbits = nbits + 8
    end
  end
  local function bits(k)
    if k == 0 then return 0 end
    need(k)
    local p = POW2[k]
    local v = acc % p
    acc, nbits = floor(acc / p), nbits - k
    return v
  end
  local function decode(h)
    local code, first, index = 0, 0, 0
    for len = 1, 15 do
      code = code + bits(1) -- code is even here: adding the bit sets its lowest bit
      local c = h.count[len]
      if code - c < first then return h.symbols[index + code - first] end
      index = index + c
      first = (first + c) * 2
      code = code * 2
    end
    error("gzip: bad Huffman code", 0)
  end
  repeat
    local final = bits(1)
    local btype = bits(2)
    if btype == 0 then
      acc, nbits = 0, 0 -- to the byte boundary
      if pos + 3 > #s then error("gzip: truncated stored block", 0) end
      local len, nlen = read_le(s, pos, 2), read_le(s, pos + 2, 2)
      if len + nlen ~= 0xFFFF then error("gzip: stored block length check", 0) end -- NLEN = ~LEN
      pos = pos + 4
      if pos + len - 1 > #s then error("gzip: truncated stored block", 0) end
      for k = pos, pos + len - 1 do olen = olen + 1; out[olen] = byte(s, k) end
      pos = pos + len
    elseif btype == 1 or btype == 2 then
      local lit, dist = FIXED_LIT, FIXED_DIST
      if btype == 2 then
        local hlit, hdist, hclen = bits(5) + 257, bits(5) + 1, bits(4) + 4
        local cl = {}
        for k = 1, hclen do cl[CL_ORDER[k]] = bits(3) end
        local clh = build(cl, 19)
        local lengths, k = {}, 0
        while k < hlit + hdist do
          local sym = decode(clh)
          if sym < 16 then lengths[k] = sym; k = k + 1
          else
            local rep, val = 0, 0
            if sym == 16 then
              if k == 0 then error("gzip: repeat with no previous length", 0) end
              val, rep = lengths[k - 1], 3 + bits(2)
            elseif sym == 17 then rep = 3 + bits(3)
            else rep = 11 + bits(7) end
            if k + rep > hlit + hdist then error("gzip: too many code lengths", 0) end
            for _ = 1, rep do lengths[k] = val; k = k + 1 end
          end
        end
        local ll, dl = {}, {}
        for j = 0, hlit - 1 do ll[j] = lengths[j] end
        for j = 0, hdist - 1 do dl[j] = lengths[hlit + j] end
        lit, dist = build(ll, hlit), build(dl, hdist)
      end
      while true do
        local sym = decode(lit)
        if sym < 256 then olen = olen + 1; out[olen] = sym
        elseif sym == 256 then break
        else
          sym = sym - 256
          if sym > 29 then error("gzip: bad length symbol", 0) end
          local len = LBASE[sym] + bits(LEXTRA[sym])
          local dsym = decode(dist) + 1
          if dsym > 30 then error("gzip: bad distance symbol", 0) end
          local d = DBASE[dsym] + bits(DEXTRA[dsym])
          if d > olen then error("gzip: distance too far back", 0) end
          for _ = 1, len do olen = olen + 1; out[olen] = out[olen - d] end
        end
      end
    else
      error("gzip: reserved block type", 0)
    end
  until final == 1
  -- bytes -> string in slices (string.char takes a bounded number of arguments)
  local parts = {}
  local unpack = table.unpack or unpack
  for k = 1, olen, 4096 do parts[#parts + 1] = char(unpack(out, k, math.min(k + 4095, olen))) end
  return table.concat(parts), pos
end

--- The bytes inside a gzip member, or nil, message (bad magic, flags, data, CRC or size).
function M.decompress(gz)
  if type(gz) ~= "string" or #gz < 18 or gz:byte(1) ~= 31 or gz:byte(2) ~= 139 or gz:byte(3) ~= 8 then
    return nil, "gzip: not a gzip member (magic, method 8)"
  end
  local flg, pos = gz:byte(4), 11
  local function flag(bit) return floor(flg / bit) % 2 == 1 end
  if flg >= 0x20 then return nil, "gzip: reserved flags set" end
  if flag(4) then                                                                 -- FEXTRA
    if pos + 1 > #gz then return nil, "gzip: truncated header" end
    pos = pos + 2 + read_le(gz, pos, 2)
  end
  if flag(8) then pos = (gz:find("\0", pos, true) or #gz) + 1 end                -- FNAME
  if flag(16) then pos = (gz:find("\0", pos, true) or #gz) + 1 end               -- FCOMMENT
  if flag(2) then pos = pos + 2 end                                               -- FHCRC
  local ok, data, after = pcall(inflate, gz, pos)
  if not ok then return nil, data end
  if after + 7 > #gz then return nil, "gzip: missing trailer" end
  local crc, size = read_le(gz, after, 4), read_le(gz, after + 4, 4)
  if crc ~= M.crc32(data) then return nil, "gzip: CRC-32 does not match" end
  if size ~= #data % 4294967296 then return nil, "gzip: ISIZE does not match" end
  return data
end

return M

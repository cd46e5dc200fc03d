--- The Lua-version differences the Lua layer meets, in one place (the C side has
-- csrc/compat.h). payhsm runs on Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT 2.1; this module
-- changes no global, it only hands out functions that behave alike on each.
local M = {}

--- table.unpack / unpack.
M.unpack = table.unpack or unpack

--- table.pack: the values with their count in field n.
M.pack = table.pack or function(...) return { n = select("#", ...), ... } end

--- true when x is a number with an integral value (an integer subtype on 5.3+, or a
-- float holding an integral value below 2^53 on every version).
function M.is_integral(x)
  return type(x) == "number" and x == math.floor(x) and x > -2 ^ 53 and x < 2 ^ 53
end

--- x as an integer when it has an integral value that fits, else nil (math.tointeger on
-- 5.3+; on 5.1/5.2/LuaJIT numbers are doubles, integral ones below 2^53 qualify).
function M.tointeger(x)
  if math.tointeger then return math.tointeger(x) end
  if M.is_integral(x) then return x end
  return nil
end

--- load(text, chunkname): compiles a string on every version (5.1's load takes a function).
M.load = loadstring or load

return M

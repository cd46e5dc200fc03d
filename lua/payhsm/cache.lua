--- A per-process cache bounded to 2 * size entries: two generations, a hit in the older
-- one moves to the newer; when the newer holds `size` entries the older one is dropped
-- (drop(value) is called for each of its values, e.g. to close key objects). Close to
-- least-recently-used at the cost of two table lookups, with no per-entry bookkeeping.
--
--   local cache = require "payhsm.cache"
--   local c = cache.new(1024, function(v) v.key:close() end)
--   c:put(k, v);  c:get(k) -> v | nil;  c:count() -> entries held
--   c:delete(k) -> v | nil (removed; drop is not called);  c:each(fn) calls fn(k, v) for each entry
local M = {}

local Cache = {}
Cache.__index = Cache

--- A new cache of 2 * size entries at most (size >= 1); drop is optional.
function M.new(size, drop)
  assert(type(size) == "number" and size >= 1, "cache: size must be at least 1")
  return setmetatable({ size = size, drop = drop, new = {}, old = {}, n = 0 }, Cache)
end

--- The value cached for k, or nil (a hit in the older generation moves it to the newer).
function Cache:get(k)
  local v = self.new[k]
  if v ~= nil then return v end
  v = self.old[k]
  if v ~= nil then
    self.old[k] = nil
    self:put(k, v)
  end
  return v
end

--- Caches v for k.
function Cache:put(k, v)
  self.old[k] = nil
  if self.new[k] == nil then self.n = self.n + 1 end
  self.new[k] = v
  if self.n >= self.size then
    if self.drop then for _, old in pairs(self.old) do self.drop(old) end end
    self.old, self.new, self.n = self.new, {}, 0
  end
end

--- Removes k and returns its value (drop is not called: the caller has it).
function Cache:delete(k)
  local v = self.new[k]
  if v ~= nil then
    self.new[k] = nil
    self.n = self.n - 1
    return v
  end
  v = self.old[k]
  self.old[k] = nil
  return v
end

--- Calls fn(k, v) for every entry, without moving any (fn must not change the cache).
function Cache:each(fn)
  for k, v in pairs(self.new) do fn(k, v) end
  for k, v in pairs(self.old) do fn(k, v) end
end

--- The number of cached entries (at most 2 * size).
function Cache:count()
  local n = self.n
  for _ in pairs(self.old) do n = n + 1 end
  return n
end

return M

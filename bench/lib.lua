--- Benchmark harness. Each bench/<area>.lua returns function(b) calling
-- b.case(name, iterations, fn); bench/c/<area>.c prints "name ops_per_sec" lines
-- for the same case names, making the same OpenSSL calls from plain C.
local M = {}

local clock = os.clock -- CPU time of this process: one core's work

-- Best of three timed runs (after a warm-up): the VM's neighbours make single runs vary
-- by 15 % or more; the C baselines do the same.
function M.measure(n, fn)
  local warm = math.max(1, math.floor(n / 20))
  for _ = 1, warm do fn() end
  local best = math.huge
  for _ = 1, 3 do
    local t0 = clock()
    for _ = 1, n do fn() end
    local dt = clock() - t0
    if dt < best then best = dt end
  end
  return n / best, best * 1e9 / n
end

function M.new()
  local b = { results = {} }
  function b.case(name, n, fn)
    local ops, ns = M.measure(n, fn)
    b.results[#b.results + 1] = { name = name, ops = ops, ns = ns }
  end
  return b
end

return M

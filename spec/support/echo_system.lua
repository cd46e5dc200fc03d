-- A tiny system for spec/server_spec.lua: echoes the request and counts store writes.
local M = {}
function M.new(cfg)
  return { handle = function(_, req)
    local n = tonumber(cfg.store:get("n") or "0") + 1
    cfg.store:put("n", tostring(n))
    return { status = req.path == "/missing" and 404 or 200, headers = {},
      body = ('{"n":%d,"auth":"%s"}'):format(n, req.headers.authorization or "") }
  end }
end
return M

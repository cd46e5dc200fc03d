--- The Lua running this suite, for the processes specs start (servers, workers, CLI):
-- the same interpreter (arg[-1]: lua5.1, luajit ...) with the same build of the C
-- modules (the build directory on package.cpath: build, build-5.1, build-asan ...), so
-- `make test-compat` checks the servers under each Lua too.
--   interp.lua    "lua5.1"
--   interp.build  "./build-5.1"
--   interp.env    "LUA=lua5.1 PAYHSM_BUILD=./build-5.1" (for bin/payhsm; plus LD_PRELOAD
--                 of the ASan runtime under make test-asan)
--   interp.run    "LUA_PATH=... LUA_CPATH=... lua5.1" (for a Lua script of the repo)
local M = {}
M.lua = (arg and arg[-1]) or "lua5.4"
if not M.lua:match("^[%w./_-]+$") then M.lua = "lua5.4" end
M.build = package.cpath:match("(%.?/?build[%w_.-]*)/%?%.so") or "./build"
-- Under make test-asan the children run the sanitized build too, with the ASan runtime
-- preloaded as into busted (callers strip LD_PRELOAD for curl, openssl ...; this puts it
-- back for payhsm's own processes). Without the runtime they take the plain build.
local preload = ""
if M.build:match("asan") then
  local lp = os.getenv("LD_PRELOAD") or ""
  if lp:match("asan") and lp:match("^[%w./_ -]+$") then preload = (" LD_PRELOAD='%s'"):format(lp)
  else M.build = "./build" end
end
M.env = ("LUA=%s PAYHSM_BUILD=%s%s"):format(M.lua, M.build, preload)
M.run = ("%s LUA_PATH='./lua/?.lua;./lua/?/init.lua;./?.lua;;' LUA_CPATH='%s/?.so;;' %s"):format(
  preload ~= "" and ("env" .. preload) or "", M.build, M.lua)
return M

--- The Lua running this suite, for the processes specs start (servers, workers, CLI):
-- the same interpreter (arg[-1]: lua5.1, luajit ...) with the same build of the C
-- modules (the build directory on package.cpath: build, build-5.1, build-asan ...), so
-- `make test-compat` checks the servers under each Lua too.
--   interp.lua    "lua5.1"
--   interp.build  "./build-5.1"
--   interp.env    "LUA=lua5.1 PAYHSM_BUILD=./build-5.1" (for bin/payhsm)
--   interp.run    "LUA_PATH=... LUA_CPATH=... lua5.1" (for a Lua script of the repo)
local M = {}
M.lua = (arg and arg[-1]) or "lua5.4"
if not M.lua:match("^[%w./_-]+$") then M.lua = "lua5.4" end
M.build = package.cpath:match("(%.?/?build[%w_.-]*)/%?%.so") or "./build"
-- children run without the ASan runtime (make test-asan preloads it into busted only)
if M.build:match("asan") then M.build = "./build" end
M.env = ("LUA=%s PAYHSM_BUILD=%s"):format(M.lua, M.build)
M.run = ("LUA_PATH='./lua/?.lua;./lua/?/init.lua;./?.lua;;' LUA_CPATH='%s/?.so;;' %s"):format(M.build, M.lua)
return M

-- content_by_lua_file script: the MSK gateway, every endpoint, inside nginx (see nginx.conf).
-- Adjust the config path to where payhsm lives (nginx.conf's lua_package_path and
-- lua_package_cpath say where its Lua files and its LuaJIT build are).
require("payhsm.embed.nginx").serve("gateway", "/opt/payhsm/examples/gateway.conf.lua")

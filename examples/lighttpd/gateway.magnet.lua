-- mod_magnet script: the MSK gateway's GET endpoints inside lighttpd (see lighttpd.conf).
-- Adjust the two paths to where payhsm lives.
package.path = "/opt/payhsm/lua/?.lua;/opt/payhsm/lua/?/init.lua;" .. package.path
package.cpath = "/opt/payhsm/build/?.so;" .. package.cpath
return require("payhsm.embed.lighttpd").serve("gateway", "/opt/payhsm/examples/gateway.conf.lua", lighty)

-- Smoke test of the C modules under an older Lua (5.1, 5.2, LuaJIT), written in the Lua
-- all of them read. Run by `make test-compat` as: luaX tools/compat_smoke.lua BUILD_DIR
-- Known answers: KCV 08D7B4 and the ISO 9797-1 algorithm 3 MAC A1C72E74EA3FA9B6 (see
-- spec/kcv_spec.lua, spec/mac_spec.lua); the rest are round trips and refusals.
local dir = arg[1]
package.cpath = dir .. "/?.so;" .. package.cpath
local core = require "payhsm.core"
local passed, failed = 0, 0
local function check(name, ok, detail)
  if ok then passed = passed + 1 else
    failed = failed + 1
    io.write("FAIL ", name, " ", tostring(detail), "\n")
  end
end
local k = core.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "M3" })
check("kcv", k:kcv() == "08D7B4", k:kcv())
local mac = core.mac.generate(k, "ISO9797_ALGORITHM3", "4E6F77206973207468652074696D6520666F7220616C6C20")
check("mac", mac == "A1C72E74EA3FA9B6", mac)
check("tostring", tostring(k):find("08D7B4", 1, true) ~= nil and not tostring(k):find("0123456789ABCDEF", 1, true))
local kbpk = core.key.generate("AES_256")
local zpk = core.key.generate("AES_128", { usage = "P0", mode = "B", exportability = "E" })
local block = core.tr31.wrap(kbpk, zpk, { version = "D" })
local back, header = core.tr31.unwrap(kbpk, block)
check("tr31", back and back:kcv("CMAC") == zpk:kcv("CMAC") and header.usage == "P0", block)
local tampered = block:sub(1, -2) .. (block:sub(-1) == "0" and "1" or "0")
local none, _, code = core.tr31.unwrap(kbpk, tampered)
check("tr31 tamper", none == nil and code == "TR31_MAC_MISMATCH", code)
local pin = core.pin.decrypt(zpk, "ISO_FORMAT_4", core.pin.encrypt(zpk, "ISO_FORMAT_4", "1234", "4111111111111111"),
  "4111111111111111")
check("pin", pin == "1234", pin)
local rot = core.rotation.new { ids = { "1001", "1002", "1003" } }
rot:import { kcv = "A" } rot:import { kcv = "B" }
local id, _, version = rot:active()
check("rotation", id == "1002" and version == "3.0", tostring(id) .. " " .. tostring(version))
local again = core.rotation.restore(rot:snapshot())
check("rotation snapshot", again and select(1, again:active()) == "1002")
local msk = core.key.generate("AES_256", { usage = "D0" })
local env = core.envelope.seal(msk, "hello")
check("envelope", core.envelope.open(msk, env) == "hello")
local priv = core.rsa.generate(2048)
check("rsa", core.rsa.open(priv, core.rsa.seal(priv, "card")) == "card")
k:close()
check("close", k.closed == true and not pcall(k.kcv, k))
local okhttp, http = pcall(require, "payhsm.http")
check("payhsm.http loads", okhttp and type(http.new) == "function", http)
local okredis, redis = pcall(require, "payhsm.redis")
check("payhsm.redis loads", okredis and type(redis.connect) == "function", redis)
io.write(("%s: %d passed, %d failed\n"):format(_VERSION .. (jit and (" " .. jit.version) or ""), passed, failed))
os.exit(failed == 0 and 0 or 1)

-- ZKA: derive SK-mac from the master key and RND, then a MAC over 32 bytes.
local hsm = require "payhsm"

return function(b)
  local mk = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "B0" })
  local rnd, data = "A1B2C3D4E5F60718293A4B5C6D7E8F90", ("0123456789ABCDEF"):rep(4)
  local derive, mac = hsm.zka.derive_session_key, hsm.zka.mac
  b.case("zka_derive_mac_32B", 300000, function() return mac(derive(mk, "MAC", rnd), data) end)
end

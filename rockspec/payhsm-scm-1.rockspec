rockspec_format = "3.0"
package = "payhsm"
version = "scm-1"
source = { url = "git+file:///payhsm" }
description = {
  summary = "A scriptable software payment HSM for Lua",
  detailed = [[
Opaque key objects, TDES/AES, CMAC, ISO 9797-1 MACs, HMAC, key check values,
TR-31 / ANSI X9.143 key blocks, ISO 9564 PIN blocks, EMV cryptograms, AS2805 and
ZKA, in a C module built on OpenSSL 3, with simulators of payment systems on top.]],
  license = "MIT",
}
dependencies = { "lua >= 5.4" }
external_dependencies = {
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}
build = {
  type = "builtin",
  modules = {
    ["payhsm.core"] = {
      sources = {
        "csrc/core.c", "csrc/key.c", "csrc/cipher.c", "csrc/mac.c", "csrc/kcv.c",
        "csrc/tr31.c", "csrc/pinblock.c", "csrc/emv.c", "csrc/as2805.c", "csrc/zka.c",
        "csrc/envelope.c", "csrc/rotation.c", "csrc/rsa.c",
      },
      incdirs = { "$(OPENSSL_INCDIR)", "csrc" },
      libdirs = { "$(OPENSSL_LIBDIR)" },
      libraries = { "crypto" },
    },
    ["payhsm"] = "lua/payhsm/init.lua",
    ["payhsm.cli"] = "lua/payhsm/cli.lua",
  },
  install = { bin = { "bin/payhsm" } },
}

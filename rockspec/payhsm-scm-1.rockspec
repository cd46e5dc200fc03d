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
dependencies = { "lua >= 5.1" }
external_dependencies = {
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
  MICROHTTPD = { header = "microhttpd.h", library = "microhttpd" },
  GNUTLS = { header = "gnutls/gnutls.h", library = "gnutls" },
  HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
}
build = {
  type = "builtin",
  modules = {
    ["payhsm.core"] = {
      sources = {
        "csrc/core.c", "csrc/util.c", "csrc/block.c", "csrc/key.c", "csrc/cipher.c", "csrc/mac.c",
        "csrc/kcv.c", "csrc/tr31.c", "csrc/pinblock.c", "csrc/emv.c", "csrc/emvsm.c", "csrc/as2805.c",
        "csrc/zka.c", "csrc/envelope.c", "csrc/rotation.c", "csrc/rsa.c", "csrc/components.c",
        "csrc/card.c", "csrc/pinverify.c", "csrc/dukpt.c",
        "csrc/tr34.c", "csrc/tr34_pki.c", "csrc/tr34_unwrap.c", "csrc/file.c", "csrc/signal.c",
        "csrc/sigv4.c", "csrc/pki.c",
      },
      incdirs = { "$(OPENSSL_INCDIR)", "csrc" },
      libdirs = { "$(OPENSSL_LIBDIR)" },
      libraries = { "crypto", "pthread" },
    },
    ["payhsm.http"] = {
      sources = { "csrc/http.c" },
      incdirs = { "$(MICROHTTPD_INCDIR)", "$(GNUTLS_INCDIR)", "csrc" },
      libdirs = { "$(MICROHTTPD_LIBDIR)", "$(GNUTLS_LIBDIR)" },
      libraries = { "microhttpd", "gnutls" },
    },
    ["payhsm.redis"] = {
      sources = { "csrc/redis.c" },
      incdirs = { "$(HIREDIS_INCDIR)", "csrc" },
      libdirs = { "$(HIREDIS_LIBDIR)" },
      libraries = { "hiredis" },
    },
    -- every lua/payhsm/**/*.lua (spec/rockspec_spec.lua checks that none is missing)
    ["payhsm"] = "lua/payhsm/init.lua",
    ["payhsm.cli"] = "lua/payhsm/cli.lua",
    ["payhsm.commands"] = "lua/payhsm/commands.lua",
    ["payhsm.cliutil"] = "lua/payhsm/cliutil.lua",
    ["payhsm.shapes"] = "lua/payhsm/shapes.lua",
    ["payhsm.apidoc"] = "lua/payhsm/apidoc.lua",
    ["payhsm.util"] = "lua/payhsm/util.lua",
    ["payhsm.compat"] = "lua/payhsm/compat.lua",
    ["payhsm.server"] = "lua/payhsm/server.lua",
    ["payhsm.http_client"] = "lua/payhsm/http_client.lua",
    ["payhsm.service"] = "lua/payhsm/service.lua",
    ["payhsm.cache"] = "lua/payhsm/cache.lua",
    ["payhsm.store.memory"] = "lua/payhsm/store/memory.lua",
    ["payhsm.store.sqlite"] = "lua/payhsm/store/sqlite.lua",
    ["payhsm.store.redis"] = "lua/payhsm/store/redis.lua",
    ["payhsm.gateway"] = "lua/payhsm/gateway/init.lua",
    ["payhsm.gateway.client"] = "lua/payhsm/gateway/client.lua",
    ["payhsm.gateway.transactions"] = "lua/payhsm/gateway/transactions.lua",
    ["payhsm.embed"] = "lua/payhsm/embed/init.lua",
    ["payhsm.embed.lighttpd"] = "lua/payhsm/embed/lighttpd.lua",
    ["payhsm.embed.nginx"] = "lua/payhsm/embed/nginx.lua",
    ["payhsm.pos.server"] = "lua/payhsm/pos/server.lua",
    ["payhsm.pos.device"] = "lua/payhsm/pos/device.lua",
    ["payhsm.pos.protocol"] = "lua/payhsm/pos/protocol.lua",
    ["payhsm.pos.gzip"] = "lua/payhsm/pos/gzip.lua",
    ["payhsm.pos.payments"] = "lua/payhsm/pos/payments.lua",
    ["payhsm.pos.attestation"] = "lua/payhsm/pos/attestation.lua",
    ["payhsm.mupk"] = "lua/payhsm/mupk/init.lua",
    ["payhsm.mupk.merchant"] = "lua/payhsm/mupk/merchant.lua",
    ["payhsm.mupk.webhook"] = "lua/payhsm/mupk/webhook.lua",
    ["payhsm.aws"] = "lua/payhsm/aws.lua",
    ["payhsm.aws.server"] = "lua/payhsm/aws/server.lua",
    ["payhsm.aws.control"] = "lua/payhsm/aws/control.lua",
    ["payhsm.aws.exchange"] = "lua/payhsm/aws/exchange.lua",
    ["payhsm.aws.keystore"] = "lua/payhsm/aws/keystore.lua",
    ["payhsm.aws.rules"] = "lua/payhsm/aws/rules.lua",
    ["payhsm.aws.shapes"] = "lua/payhsm/aws/shapes.lua",
    ["payhsm.aws.sigv4"] = "lua/payhsm/aws/sigv4.lua",
    ["payhsm.aws.errors"] = "lua/payhsm/aws/errors.lua",
    ["payhsm.aws.data"] = "lua/payhsm/aws/data.lua",
    ["payhsm.aws.data_shapes"] = "lua/payhsm/aws/data_shapes.lua",
    ["payhsm.aws.data_cipher"] = "lua/payhsm/aws/data_cipher.lua",
    ["payhsm.aws.data_card"] = "lua/payhsm/aws/data_card.lua",
    ["payhsm.aws.data_pin"] = "lua/payhsm/aws/data_pin.lua",
    ["payhsm.aws.data_mac"] = "lua/payhsm/aws/data_mac.lua",
    ["payhsm.aws.data_emv"] = "lua/payhsm/aws/data_emv.lua",
    ["payhsm.mupk.expiry"] = "lua/payhsm/mupk/expiry.lua",
  },
  install = { bin = { "bin/payhsm" } },
}

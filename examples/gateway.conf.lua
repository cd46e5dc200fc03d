-- A gateway to try by hand: plain HTTP on loopback, demo zone master keys, sqlite store.
--   bin/payhsm serve gateway --config examples/gateway.conf.lua
-- For Fiserv's security (TLS 1.2+ with client certificates) add
--   tls = { cert = "server.pem", key = "server.key", client_ca = "ca.pem" }
-- The key values below are public demo values: never use them for anything real.
return {
  listen = "127.0.0.1:8443",
  basic_auth = { integrator = "pa55word" },
  store = { backend = "sqlite", path = "/tmp/payhsm-gateway-demo.db" },
  master_keys = {
    { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256",
      hex = "8F0E1C2D3B4A59687766554433221100F0E1D2C3B4A5968778695A4B3C2D1E0F" },
    { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256",
      hex = "0F1E2D3C4B5A69788796A5B4C3D2E1F000112233445566778899AABBCCDDEEFF" },
  },
  min_import_interval = 0,
  -- The local master key that wraps every key in the store: an operator secret the
  -- integrator does not hold (without it the LMK is derived from a zone master key, which
  -- the integrator shares, and the gateway warns at start-up). In production its value
  -- comes from your key ceremony; this one is a public demo value.
  storage_key = { algorithm = "AES_256",
    hex = "6761746577617920646D656F206C6D6B206E6F7420666F72207265616C207573" },
  -- The gateway's own PAN and PIN keys are generated at random on the first start and kept in
  -- the store under the LMK; gateway_keys = { pan = {...}, pin = {...} } configures them instead.
}

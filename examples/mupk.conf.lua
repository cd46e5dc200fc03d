-- A multi-use public key service to try by hand: plain HTTP on loopback, sqlite store.
--   bin/payhsm serve mupk --config examples/mupk.conf.lua
--   curl -s -u shop:demo-password -X POST localhost:8444/security/v1/keys/generate \
--        -d '{"merchantDetails":{"merchantId":"123456789012345"}}'
-- Every endpoint needs HTTP Basic (basic_auth) or, with
--   tls = { cert = "pki/server.pem", key = "pki/server.key", client_ca = "pki/ca.pem" }
-- a client certificate from that CA (mutual TLS); auth = "none" turns both off, for local
-- experiments only (the service logs a warning).
-- The storage key and the password below are public demo values: never use them for anything real.
return {
  listen = "127.0.0.1:8444",
  basic_auth = { shop = "demo-password" },
  generate_rate = { per_minute = 10 },     -- key generations per merchant and minute (429 beyond)
  cache_size = 1024,                       -- unwrapped private keys kept in memory (at most 2x)
  store = { backend = "sqlite", path = "/tmp/payhsm-mupk-demo.db" },
  storage_key = { algorithm = "AES_256",
    hex = "6D75706B2D64656D6F2D6C6D6B2D6E6F742D666F722D7265616C2D7573652121" },
  key_lifetime = 20 * 86400,              -- Commerce Hub's example: 20 days
  webhook_url = "http://127.0.0.1:9000/webhooks/key-expiry",
  webhook_hours = { 47, 44, 41 },          -- any order (sorted); positive, distinct
  -- webhook_cafile = "/etc/ssl/certs/ca-certificates.crt",  -- CA for https webhook URLs
  --                                        -- (certificate must name the URL's host; SNI sent)
  webhook_retry = 600,
  tick_interval = 1,
}

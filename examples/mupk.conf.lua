-- A multi-use public key service to try by hand: plain HTTP on loopback, sqlite store.
--   bin/payhsm serve mupk --config examples/mupk.conf.lua
--   curl -s -X POST localhost:8444/security/v1/keys/generate \
--        -d '{"merchantDetails":{"merchantId":"123456789012345"}}'
-- The storage key below is a public demo value: never use it for anything real.
return {
  listen = "127.0.0.1:8444",
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

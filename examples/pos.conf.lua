-- A POS key server to try by hand (viopay's POS key guide): plain HTTP on loopback,
-- sqlite store, one demo device and the built-in test issuer.
--   bin/payhsm serve pos --config examples/pos.conf.lua
-- With the test PKI (examples/make-test-pki.sh examples/pki) add, paths relative to this file:
--   tls = { cert = "pki/server.pem", key = "pki/server.key", client_ca = "pki/ca.pem" }
-- The key values below are public demo values: never use them for anything real.
return {
  listen = "127.0.0.1:8445",
  store = { backend = "sqlite", path = "/tmp/payhsm-pos-demo.db" },
  storage_key = { algorithm = "AES_256",
    hex = "706F732D64656D6F2D6C6D6B2D6E6F742D666F722D7265616C2D757365212121" },
  -- a device provisioned at the factory: its zone master key (AES-256, wraps the key
  -- sets it receives) and its attestation key (HMAC-SHA256, signs its attestations)
  devices = {
    { device_id = "POS-0000D3E0",
      zmk = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
      attestation_key = "A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF" },
  },
  key_set_lifetime = 7 * 86400,   -- a device's key set lasts a week
  renew_before_seconds = 86400,   -- and is renewed in its last day
  -- X-Signature: "body" is viopay's guide ("HMAC signs the envelope body"); "bound" also signs
  -- method, path, device, key set, X-Timestamp and X-Nonce (closes replays: docs/pos-activation.md)
  request_signature = "body",
  pan_key = "msk",                -- card.encrypted_pan under the MSK (the guide's step 4); "tdk": legacy
}

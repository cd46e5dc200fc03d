-- AWS Payment Cryptography to try by hand: plain HTTP on loopback, sqlite store (docs/aws.md).
--   bin/payhsm serve aws --config examples/aws.conf.lua
--   AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY \
--     aws payment-cryptography --endpoint-url http://127.0.0.1:9000 --region us-east-1 list-keys
-- The credentials are AWS's documentation example and the storage key a public demo value:
-- never use them for anything real.
return {
  listen = "127.0.0.1:9000",
  region = "us-east-1",
  account = "111122223333",
  credentials = { AKIDEXAMPLE = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" },
  store = { backend = "sqlite", path = "/tmp/payhsm-aws-demo.db" },
  storage_key = { algorithm = "AES_256",
    hex = "6177732D64656D6F2D6C6D6B2D6E6F742D666F722D7265616C2D757365212121" },
}

--- TranslateKeyMaterial of AWS Payment Cryptography's data plane: a TR-31 key block
-- (ANSI X9.143-2022) received under the key an ECDH agreement derives
-- (IncomingKeyMaterial.DiffieHellmanTr31KeyBlock: the service's ECC key pair, the other
-- party's certificate under an imported root, the KDF and shared information) is opened and
-- wrapped again, with its attributes, under a key-encryption key of the service
-- (OutgoingKeyMaterial.Tr31KeyBlock: TR31_K0 or TR31_K1 with Wrap). The key itself never
-- touches the store.
local hsm = require "payhsm"
local data = require "payhsm.aws.data"
local exchange = require "payhsm.aws.exchange"

local M = {}

local KEK = { "TR31_K0_KEY_ENCRYPTION_KEY", "TR31_K1_KEY_BLOCK_PROTECTION_KEY" }

--- TranslateKeyMaterial: IncomingKeyMaterial.DiffieHellmanTr31KeyBlock's block, opened under the ECDH-derived key, as a TR-31 block under OutgoingKeyMaterial.Tr31KeyBlock's KEK (version D under an AES KEK, B under TDES), with its KCV (KeyCheckValueAlgorithm, or the key's default).
function M.TranslateKeyMaterial(svc, input)
  local d = input.IncomingKeyMaterial.DiffieHellmanTr31KeyBlock
  local o = input.OutgoingKeyMaterial.Tr31KeyBlock
  if not d then data.invalid("IncomingKeyMaterial must be a DiffieHellmanTr31KeyBlock") end
  if not o then data.invalid("OutgoingKeyMaterial must be a Tr31KeyBlock") end
  local kbpk = exchange.ecdh_kbpk(svc, d)
  local key, header = hsm.tr31.unwrap(kbpk, d.WrappedKeyBlock)
  kbpk:close()
  if not key then
    data.invalid("WrappedKeyBlock does not unwrap under the ECDH-derived key: " .. tostring(header):gsub("^[%w%._]+: ", ""))
  end
  local _, kek = data.key(svc, o.WrappingKeyIdentifier, KEK, "Wrap", "the wrapping key")
  local block, msg = hsm.tr31.wrap(kek, key, { version = kek.algorithm:match("^AES") and "D" or "B" })
  if not block then
    key:close()
    data.invalid("The key cannot be wrapped under the wrapping key: " .. tostring(msg):gsub("^[%w%._]+: ", ""))
  end
  local kcv_alg = require("payhsm.aws.control").kcv_algorithm(key.algorithm, input.KeyCheckValueAlgorithm)
  local kcv = hsm.kcv(key, kcv_alg)
  key:close()
  return { WrappedKey = { WrappedKeyMaterial = block, KeyCheckValue = kcv, WrappedKeyMaterialFormat = "TR31_KEY_BLOCK" } }
end

return M

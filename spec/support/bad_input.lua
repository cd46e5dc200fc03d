--- The bad-input table: per module, every class of bad input tried, the call
-- made and the exact result. spec/bad_input_spec.lua walks it; tools/bad_input_table.lua
-- prints it as Markdown (docs/bad-input.md).
--
-- A row is {module, input, call, code} or, for the gateway, {module, input, call, status,
-- code}. `call` is a Lua expression evaluated in the environment M.env() returns (the
-- fixtures: keys with recognisable values, valid blocks, envelopes, gateway helpers).
-- Library rows expect `nil, message, code` (or `false, message, code` from a
-- verification); gateway rows expect the HTTP status and the body's error.code. No row
-- may raise: misuse (wrong argument types, unknown algorithm names) raises by design and
-- is not in this table. The codes were read from the functions, not written from the
-- documentation (docs/keys-and-crypto.md, "Error codes", explains them).
local M = {}

M.rows = {
  -- ---- key --------------------------------------------------------------------------
  { "key", "bad hex (non-hex character)", [[hsm.key.import("TDES_2KEY", "ZZ" .. TDES:sub(3))]], "BAD_HEX" },
  { "key", "odd length hex", [[hsm.key.import("AES_128", AES128:sub(2))]], "BAD_HEX" },
  { "key", "empty hex", [[hsm.key.import("AES_128", "")]], "KEY_LENGTH" },
  { "key", "wrong key length (8 bytes for TDES_2KEY)", [[hsm.key.import("TDES_2KEY", TDES:sub(1, 16))]], "KEY_LENGTH" },
  { "key", "wrong key length (16 bytes for AES_256)", [[hsm.key.import("AES_256", AES128)]], "KEY_LENGTH" },
  { "key", "wrong key length (24 bytes for AES_128)", [[hsm.key.import("AES_128", TDES3)]], "KEY_LENGTH" },
  { "key", "HMAC key longer than 256 bytes", [[hsm.key.import("HMAC_SHA256", HMAC .. ("00"):rep(257))]], "BAD_LENGTH" },
  { "key", "components: only one", [[hsm.key.from_components("TDES_2KEY", { TDES })]], "KEY_COMPONENTS" },
  { "key", "components: one of the wrong length", [[hsm.key.from_components("TDES_2KEY", { TDES, AES128:sub(1, 16) })]], "KEY_LENGTH" },
  { "key", "components: bad hex", [[hsm.key.from_components("TDES_2KEY", { TDES, "ZZ" .. TDES:sub(3) })]], "BAD_HEX" },
  { "key", "derive from a KDK with the wrong usage", [[hsm.key.derive(k.aes_d0, "AES_256", "label", "ctx")]], "KEY_USAGE" },

  -- ---- kcv --------------------------------------------------------------------------
  -- a check value asked of the wrong key type is misuse: it raises (no data is involved)
  { "kcv", "CMAC check value of an HMAC key (wrong key type)", [[hsm.kcv(k.hmac, "CMAC")]],
    raises = "CMAC check values need a TDES or AES key" },
  { "kcv", "ANSI X9.24 check value of an HMAC key", [[hsm.kcv(k.hmac, "ANSI_X9_24")]],
    raises = "ANSI_X9_24 check values need a TDES or AES key" },
  { "kcv", "HMAC check value of an AES key", [[hsm.kcv(k.aes_d0, "HMAC")]], raises = "HMAC check values need an HMAC key" },
  { "kcv", "unknown check value algorithm", [[hsm.kcv(k.aes_d0, "LUHN")]], raises = "unknown KCV algorithm 'LUHN'" },

  -- ---- cipher -----------------------------------------------------------------------
  { "cipher", "bad hex data", [[hsm.cipher.encrypt(k.dek, "ECB", ("ZZ"):rep(16))]], "BAD_HEX" },
  { "cipher", "odd length hex data", [[hsm.cipher.encrypt(k.dek, "ECB", ("0"):rep(31))]], "BAD_HEX" },
  { "cipher", "data not whole blocks", [[hsm.cipher.encrypt(k.dek, "ECB", ("00"):rep(15))]], "BAD_LENGTH" },
  { "cipher", "a segment size the key's cipher lacks (CFB64 with AES)", [[hsm.cipher.encrypt(k.dek, "CFB64", "00")]], "KEY_TYPE" },
  { "cipher", "empty data", [[hsm.cipher.decrypt(k.dek, "CBC", "")]], "BAD_LENGTH" },
  { "cipher", "IV not one block (8 bytes for AES)", [[hsm.cipher.encrypt(k.dek, "CBC", ("00"):rep(16), ("00"):rep(8))]], "IV_LENGTH" },
  { "cipher", "bad hex IV", [[hsm.cipher.encrypt(k.dek, "CBC", ("00"):rep(16), ("ZZ"):rep(16))]], "BAD_HEX" },
  { "cipher", "wrong key type (HMAC key)", [[hsm.cipher.encrypt(k.hmac_any, "ECB", ("00"):rep(16))]], "KEY_TYPE" },
  { "cipher", "wrong key usage (MAC key M3)", [[hsm.cipher.encrypt(k.m3, "ECB", ("00"):rep(8))]], "KEY_USAGE" },
  { "cipher", "wrong mode of use (decrypt-only key encrypting)", [[hsm.cipher.encrypt(k.dek_decrypt_only, "ECB", ("00"):rep(16))]], "KEY_USAGE" },
  { "cipher", "wrong mode of use (encrypt-only key decrypting)", [[hsm.cipher.decrypt(k.dek_encrypt_only, "ECB", ("00"):rep(16))]], "KEY_USAGE" },

  -- ---- mac --------------------------------------------------------------------------
  { "mac", "bad hex data", [[hsm.mac.generate(k.m3, "ISO9797_ALGORITHM3", "0G")]], "BAD_HEX" },
  { "mac", "odd length hex data", [[hsm.mac.generate(k.m3, "ISO9797_ALGORITHM3", "012")]], "BAD_HEX" },
  { "mac", "opts.length below 4 bytes", [[hsm.mac.generate(k.m3, "ISO9797_ALGORITHM3", "00", {length = 2})]],
    raises = "length must be between 4 and 8 bytes" },
  { "mac", "opts.length above the block", [[hsm.mac.generate(k.m3, "ISO9797_ALGORITHM3", "00", {length = 9})]],
    raises = "length must be between 4 and 8 bytes" },
  { "mac", "wrong key type (AES key for algorithm 3)", [[hsm.mac.generate(k.aes_m3, "ISO9797_ALGORITHM3", "00")]], "KEY_TYPE" },
  { "mac", "wrong key type (TDES key for HMAC)", [[hsm.mac.generate(k.tdes_any, "HMAC_SHA256", "00")]], "KEY_TYPE" },
  { "mac", "wrong key usage (CMAC key M6 for CBC-MAC)", [[hsm.mac.generate(k.cmac, "ISO9797_ALGORITHM1", "00")]], "KEY_USAGE" },
  { "mac", "wrong key usage (data key D0)", [[hsm.mac.generate(k.tdes_d0, "ISO9797_ALGORITHM3", "00")]], "KEY_USAGE" },
  { "mac", "wrong mode of use (verify-only key generating)", [[hsm.mac.generate(k.m3_verify_only, "ISO9797_ALGORITHM3", "00")]], "KEY_USAGE" },
  { "mac", "tampered MAC", [[hsm.mac.verify(k.m3, "ISO9797_ALGORITHM3", DATA, flip(MAC3))]], "MAC_MISMATCH" },
  { "mac", "tampered data", [[hsm.mac.verify(k.m3, "ISO9797_ALGORITHM3", flip(DATA), MAC3)]], "MAC_MISMATCH" },
  { "mac", "truncated MAC (3 bytes)", [[hsm.mac.verify(k.m3, "ISO9797_ALGORITHM3", DATA, MAC3:sub(1, 6))]], "MAC_LENGTH" },
  { "mac", "MAC longer than the algorithm's output", [[hsm.mac.verify(k.m3, "ISO9797_ALGORITHM3", DATA, MAC3 .. "00")]], "MAC_LENGTH" },
  { "mac", "MAC length disagreeing with opts.length", [[hsm.mac.verify(k.m3, "ISO9797_ALGORITHM3", DATA, MAC3, {length = 4})]], "MAC_LENGTH" },
  { "mac", "bad hex MAC", [[hsm.mac.verify(k.m3, "ISO9797_ALGORITHM3", DATA, ("ZZ"):rep(8))]], "BAD_HEX" },
  { "mac", "HMAC: tampered MAC", [[hsm.hmac_verify(k.hmac, "message", flip(hsm.hmac(k.hmac, "message")))]], "MAC_MISMATCH" },
  { "mac", "HMAC: bad hex MAC", [[hsm.hmac_verify(k.hmac, "message", ("ZZ"):rep(32))]], "BAD_HEX" },
  { "mac", "HMAC: wrong key type (AES key)", [[hsm.hmac(k.aes_any, "message")]], "KEY_TYPE" },

  -- ---- tr31 -------------------------------------------------------------------------
  { "tr31", "block shorter than a header", [[hsm.tr31.parse("D0016P0AE00")]], "TR31_LENGTH" },
  { "tr31", "length field not the block's length", [[hsm.tr31.parse(edit(BLOCK_D, 2, "9999"))]], "TR31_LENGTH" },
  { "tr31", "length field not digits", [[hsm.tr31.parse(edit(BLOCK_D, 2, "01X4"))]], "TR31_LENGTH" },
  { "tr31", "truncated block", [[hsm.tr31.parse(BLOCK_D:sub(1, -3))]], "TR31_LENGTH" },
  { "tr31", "unknown version letter", [[hsm.tr31.parse(edit(BLOCK_D, 1, "E"))]], "TR31_VERSION" },
  { "tr31", "unknown key usage", [[hsm.tr31.parse(edit(BLOCK_D, 6, "Q9"))]], "TR31_USAGE" },
  { "tr31", "unknown algorithm letter", [[hsm.tr31.parse(edit(BLOCK_D, 8, "Z"))]], "TR31_ALGORITHM" },
  { "tr31", "wrap: header algorithm not the key's (T for an AES key)", [[hsm.tr31.wrap(k.kbpk_aes, k.pek_aes, {algorithm = "T"})]], "TR31_ALGORITHM" },
  { "tr31", "unknown mode of use", [[hsm.tr31.parse(edit(BLOCK_D, 9, "Q"))]], "TR31_MODE" },
  { "tr31", "mode that makes no sense for the usage (P0 with G)", [[hsm.tr31.parse(edit(BLOCK_D, 9, "G"))]], "TR31_MODE" },
  { "tr31", "key version not alphanumeric", [[hsm.tr31.parse(edit(BLOCK_D, 10, "#!"))]], "TR31_KEY_VERSION" },
  { "tr31", "exportability not E, N or S", [[hsm.tr31.parse(edit(BLOCK_D, 12, "X"))]], "TR31_EXPORTABILITY" },
  { "tr31", "optional block count not digits", [[hsm.tr31.parse(edit(BLOCK_D, 13, "A1"))]], "TR31_FORMAT" },
  { "tr31", "non-printable header", [[hsm.tr31.parse(edit(BLOCK_D, 10, "\1"))]], "TR31_FORMAT" },
  { "tr31", "optional block length not hex", [[hsm.tr31.parse(edit(BLOCK_KS, 19, "ZZ"))]], "TR31_OPT_BLOCK" },
  { "tr31", "optional block longer than the header", [[hsm.tr31.parse(edit(BLOCK_KS, 19, "FF"))]], "TR31_OPT_BLOCK" },
  { "tr31", "tampered MAC", [[hsm.tr31.unwrap(k.kbpk_aes, flip(BLOCK_D))]], "TR31_MAC_MISMATCH" },
  { "tr31", "tampered key field", [[hsm.tr31.unwrap(k.kbpk_aes, edit(BLOCK_D, 40, BLOCK_D:sub(40, 40) == "0" and "1" or "0"))]], "TR31_MAC_MISMATCH" },
  { "tr31", "tampered header (usage P0 -> D0)", [[hsm.tr31.unwrap(k.kbpk_aes, edit(BLOCK_D, 6, "D0"))]], "TR31_MAC_MISMATCH" },
  { "tr31", "wrong KBPK", [[hsm.tr31.unwrap(k.kbpk_aes_other, BLOCK_D)]], "TR31_MAC_MISMATCH" },
  { "tr31", "AES KBPK for a version B block", [[hsm.tr31.unwrap(k.kbpk_aes, BLOCK_B)]], "TR31_KBPK_MISMATCH" },
  { "tr31", "TDES KBPK for a version D block", [[hsm.tr31.unwrap(k.kbpk_tdes, BLOCK_D)]], "TR31_KBPK_MISMATCH" },
  { "tr31", "KBPK with the wrong usage (P0)", [[hsm.tr31.unwrap(k.pek_aes, BLOCK_D)]], "KEY_USAGE" },
  { "tr31", "wrap: version D under a TDES KBPK", [[hsm.tr31.wrap(k.kbpk_tdes, k.pek_tdes, {version = "D"})]], "TR31_KBPK_MISMATCH" },
  { "tr31", "wrap: legacy version A without opts.legacy", [[hsm.tr31.wrap(k.kbpk_tdes, k.pek_tdes, {version = "A"})]], "TR31_LEGACY" },
  { "tr31", "wrap: key stronger than the KBPK", [[hsm.tr31.wrap(k.kbpk_tdes, k.aes_d0, {mode = "B"})]], "TR31_WEAK_KBPK" },
  { "tr31", "wrap: non-exportable key", [[hsm.tr31.wrap(k.kbpk_aes, k.pek_nonexport, {mode = "E"})]], "TR31_NOT_EXPORTABLE" },
  { "tr31", "wrap: header contradicting the key's usage", [[hsm.tr31.wrap(k.kbpk_aes, k.pek_aes, {usage = "D0"})]], "TR31_ATTRIBUTES" },
  { "tr31", "wrap: KBPK with the wrong usage (P0)", [[hsm.tr31.wrap(k.pek_aes, k.aes_d0, {mode = "B"})]], "KEY_USAGE" },

  -- ---- pin --------------------------------------------------------------------------
  { "pin", "PIN of 3 digits", [[hsm.pin.format("ISO_FORMAT_0", "123", PAN)]], "PIN_LENGTH" },
  { "pin", "PIN of 13 digits", [[hsm.pin.format("ISO_FORMAT_0", "1234567890123", PAN)]], "PIN_LENGTH" },
  { "pin", "PIN with a non-digit", [[hsm.pin.format("ISO_FORMAT_0", "12a4", PAN)]], "PIN_DIGITS" },
  { "pin", "PAN empty", [[hsm.pin.format("ISO_FORMAT_0", "1234", "")]], "PAN_LENGTH" },
  { "pin", "PAN too long (20 digits)", [[hsm.pin.format("ISO_FORMAT_0", "1234", "12345678901234567890")]], "PAN_LENGTH" },
  { "pin", "PAN missing (format 0)", [[hsm.pin.format("ISO_FORMAT_0", "1234")]], "PAN_LENGTH" },
  { "pin", "PAN with a non-digit", [[hsm.pin.format("ISO_FORMAT_0", "1234", "41111111111111X1")]], "PAN_DIGITS" },
  { "pin", "clear block with a wrong control nibble", [[hsm.pin.parse("ISO_FORMAT_0", "5" .. CLEAR0:sub(2), PAN)]], "PIN_FORMAT" },
  { "pin", "clear block: bad hex", [[hsm.pin.parse("ISO_FORMAT_0", ("ZZ"):rep(8), PAN)]], "BAD_HEX" },
  { "pin", "clear block of the wrong length", [[hsm.pin.parse("ISO_FORMAT_0", CLEAR0:sub(1, 14), PAN)]], "BAD_LENGTH" },
  { "pin", "decrypt with the wrong PAN", [[hsm.pin.decrypt(k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, "4000001234567899")]], "PIN_FORMAT" },
  { "pin", "decrypt with the wrong key", [[hsm.pin.decrypt(k.pek_tdes_other, "ISO_FORMAT_0", PINBLOCK0, PAN)]], "PIN_FORMAT" },
  { "pin", "decrypt as the wrong format", [[hsm.pin.decrypt(k.pek_tdes, "ISO_FORMAT_2", PINBLOCK0, PAN)]], "PIN_FORMAT" },
  { "pin", "encrypted block of the wrong length", [[hsm.pin.decrypt(k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0 .. "00", PAN)]], "BAD_LENGTH" },
  { "pin", "wrong key type (AES key, format 0)", [[hsm.pin.encrypt(k.pek_aes, "ISO_FORMAT_0", "1234", PAN)]], "KEY_TYPE" },
  { "pin", "wrong key type (TDES key, format 4)", [[hsm.pin.encrypt(k.pek_tdes, "ISO_FORMAT_4", "1234", PAN)]], "KEY_TYPE" },
  { "pin", "single DES key", [[hsm.pin.encrypt(k.des, "ISO_FORMAT_0", "1234", PAN)]], "KEY_TYPE" },
  { "pin", "wrong key usage (data key D0)", [[hsm.pin.encrypt(k.tdes_d0, "ISO_FORMAT_0", "1234", PAN)]], "KEY_USAGE" },
  { "pin", "translate: wrong PAN", [[hsm.pin.translate(k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, k.pek_aes, "ISO_FORMAT_4", "4000001234567899")]], "PIN_FORMAT" },
  { "pin", "translate: output key with the wrong usage", [[hsm.pin.translate(k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, k.aes_d0, "ISO_FORMAT_4", PAN)]], "KEY_USAGE" },
  { "pin", "translate: format 0 to format 1 (unbinds the PAN)", [[hsm.pin.translate(k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, k.pek_tdes, "ISO_FORMAT_1", PAN)]], "PIN_TRANSLATION" },
  { "pin", "translate: format 0 to format 2", [[hsm.pin.translate(k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, k.pek_tdes, "ISO_FORMAT_2", PAN)]], "PIN_TRANSLATION" },

  -- PIN verification values (pin.visa_pvv, pin.ibm3624_*, pin.verify, pin.generate_*)
  { "pin", "PVV: PVKI not 0-6", [[hsm.pin.visa_pvv(k.pvk_pvv, "1234", PAN, "7")]], "PIN_PVKI" },
  { "pin", "PVV: PAN of 11 digits", [[hsm.pin.visa_pvv(k.pvk_pvv, "1234", "41111111111", "1")]], "PAN_LENGTH" },
  { "pin", "PVV: PIN of 3 digits", [[hsm.pin.visa_pvv(k.pvk_pvv, "123", PAN, "1")]], "PIN_LENGTH" },
  { "pin", "PVV: PVK of usage V1 (IBM 3624)", [[hsm.pin.visa_pvv(k.pvk_ibm, "1234", PAN, "1")]], "KEY_USAGE" },
  { "pin", "PVV: AES PVK", [[hsm.pin.visa_pvv(k.aes_any, "1234", PAN, "1")]], "KEY_TYPE" },
  { "pin", "IBM 3624: decimalization table of 15 digits", [[hsm.pin.ibm3624_offset(k.pvk_ibm, "1234", IBM{decimalization_table = "012345678901234"})]], "PIN_DECIMALIZATION_TABLE" },
  { "pin", "IBM 3624: decimalization table with a letter", [[hsm.pin.ibm3624_natural_pin(k.pvk_ibm, IBM{decimalization_table = "0123456789ABCDEF"})]], "PIN_DECIMALIZATION_TABLE" },
  { "pin", "IBM 3624: validation data of 17 digits", [[hsm.pin.ibm3624_offset(k.pvk_ibm, "1234", IBM{validation_data = PAN .. "0"})]], "PIN_VALIDATION_DATA" },
  { "pin", "IBM 3624: validation data not hex", [[hsm.pin.ibm3624_offset(k.pvk_ibm, "1234", IBM{validation_data = "12G4"})]], "BAD_HEX" },
  { "pin", "IBM 3624: pad character not one hex digit", [[hsm.pin.ibm3624_offset(k.pvk_ibm, "1234", IBM{pad_char = "X"})]], "PIN_PAD_CHAR" },
  { "pin", "IBM 3624: natural PIN length 13", [[hsm.pin.ibm3624_natural_pin(k.pvk_ibm, IBM{pin_length = 13})]], "PIN_LENGTH" },
  { "pin", "IBM 3624: PVK of usage V2 (Visa PVV)", [[hsm.pin.ibm3624_offset(k.pvk_pvv, "1234", IBM{})]], "KEY_USAGE" },
  { "pin", "verify: wrong PIN (PVV of another PIN)", [[hsm.pin.verify(k.pvk_pvv, k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, PAN, {method = "VISA_PVV", pvki = "1", pvv = other_digits(PVV)})]], "VERIFICATION_FAILED" },
  { "pin", "verify: wrong IBM 3624 offset", [[hsm.pin.verify(k.pvk_ibm, k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, PAN, IBM{method = "IBM3624", offset = "0000"})]], "VERIFICATION_FAILED" },
  { "pin", "verify: PVV of 3 digits", [[hsm.pin.verify(k.pvk_pvv, k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, PAN, {method = "VISA_PVV", pvki = "1", pvv = "123"})]], "PIN_PVV" },
  { "pin", "verify: offset with a letter", [[hsm.pin.verify(k.pvk_ibm, k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, PAN, IBM{method = "IBM3624", offset = "12A4"})]], "PIN_OFFSET" },
  { "pin", "verify: block under the wrong PEK", [[hsm.pin.verify(k.pvk_pvv, k.pek_tdes_other, "ISO_FORMAT_0", PINBLOCK0, PAN, {method = "VISA_PVV", pvki = "1", pvv = PVV})]], "PIN_FORMAT" },
  { "pin", "verify: block not hex", [[hsm.pin.verify(k.pvk_pvv, k.pek_tdes, "ISO_FORMAT_0", ("ZZ"):rep(8), PAN, {method = "VISA_PVV", pvki = "1", pvv = PVV})]], "BAD_HEX" },
  { "pin", "verify: PEK of usage D0", [[hsm.pin.verify(k.pvk_pvv, k.tdes_d0, "ISO_FORMAT_0", PINBLOCK0, PAN, {method = "VISA_PVV", pvki = "1", pvv = PVV})]], "KEY_USAGE" },
  { "pin", "generate_pvv: PVKI not a digit", [[hsm.pin.generate_pvv(k.pvk_pvv, k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, PAN, "A")]], "PIN_PVKI" },
  { "pin", "generate_offset: block of the wrong length", [[hsm.pin.generate_offset(k.pvk_ibm, k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0 .. "00", PAN, IBM{})]], "BAD_LENGTH" },
  { "pin", "verify: unknown method", [[hsm.pin.verify(k.pvk_pvv, k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, PAN, {method = "PVV", pvki = "1", pvv = PVV})]],
    raises = "unknown verification method 'PVV'" },
  { "pin", "verify: misspelt option", [[hsm.pin.verify(k.pvk_pvv, k.pek_tdes, "ISO_FORMAT_0", PINBLOCK0, PAN, {method = "VISA_PVV", pvki = "1", ppv = PVV})]],
    raises = "pin.verify: unknown option 'ppv'" },

  -- ---- card -------------------------------------------------------------------------
  { "card", "CVV: wrong value", [[hsm.card.verify_cvv(k.cvk, PAN, "2512", "101", other_digits(CVV))]], "VERIFICATION_FAILED" },
  { "card", "CVV: value of 2 digits", [[hsm.card.verify_cvv(k.cvk, PAN, "2512", "101", "12")]], "CARD_VALUE" },
  { "card", "CVV: PAN of 11 digits", [[hsm.card.cvv(k.cvk, "41111111111", "2512", "101")]], "PAN_LENGTH" },
  { "card", "CVV: PAN with a letter", [[hsm.card.cvv(k.cvk, "411111111111111X", "2512", "101")]], "PAN_DIGITS" },
  { "card", "CVV: expiry of 3 digits", [[hsm.card.cvv(k.cvk, PAN, "251", "101")]], "CARD_EXPIRY" },
  { "card", "CVV: expiry with a letter", [[hsm.card.cvv(k.cvk, PAN, "25A2", "101")]], "CARD_EXPIRY" },
  { "card", "CVV: service code of 4 digits", [[hsm.card.cvv(k.cvk, PAN, "2512", "1011")]], "CARD_SERVICE_CODE" },
  { "card", "CVV: CVK of usage P0", [[hsm.card.cvv(k.pek_tdes, PAN, "2512", "101")]], "KEY_USAGE" },
  { "card", "CVV: generate-only CVK verifying", [[hsm.card.verify_cvv(k.cvk_generate_only, PAN, "2512", "101", CVV)]], "KEY_USAGE" },
  { "card", "CVV: TDES_3KEY CVK", [[hsm.card.cvv(hsm.key.import("TDES_3KEY", TDES3), PAN, "2512", "101")]], "KEY_TYPE" },
  { "card", "dCVV: ATC of 3 hex digits", [[hsm.card.dcvv(k.icc_dn, DCVV{atc = "001"})]], "CARD_ATC" },
  { "card", "dCVV: ATC not hex", [[hsm.card.dcvv(k.icc_dn, DCVV{atc = "00G1"})]], "BAD_HEX" },
  { "card", "dCVV: PSN of 1 digit", [[hsm.card.dcvv(k.icc_dn, DCVV{psn = "0"})]], "CARD_PSN" },
  { "card", "dCVV: wrong value", [[hsm.card.verify_dcvv(k.icc_dn, DCVV{}, other_digits(hsm.card.dcvv(k.icc_dn, DCVV{})))]], "VERIFICATION_FAILED" },
  { "card", "dCVV: key of usage M3", [[hsm.card.dcvv(k.m3, DCVV{})]], "KEY_USAGE" },
  { "card", "CVC3: UN of 2 bytes", [[hsm.card.cvc3(k.icc_dn, CVC3{un = "0899"})]], "CARD_UN" },
  { "card", "CVC3: ATC of 1 byte", [[hsm.card.cvc3(k.icc_dn, CVC3{atc = "01"})]], "CARD_ATC" },
  { "card", "CVC3: empty track data", [[hsm.card.cvc3(k.icc_dn, CVC3{track_data = ""})]], "CARD_TRACK_DATA" },
  { "card", "CVC3: track data not whole bytes", [[hsm.card.cvc3(k.icc_dn, CVC3{track_data = "123"})]], "BAD_HEX" },
  { "card", "CVC3: value of 6 digits", [[hsm.card.verify_cvc3(k.icc_dn, CVC3{}, "123456")]], "CARD_VALUE" },
  { "card", "CVC3: wrong value", [[hsm.card.verify_cvc3(k.icc_dn, CVC3{}, other_digits(hsm.card.cvc3(k.icc_dn, CVC3{})))]], "VERIFICATION_FAILED" },
  { "card", "dCVV: misspelt option", [[hsm.card.dcvv(k.icc_dn, DCVV{expiry_date = "2512"})]],
    raises = "card.dcvv: unknown option 'expiry_date'" },
  { "card", "CVC3: misspelt option", [[hsm.card.cvc3(k.icc_dn, CVC3{unpredictable_number = "00000899"})]],
    raises = "card.cvc3: unknown option 'unpredictable_number'" },

  -- ---- emv --------------------------------------------------------------------------
  { "emv", "PAN sequence number not 2 digits", [[hsm.emv.derive_icc_master_key(k.imk, PAN, "1")]], "EMV_PSN" },
  { "emv", "PAN with a non-digit", [[hsm.emv.derive_icc_master_key(k.imk, "41111111111111X1")]], "PAN_DIGITS" },
  { "emv", "PAN too long (20 digits)", [[hsm.emv.derive_icc_master_key(k.imk, "12345678901234567890")]], "PAN_LENGTH" },
  { "emv", "wrong key type (AES IMK)", [[hsm.emv.derive_icc_master_key(k.aes_any, PAN)]], "KEY_TYPE" },
  { "emv", "wrong key usage (M3 IMK)", [[hsm.emv.derive_icc_master_key(k.m3, PAN)]], "KEY_USAGE" },
  { "emv", "ATC missing", [[hsm.emv.derive_session_key(k.icc_mk, "EMV_COMMON", {})]], "EMV_ATC" },
  { "emv", "ATC not 2 bytes", [[hsm.emv.derive_session_key(k.icc_mk, "EMV_COMMON", {atc = "1C"})]], "EMV_ATC" },
  { "emv", "ATC bad hex", [[hsm.emv.derive_session_key(k.icc_mk, "EMV_COMMON", {atc = "00G1"})]], "BAD_HEX" },
  { "emv", "unpredictable number missing (Mastercard)", [[hsm.emv.derive_session_key(k.icc_mk, "MASTERCARD", {atc = "0001"})]], "EMV_UN" },
  { "emv", "unpredictable number not 4 bytes", [[hsm.emv.derive_session_key(k.icc_mk, "MASTERCARD", {atc = "0001", un = "1234"})]], "EMV_UN" },
  { "emv", "EMV2000 tree too small for the ATC", [[hsm.emv.derive_session_key(k.icc_mk, "EMV2000", {atc = "0001", height = 4, branch_factor = 2})]], "EMV_TREE" },
  { "emv", "EMV2000 IV not 16 bytes", [[hsm.emv.derive_session_key(k.icc_mk, "EMV2000", {atc = "0001", iv = "00"})]], "EMV_TREE" },
  { "emv", "transaction data bad hex", [[hsm.emv.generate_arqc(k.imk, {pan = PAN, atc = "0001", data = "ZZ"})]], "BAD_HEX" },
  { "emv", "data said padded (padding 0) but not whole blocks", [[hsm.emv.generate_arqc(k.imk, {pan = PAN, atc = "0001", data = "0102", padding = 0})]], "BAD_LENGTH" },
  { "emv", "ARQC under a secure messaging IMK (usage E1; cryptograms take E0)", [[hsm.emv.generate_arqc(k.imk_smc, {pan = PAN, atc = "0001", data = EMV_DATA})]], "KEY_USAGE" },
  { "emv", "ARPC under a dynamic numbers card key (usage E4)", [[hsm.emv.compute_arpc(k.icc_dn, {arqc = ARQC, arc = "3030"})]], "KEY_USAGE" },
  { "card", "dCVV under a secure messaging card key (usage E2)", [[hsm.card.dcvv(k.icc_smi, DCVV{})]], "KEY_USAGE" },
  { "emv", "ARQC not 8 bytes", [[hsm.emv.verify_arqc(k.imk, {pan = PAN, atc = "0001", data = EMV_DATA, arqc = "1234"})]], "ARQC_LENGTH" },
  { "emv", "tampered ARQC", [[hsm.emv.verify_arqc(k.imk, {pan = PAN, atc = "0001", data = EMV_DATA, arqc = flip(ARQC)})]], "ARQC_MISMATCH" },
  { "emv", "replayed ARQC (other ATC)", [[hsm.emv.verify_arqc(k.imk, {pan = PAN, atc = "0002", data = EMV_DATA, arqc = ARQC})]], "ARQC_MISMATCH" },
  { "emv", "wrong PAN", [[hsm.emv.verify_arqc(k.imk, {pan = "4000001234567899", atc = "0001", data = EMV_DATA, arqc = ARQC})]], "ARQC_MISMATCH" },
  { "emv", "ARPC method 1: ARC not 2 bytes", [[hsm.emv.generate_arpc(k.imk, {pan = PAN, atc = "0001", data = "", arqc = ARQC, arc = "1"})]], "EMV_ARC" },
  { "emv", "ARPC method 2: CSU not 4 bytes", [[hsm.emv.generate_arpc(k.imk, {pan = PAN, atc = "0001", data = "", arqc = ARQC, method = 2, csu = "00"})]], "EMV_CSU" },
  { "emv", "compute_arpc: ARQC not 8 bytes", [[hsm.emv.compute_arpc(k.session_e0, {arqc = "1234", arc = "0000"})]], "ARQC_LENGTH" },
  { "emv", "secure messaging MAC: command bad hex", [[hsm.emv.sm_mac(k.session_e0, "84240000ZZ")]], "BAD_HEX" },
  { "emv", "secure messaging MAC: command over 1024 bytes", [[hsm.emv.sm_mac(k.session_e0, ("00"):rep(1025))]], "BAD_LENGTH" },
  { "emv", "secure messaging MAC: wrong key type (AES)", [[hsm.emv.sm_mac(k.aes_any, "8424000008")]], "KEY_TYPE" },
  { "emv", "secure messaging MAC: SK-SMC (usage E1) used for integrity", [[hsm.emv.sm_mac(k.sk_smc, "8424000008")]], "KEY_USAGE" },
  { "emv", "secure messaging encrypt: SK-SMI (usage E2) used for confidentiality", [[hsm.emv.sm_encrypt(k.sk_smi, "249999FFFFFFFFFF")]], "KEY_USAGE" },
  { "emv", "secure messaging encrypt: empty MASTERCARD data", [[hsm.emv.sm_encrypt(k.sk_smc, "", {type = "MASTERCARD"})]], "BAD_LENGTH" },
  { "emv", "secure messaging encrypt: VISA data over 255 bytes", [[hsm.emv.sm_encrypt(k.sk_smc, ("00"):rep(256), {type = "VISA"})]], "BAD_LENGTH" },
  { "emv", "secure messaging decrypt: not whole blocks", [[hsm.emv.sm_decrypt(k.sk_smc, ("00"):rep(12))]], "BAD_LENGTH" },
  { "emv", "secure messaging decrypt: padding broken (wrong key or type)", [[hsm.emv.sm_decrypt(k.sk_smc, SM_MC, {type = "EMV"})]], "SM_PADDING" },
  { "emv", "secure messaging session key: ARQC not 8 bytes", [[hsm.emv.derive_sm_session_key(k.icc_mk, "EMV_COMMON", {arqc = "1234"})]], "EMV_ARQC" },
  { "emv", "secure messaging session key: ATC not 2 bytes (VISA)", [[hsm.emv.derive_sm_session_key(k.icc_mk, "VISA", {atc = "1"})]], "EMV_ATC" },
  { "emv", "PIN change: new PIN block under another PEK", [[hsm.emv.pin_change(k.imk_smc, k.imk_smi, {pan = PAN, arqc = ARQC, pek = k.pek_tdes_other, pin_block = PINBLOCK0, message_data = "8424000210"})]], "PIN_FORMAT" },
  { "emv", "PIN change: new PIN block for another PAN", [[hsm.emv.pin_change(k.imk_smc, k.imk_smi, {pan = "4000001234567899", arqc = ARQC, pek = k.pek_tdes, pin_block = PINBLOCK0, message_data = "8424000210"})]], "PIN_FORMAT" },
  { "emv", "PIN change: IMK-SMC and IMK-SMI swapped", [[hsm.emv.pin_change(k.imk_smi, k.imk_smc, {pan = PAN, arqc = ARQC, pek = k.pek_tdes, pin_block = PINBLOCK0, message_data = "8424000210"})]], "KEY_USAGE" },
  { "emv", "PIN change: message data bad hex", [[hsm.emv.pin_change(k.imk_smc, k.imk_smi, {pan = PAN, arqc = ARQC, pek = k.pek_tdes, pin_block = PINBLOCK0, message_data = "84240002G0"})]], "BAD_HEX" },
  { "emv", "PIN change: PAN sequence number not 2 digits", [[hsm.emv.pin_change(k.imk_smc, k.imk_smi, {pan = PAN, psn = "1", arqc = ARQC, pek = k.pek_tdes, pin_block = PINBLOCK0, message_data = "8424000210"})]], "EMV_PSN" },

  -- ---- as2805 -----------------------------------------------------------------------
  { "as2805", "derive_pek: a STAN of 5 digits", [[hsm.as2805.derive_pek(k.pek_tdes, "00438", "000000000328")]], "AS2805_DATA" },
  { "as2805", "derive_pek: an amount with a letter", [[hsm.as2805.derive_pek(k.pek_tdes, "000438", "00000000032X")]], "AS2805_DATA" },
  { "as2805", "random key send not 8, 16 or 24 bytes", [[hsm.as2805.kek_validation_response(k.kek, ("00"):rep(4), M82C0)]], "AS2805_KRS_LENGTH" },
  { "as2805", "random key send bad hex", [[hsm.as2805.kek_validation_response(k.kek, ("ZZ"):rep(16), M82C0)]], "BAD_HEX" },
  { "as2805", "random key receive from another KEK", [[hsm.as2805.kek_validation_verify(k.kek, KRS, KRR_OTHER, M82C0)]], "AS2805_MISMATCH" },
  { "as2805", "tampered random key receive", [[hsm.as2805.kek_validation_verify(k.kek, KRS, flip(KRR), M82C0)]], "AS2805_MISMATCH" },
  { "as2805", "random key receive of another length", [[hsm.as2805.kek_validation_verify(k.kek, KRS, KRR:sub(1, 16), M82C0)]], "AS2805_MISMATCH" },
  { "as2805", "wrong key type (AES KEK)", [[hsm.as2805.kek_validation_response(k.aes_any, KRS, M82C0)]], "KEY_TYPE" },
  { "as2805", "wrong key usage (PIN key as KEK)", [[hsm.as2805.kek_validation_response(k.pek_tdes, KRS, M82C0)]], "KEY_USAGE" },

  -- ---- zka --------------------------------------------------------------------------
  { "zka", "random value not 16 bytes", [[hsm.zka.derive_session_key(k.zka_mk, "PAC", ("00"):rep(8))]], "ZKA_RND_LENGTH" },
  { "zka", "random value bad hex", [[hsm.zka.derive_session_key(k.zka_mk, "PAC", ("ZZ"):rep(16))]], "BAD_HEX" },
  { "zka", "wrong key type (HMAC master key)", [[hsm.zka.derive_session_key(k.hmac_any, "PAC", RND)]], "KEY_TYPE" },
  { "zka", "wrong key type (TDES_3KEY master key)", [[hsm.zka.derive_session_key(k.tdes3_any, "PAC", RND)]], "KEY_TYPE" },
  { "zka", "wrong key usage (PIN key as master key)", [[hsm.zka.derive_session_key(k.pek_tdes, "PAC", RND)]], "KEY_USAGE" },
  { "zka", "MAC with the PAC session key", [[hsm.zka.mac(k.zka_pac, "00")]], "KEY_USAGE" },
  { "zka", "MAC data bad hex", [[hsm.zka.mac(k.zka_mac, "ZZ")]], "BAD_HEX" },
  { "zka", "tampered MAC", [[hsm.zka.verify_mac(k.zka_mac, DATA, flip(ZKA_MAC))]], "MAC_MISMATCH" },
  { "zka", "tampered message", [[hsm.zka.verify_mac(k.zka_mac, flip(DATA), ZKA_MAC)]], "MAC_MISMATCH" },
  { "zka", "MAC of 3 bytes", [[hsm.zka.verify_mac(k.zka_mac, DATA, ZKA_MAC:sub(1, 6))]], "MAC_LENGTH" },

  -- ---- envelope ---------------------------------------------------------------------
  { "envelope", "JSON malformed", [[hsm.envelope.open(k.msk, ENVELOPE_JSON:sub(1, -2))]], "ENVELOPE_FORMAT" },
  { "envelope", "JSON not an object", [[hsm.envelope.open(k.msk, "[1,2]")]], "ENVELOPE_FORMAT" },
  { "envelope", "empty text", [[hsm.envelope.open(k.msk, "")]], "ENVELOPE_FORMAT" },
  { "envelope", "field missing (initialization_vector)", [[hsm.envelope.open(k.msk, envelope_with("initialization_vector", nil))]], "ENVELOPE_FORMAT" },
  { "envelope", "unknown format", [[hsm.envelope.open(k.msk, envelope_with("format", "TR31"))]], "ENVELOPE_FORMAT" },
  { "envelope", "mode not CBC", [[hsm.envelope.open(k.msk, envelope_with("mode", "ECB"))]], "ENVELOPE_FORMAT" },
  { "envelope", "ciphertext bad hex", [[hsm.envelope.open(k.msk, envelope_with("ciphertext", ("ZZ"):rep(16)))]], "BAD_HEX" },
  { "envelope", "ciphertext not whole blocks", [[hsm.envelope.open(k.msk, envelope_with("ciphertext", ("00"):rep(15)))]], "BAD_LENGTH" },
  { "envelope", "IV not 16 bytes", [[hsm.envelope.open(k.msk, envelope_with("initialization_vector", ("00"):rep(8)))]], "IV_LENGTH" },
  { "envelope", "chunked without chunk_size", [[hsm.envelope.open(k.msk, envelope_with("format", "TR31-DATA-CHUNKED"))]], "ENVELOPE_FORMAT" },
  { "envelope", "wrong MSK (padding breaks)", [[hsm.envelope.open(k.msk_other, ENVELOPE)]], "ENVELOPE_PADDING" },
  { "envelope", "altered last block", [[hsm.envelope.open(k.msk, envelope_with("ciphertext", flip(ENVELOPE.ciphertext)))]], "ENVELOPE_PADDING" },
  { "envelope", "signed envelope: tampered HMAC", [[hsm.envelope.open(k.msk, ENVELOPE_JSON, {mac_key = k.hmac, hmac = flip(ENVELOPE_HMAC)})]], "MAC_MISMATCH" },
  { "envelope", "signed envelope: altered text", [[hsm.envelope.open(k.msk, ENVELOPE_JSON .. " ", {mac_key = k.hmac, hmac = ENVELOPE_HMAC})]], "MAC_MISMATCH" },
  { "envelope", "wrong key type (TDES MSK)", [[hsm.envelope.open(k.tdes_d0, ENVELOPE)]], "KEY_TYPE" },
  { "envelope", "wrong key usage (PIN key as MSK)", [[hsm.envelope.open(k.pek_aes256, ENVELOPE)]], "KEY_USAGE" },

  -- ---- rotation ---------------------------------------------------------------------
  { "rotation", "snapshot that is not one", [[hsm.rotation.restore("hello")]], "ROTATION_SNAPSHOT" },
  { "rotation", "empty snapshot", [[hsm.rotation.restore("")]], "ROTATION_SNAPSHOT" },
  { "rotation", "truncated snapshot", [[hsm.rotation.restore(SNAPSHOT:sub(1, -12))]], "ROTATION_SNAPSHOT" },
  { "rotation", "versions not a permutation", [[hsm.rotation.restore((SNAPSHOT:gsub(" 2 ", " 1 ", 1)))]], "ROTATION_SNAPSHOT" },
  { "rotation", "field not hex", [[hsm.rotation.restore((SNAPSHOT:gsub("=%x%x", "=ZZ", 1)))]], "ROTATION_SNAPSHOT" },

  -- ---- rsa (csrc/rsa.c) ---------------------------------------------------------------
  { "rsa", "public key: DER that is not SubjectPublicKeyInfo", [[hsm.rsa.public("3003020100")]], "RSA_PUBLIC" },
  { "rsa", "public key: bad hex", [[hsm.rsa.public("30ZZ")]], "BAD_HEX" },
  { "rsa", "unwrap: wrapped key under another KEK", [[hsm.rsa.unwrap(k.aes_kek2, RSA_WRAPPED)]], "RSA_UNWRAP" },
  { "rsa", "unwrap: bad hex", [[hsm.rsa.unwrap(k.aes_kek, "XYZ")]], "BAD_HEX" },
  { "rsa", "kwp_verify: wrapped under another KEK", [[hsm.rsa.kwp_verify(k.aes_kek2, RSA_WRAPPED, "00")]], "KWP_UNWRAP" },
  { "rsa", "kwp_verify: unwraps to other data", [[hsm.rsa.kwp_verify(k.aes_kek, RSA_WRAPPED, "00")]], "KWP_MISMATCH" },
  { "rsa", "open: altered encrypted key", [[hsm.rsa.open(RSA_PRIV, sealed_with{encrypted_key = true})]], "RSA_DECRYPT" },
  { "rsa", "open: altered ciphertext", [[hsm.rsa.open(RSA_PRIV, sealed_with{ciphertext = true})]], "GCM_TAG" },
  { "rsa", "open: altered tag", [[hsm.rsa.open(RSA_PRIV, sealed_with{tag = true})]], "GCM_TAG" },
  { "rsa", "open: other associated data", [[hsm.rsa.open(RSA_PRIV, sealed_with{}, "other")]], "GCM_TAG" },
  { "rsa", "open: IV not 12 bytes", [[hsm.rsa.open(RSA_PRIV, sealed_with{iv = "00"})]], "BAD_LENGTH" },

  -- ---- ec (csrc/ec.c) -------------------------------------------------------------------
  { "ec", "public key: DER that is not SubjectPublicKeyInfo", [[hsm.ec.public("3003020100")]], "EC_PUBLIC" },
  { "ec", "public key: an RSA key", [[hsm.ec.public(RSA_PRIV:public_der())]], "EC_PUBLIC" },
  { "ec", "public key: bad hex", [[hsm.ec.public("30ZZ")]], "BAD_HEX" },
  { "ec", "unwrap: wrapped key under another KEK", [[hsm.ec.unwrap(k.aes_kek2, EC_WRAPPED)]], "EC_UNWRAP" },
  { "ec", "unwrap: a wrapped RSA key", [[hsm.ec.unwrap(k.aes_kek, RSA_WRAPPED)]], "EC_UNWRAP" },
  { "ec", "derive: keys on different curves", [[hsm.ec.derive(EC_P256, EC_P384, ECDH_OPTS)]], "EC_CURVE" },
  { "ec", "derive: shared_info bad hex", [[hsm.ec.derive(EC_P256, EC_P256, {kdf = "NIST_SP800", hash = "SHA_256", algorithm = "AES_128", shared_info = "0G"})]], "BAD_HEX" },
  { "ec", "derive: unknown option", [[hsm.ec.derive(EC_P256, EC_P256, {kdf = "NIST_SP800", hash = "SHA_256", algorithm = "AES_128", sharedinfo = "00"})]],
    raises = "unknown option 'sharedinfo'" },
  { "ec", "derive: unknown KDF", [[hsm.ec.derive(EC_P256, EC_P256, {kdf = "HKDF", hash = "SHA_256", algorithm = "AES_128"})]],
    raises = "unknown kdf 'HKDF'" },

  -- ---- dukpt (csrc/dukpt.c) -----------------------------------------------------------
  { "dukpt", "KSN of the wrong length (9 bytes, TDES BDK)", [[hsm.dukpt.initial_key(k.bdk_tdes, "FFFF9876543210E000")]], "DUKPT_KSN" },
  { "dukpt", "AES KSN (12 bytes) with a TDES BDK", [[hsm.dukpt.working_key(k.bdk_tdes, "123456789012345600000001", {purpose = "PIN"})]], "DUKPT_KSN" },
  { "dukpt", "TDES KSN (10 bytes) with an AES BDK", [[hsm.dukpt.working_key(k.bdk_aes, "FFFF9876543210E00001", {purpose = "PIN"})]], "DUKPT_KSN" },
  { "dukpt", "KSN bad hex", [[hsm.dukpt.working_key(k.bdk_tdes, "FFFF9876543210E0000Z", {purpose = "PIN"})]], "DUKPT_KSN" },
  { "dukpt", "counter 0 on the host", [[hsm.dukpt.working_key(k.bdk_tdes, "FFFF9876543210E00000", {purpose = "PIN"})]], "DUKPT_COUNTER" },
  { "dukpt", "TDES counter with 11 one bits", [[hsm.dukpt.working_key(k.bdk_tdes, "FFFF9876543210E007FF", {purpose = "PIN"})]], "DUKPT_COUNTER" },
  { "dukpt", "AES counter with 17 one bits", [[hsm.dukpt.working_key(k.bdk_aes, "12345678901234560001FFFF", {purpose = "MAC"})]], "DUKPT_COUNTER" },
  { "dukpt", "terminal resumed at a counter with 17 one bits", [[hsm.dukpt.terminal(k.dukpt_aik, "12345678901234560001FFFF")]], "DUKPT_COUNTER" },
  { "dukpt", "AES working key longer than the BDK", [[hsm.dukpt.working_key(k.bdk_aes, "123456789012345600000001", {purpose = "PIN", derivation_type = "AES_256"})]], "DUKPT_DERIVATION_TYPE" },
  { "dukpt", "AES working key from a TDES BDK", [[hsm.dukpt.working_key(k.bdk_tdes, "FFFF9876543210E00001", {purpose = "PIN", derivation_type = "AES_128"})]], "DUKPT_DERIVATION_TYPE" },
  { "dukpt", "BIDIRECTIONAL variant with a TDES BDK", [[hsm.dukpt.working_key(k.bdk_tdes, "FFFF9876543210E00001", {purpose = "DATA", variant = "BIDIRECTIONAL"})]], "DUKPT_VARIANT" },
  { "dukpt", "KEY_ENCRYPTION purpose with a TDES BDK", [[hsm.dukpt.working_key(k.bdk_tdes, "FFFF9876543210E00001", {purpose = "KEY_ENCRYPTION"})]], "DUKPT_PURPOSE" },
  { "dukpt", "wrong BDK algorithm (TDES_3KEY)", [[hsm.dukpt.initial_key(k.tdes3_any, "FFFF9876543210E00000")]], "KEY_TYPE" },
  { "dukpt", "wrong BDK usage (PIN key)", [[hsm.dukpt.working_key(k.pek_tdes, "FFFF9876543210E00001", {purpose = "PIN"})]], "KEY_USAGE" },
  { "dukpt", "BDK given to the terminal (usage B0, not B1)", [[hsm.dukpt.terminal(k.bdk_tdes, "FFFF9876543210E00000")]], "KEY_USAGE" },
  { "dukpt", "terminal past its last counter", [[hsm.dukpt.terminal(k.dukpt_ik, "FFFF9876543210FFF800"):next()]], "DUKPT_EXHAUSTED" },
  { "dukpt", "unknown purpose", [[hsm.dukpt.working_key(k.bdk_tdes, "FFFF9876543210E00001", {purpose = "CVV"})]],
    raises = "unknown DUKPT purpose 'CVV'" },
  { "dukpt", "misspelt option", [[hsm.dukpt.working_key(k.bdk_tdes, "FFFF9876543210E00001", {purpose = "PIN", varient = "REQUEST"})]],
    raises = "unknown option 'varient'" },
  -- ---- tr34 (csrc/tr34.c, tr34_unwrap.c): TR-34-2019 B.9 token and Annex B PKI ----------
  { "tr34", "unwrap: block not hex", [[hsm.tr34.unwrap(TR34.krd1_key, "ZZ", B9_OPTS())]], "BAD_HEX" },
  { "tr34", "unwrap: not a CMS SignedData", [[hsm.tr34.unwrap(TR34.krd1_key, "3003020101", B9_OPTS())]], "TR34_FORMAT" },
  { "tr34", "unwrap: bytes after the token", [[hsm.tr34.unwrap(TR34.krd1_key, B9 .. "00", B9_OPTS())]], "TR34_FORMAT" },
  { "tr34", "unwrap: signed by another KDH than kdh_cert", [[hsm.tr34.unwrap(TR34.krd1_key, B9, B9_OPTS{kdh_cert = TR34.ca_kdh_cert})]], "TR34_SIGNER" },
  { "tr34", "unwrap: altered signature", [[hsm.tr34.unwrap(TR34.krd1_key, flip_at(B9, #B9 - 2), B9_OPTS())]], "TR34_SIGNATURE" },
  { "tr34", "unwrap: altered envelope", [[hsm.tr34.unwrap(TR34.krd1_key, flip_at(B9, 200), B9_OPTS())]], "TR34_ENVELOPE" },
  { "tr34", "unwrap: another nonce (stale token)", [[hsm.tr34.unwrap(TR34.krd1_key, B9, B9_OPTS{nonce = "167EB0E72781E4940112233445566779"})]], "TR34_NONCE" },
  { "tr34", "unwrap: two-pass token, no nonce given", [[hsm.tr34.unwrap(TR34.krd1_key, B9, B9_OPTS({}, "nonce"))]], "TR34_NONCE" },
  { "tr34", "unwrap: nonce not hex", [[hsm.tr34.unwrap(TR34.krd1_key, B9, B9_OPTS{nonce = "XYZ"})]], "BAD_HEX" },
  { "tr34", "unwrap: KDH certificate refused (B.2.1.5 repeats its extensions)", [[hsm.tr34.unwrap(TR34.krd1_key, B9, B9_OPTS())]], "TR34_CERT_CHAIN" },
  { "tr34", "unwrap: kdh_cert not a certificate", [[hsm.tr34.unwrap(TR34.krd1_key, B9, B9_OPTS{kdh_cert = "garbage"})]], "TR34_CERT" },
  { "tr34", "unwrap: krd_key not an RSA private key", [[hsm.tr34.unwrap("garbage", B9, B9_OPTS())]], "TR34_KEY" },
  { "tr34", "wrap: HMAC key", [[hsm.tr34.wrap(k.hmac, KDH_OPTS())]], "KEY_TYPE" },
  { "tr34", "wrap: key not exportable (N)", [[hsm.tr34.wrap(hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", {exportability = "N"}), KDH_OPTS())]], "KEY_USAGE" },
  { "tr34", "wrap: KRD certificate not under ca_cert", [[hsm.tr34.wrap(k.tdes_d0, KDH_OPTS{ca_cert = TR34.ca_kdh_cert})]], "TR34_CERT_CHAIN" },
  { "tr34", "wrap: KRD certificate expired at time", [[hsm.tr34.wrap(k.tdes_d0, KDH_OPTS{time = 1700000000})]], "TR34_CERT_EXPIRED" },
  { "tr34", "wrap: krd_cert without key encipherment (a CA certificate)", [[hsm.tr34.wrap(k.tdes_d0, KDH_OPTS{krd_cert = TR34.ca_krd_cert})]], "TR34_CERT_USAGE" },
  { "tr34", "wrap: kdh_key not kdh_cert's", [[hsm.tr34.wrap(k.tdes_d0, KDH_OPTS{kdh_key = TR34.krd1_key})]], "TR34_KEY" },
  { "tr34", "wrap: nonce not hex", [[hsm.tr34.wrap(k.tdes_d0, KDH_OPTS{nonce = "0G"})]], "BAD_HEX" },
  { "tr34", "wrap: nonce of 2 bytes", [[hsm.tr34.wrap(k.tdes_d0, KDH_OPTS{nonce = "0011"})]], "BAD_LENGTH" },

  -- ---- mupk HTTP (status, error[1].code) ------------------------------------------------
  { "mupk HTTP", "generate: body not JSON", [[mupk_request("POST", "/security/v1/keys/generate", "{")]], 400, "400" },
  { "mupk HTTP", "generate: merchantId missing", [[mupk_request("POST", "/security/v1/keys/generate", json{merchantDetails = {}})]], 400, "1001" },
  { "mupk HTTP", "revoke: unknown keyId", [[mupk_request("POST", "/security/v1/keys/nope/revoke", json{merchantDetails = {merchantId = "M1"}})]], 404, "1010" },
  { "mupk HTTP", "revoke: twice", [[mupk_revoke_twice()]], 409, "1011" },
  { "mupk HTTP", "transaction: altered ciphertext", [[mupk_pay{tamper = "encryptionBlock"}]], 422, "1023" },
  { "mupk HTTP", "transaction: altered tag", [[mupk_pay{tamper = "authenticationTag"}]], 422, "1023" },
  { "mupk HTTP", "transaction: key expired", [[mupk_pay{after_expiry = true}]], 422, "1020" },
  { "mupk HTTP", "transaction: key revoked (the expiry response)", [[mupk_pay{revoked = true}]], 422, "1020" },
  { "mupk HTTP", "revoke: keyId over 64 characters", [[mupk_request("POST", "/security/v1/keys/" .. ("k"):rep(65) .. "/revoke", json{merchantDetails = {merchantId = "M1"}})]], 400, "1013" },
  { "mupk HTTP", "unknown path", [[mupk_request("GET", "/security/v1/nothing")]], 404, "404" },
  { "mupk HTTP", "generate: merchantDetails of the wrong JSON type (a string)", [[mupk_request("POST", "/security/v1/keys/generate", json{merchantDetails = "M1"})]], 400, "1001" },
  { "mupk HTTP", "generate: no credentials (basic_auth configured)", [[mupk_anonymous("POST", "/security/v1/keys/generate", json{merchantDetails = {merchantId = "M1"}})]], 401, "401" },
  { "mupk HTTP", "revoke: no credentials", [[mupk_anonymous("POST", "/security/v1/keys/nope/revoke", json{merchantDetails = {merchantId = "M1"}})]], 401, "401" },
  { "mupk HTTP", "generate: over the merchant's generate_rate (payhsm's)", [[mupk_flood()]], 429, "429" },

  -- ---- pos HTTP (status, error.code) ---------------------------------------------------
  { "pos HTTP", "keys: no Authorization", [[pos_keys(nil)]], 401, "4001" },
  { "pos HTTP", "keys: Bearer instead of Attestation", [[pos_keys("Bearer")]], 401, "4001" },
  { "pos HTTP", "keys: unknown token", [[pos_keys("unknown")]], 401, "4001" },
  { "pos HTTP", "keys: token of another device", [[pos_keys("other device")]], 401, "4001" },
  { "pos HTTP", "keys: token after 5 minutes", [[pos_keys("expired")]], 401, "4001" },
  { "pos HTTP", "keys: malformed X-Device-Id", [[pos_keys("bad device id")]], 401, "4001" },
  { "pos HTTP", "charge: HMAC signature altered", [[pos_signed{signature = true}]], 401, "4003" },
  { "pos HTTP", "charge: body altered after signing", [[pos_signed{body_changed = true}]], 401, "4003" },
  { "pos HTTP", "charge: nonce replayed", [[pos_signed{replay = true}]], 401, "4004" },
  { "pos HTTP", "charge: time stamp 10 minutes old", [[pos_signed{old = true}]], 401, "4004" },
  { "pos HTTP", "charge: envelope not under the MSK", [[pos_signed{foreign_envelope = true}]], 422, "4220" },
  { "pos HTTP", "charge: payload without request_id", [[pos_signed{no_request_id = true}]], 400, "4000" },
  { "pos HTTP", "refund of an unknown charge", [[pos_signed{path = "/pos/charge/ch_unknown/refund"}]], 404, "4041" },
  { "pos HTTP", "unknown path", [[pos_request("GET", "/pos/nothing")]], 404, "4040" },
  { "pos HTTP", "attest: firmware_version of the wrong JSON type (an object)", [[pos_attest_wrong_type()]], 400, "4000" },

  -- ---- gateway HTTP (status, error.code) ---------------------------------------------
  { "gateway HTTP", "no Authorization header", [[request("GET", PATHS.keys .. "X", nil, false)]], 401, "401" },
  { "gateway HTTP", "wrong Basic password", [[request("GET", PATHS.keys .. "X", nil, "integrator:nope")]], 401, "401" },
  { "gateway HTTP", "Authorization not Basic", [[request("GET", PATHS.keys .. "X", nil, "Bearer abc")]], 401, "401" },
  { "gateway HTTP", "unknown path", [[request("GET", "/key-management/nothing/here")]], 404, "1004" },
  { "gateway HTTP", "wrong method (GET on import)", [[request("GET", PATHS.import)]], 405, "1005" },
  { "gateway HTTP", "import: body not JSON", [[request("POST", PATHS.import, "{not json")]], 400, "1002" },
  { "gateway HTTP", "import: empty body", [[request("POST", PATHS.import, "")]], 400, "1002" },
  { "gateway HTTP", "import: field missing (sessionKeyCheckValue)", [[request("POST", PATHS.import, import_body{sessionKeyCheckValue = false})]], 400, "1002" },
  { "gateway HTTP", "import: field not a string", [[request("POST", PATHS.import, import_body{sessionKey = 5})]], 400, "1002" },
  { "gateway HTTP", "import: wrong requestType", [[request("POST", PATHS.import, import_body{requestType = "ExportKeyRequest"})]], 400, "1002" },
  { "gateway HTTP", "import: keyType not PAN or PIN", [[request("POST", PATHS.import, import_body{keyType = "MAC"})]], 400, "3908" },
  { "gateway HTTP", "import: check value not 6 hex digits", [[request("POST", PATHS.import, import_body{sessionKeyCheckValue = "XYZ"})]], 409, "3907" },
  { "gateway HTTP", "import: wrong check value", [[request("POST", PATHS.import, import_body{sessionKeyCheckValue = "000000"})]], 409, "3907" },
  { "gateway HTTP", "import: unknown masterKeyLabel", [[request("POST", PATHS.import, import_body{masterKeyLabel = "ZMK_NONE"})]], 409, "3902" },
  { "gateway HTTP", "import: master key of the other keyType", [[request("POST", PATHS.import, import_body{masterKeyLabel = "ZMK_PIN_XXX_YYY"})]], 409, "3903" },
  { "gateway HTTP", "import: sessionKey not a key block", [[request("POST", PATHS.import, import_body{sessionKey = "hello"})]], 409, "3904" },
  { "gateway HTTP", "import: tampered key block", [[request("POST", PATHS.import, import_body{tamper = true})]], 409, "3904" },
  { "gateway HTTP", "import: block under another key", [[request("POST", PATHS.import, import_body{kbpk = k.kbpk_aes_other})]], 409, "3904" },
  { "gateway HTTP", "import: TDES key block (version B)", [[request("POST", PATHS.import, import_body{sessionKey = BLOCK_B})]], 409, "3905" },
  { "gateway HTTP", "import: AES-256 session key", [[request("POST", PATHS.import, import_body{session_key = k.aes_d0_exportable})]], 409, "3905" },
  { "gateway HTTP", "import: wrong key usage for keyType (P0 as PAN)", [[request("POST", PATHS.import, import_body{session_key = k.pek_aes})]], 409, "3906" },
  { "gateway HTTP", "import: the same key twice", [[import_twice()]], 409, "301" },
  { "gateway HTTP", "import: label used with another keyType", [[import_other_type()]], 409, "3910" },
  { "gateway HTTP", "Get Key: unknown sessionKeyId", [[request("GET", PATHS.key .. "999999")]], 404, "3920" },
  { "gateway HTTP", "Get Keys: unknown label", [[request("GET", PATHS.keys .. "NO_SUCH_LABEL")]], 404, "3921" },
  { "gateway HTTP", "PAN re-encryption: body not JSON", [[request("POST", PATHS.pan, "[")]], 400, "1002" },
  { "gateway HTTP", "PAN re-encryption: encryptedPan not hex", [[request("POST", PATHS.pan, json{sessionKeyId = PAN_ID, encryptedPan = "XYZ"})]], 400, "1002" },
  { "gateway HTTP", "PAN re-encryption: bad iv", [[request("POST", PATHS.pan, json{sessionKeyId = PAN_ID, encryptedPan = ("00"):rep(16), iv = "00"})]], 400, "1002" },
  { "gateway HTTP", "PAN re-encryption: sessionKeyId missing", [[request("POST", PATHS.pan, json{encryptedPan = ("00"):rep(16)})]], 400, "1002" },
  { "gateway HTTP", "PAN re-encryption: sessionKeyCheckValue missing", [[request("POST", PATHS.pan, json{sessionKeyId = PAN_ID, encryptedPan = ("00"):rep(16)})]], 400, "1002" },
  { "gateway HTTP", "PAN re-encryption: sessionKeyCheckValue not a string", [[request("POST", PATHS.pan, json{sessionKeyId = PAN_ID, sessionKeyCheckValue = 123456, encryptedPan = ("00"):rep(16)})]], 400, "1002" },
  { "gateway HTTP", "PAN re-encryption: sessionKeyCheckValue not 6 hex digits", [[request("POST", PATHS.pan, json{sessionKeyId = PAN_ID, sessionKeyCheckValue = "XYZ", encryptedPan = ("00"):rep(16)})]], 400, "1002" },
  { "gateway HTTP", "PAN re-encryption: unknown sessionKeyId", [[request("POST", PATHS.pan, json{sessionKeyId = "999999", sessionKeyCheckValue = PAN_KCV, encryptedPan = ("00"):rep(16)})]], 404, "3920" },
  { "gateway HTTP", "PAN re-encryption: a PIN session key", [[request("POST", PATHS.pan, json{sessionKeyId = PIN_ID, sessionKeyCheckValue = PIN_KCV, encryptedPan = ("00"):rep(16)})]], 409, "3931" },
  { "gateway HTTP", "PAN re-encryption: check value of a rotated-out key", [[request("POST", PATHS.pan, json{sessionKeyId = PAN_ID, sessionKeyCheckValue = "000000", encryptedPan = ("00"):rep(16)})]], 409, "3930" },
  { "gateway HTTP", "PAN re-encryption: block that is not a PAN", [[request("POST", PATHS.pan, json{sessionKeyId = PAN_ID, sessionKeyCheckValue = PAN_KCV, encryptedPan = ("00"):rep(16)})]], 422, "3932" },
  { "gateway HTTP", "PIN translation: unknown pinBlockFormat", [[request("POST", PATHS.pin, json{sessionKeyId = PIN_ID, pinBlock = PINBLOCK4, pan = PAN, pinBlockFormat = "ISO_FORMAT_9"})]], 400, "1002" },
  { "gateway HTTP", "PIN translation: pinBlock missing", [[request("POST", PATHS.pin, json{sessionKeyId = PIN_ID, pan = PAN})]], 400, "1002" },
  { "gateway HTTP", "PIN translation: sessionKeyCheckValue missing", [[request("POST", PATHS.pin, json{sessionKeyId = PIN_ID, pinBlock = PINBLOCK4, pan = PAN})]], 400, "1002" },
  { "gateway HTTP", "PIN translation: sessionKeyCheckValue not a string", [[request("POST", PATHS.pin, json{sessionKeyId = PIN_ID, sessionKeyCheckValue = { PIN_KCV }, pinBlock = PINBLOCK4, pan = PAN})]], 400, "1002" },
  { "gateway HTTP", "PIN translation: check value of a rotated-out key", [[request("POST", PATHS.pin, json{sessionKeyId = PIN_ID, sessionKeyCheckValue = "000000", pinBlock = PINBLOCK4, pan = PAN})]], 409, "3930" },
  { "gateway HTTP", "PIN translation: a PAN session key", [[request("POST", PATHS.pin, json{sessionKeyId = PAN_ID, sessionKeyCheckValue = PAN_KCV, pinBlock = PINBLOCK4, pan = PAN})]], 409, "3931" },
  { "gateway HTTP", "PIN translation: wrong PAN", [[request("POST", PATHS.pin, json{sessionKeyId = PIN_ID, sessionKeyCheckValue = PIN_KCV, pinBlock = PINBLOCK4, pan = "4000001234567899"})]], 422, "3932" },
  { "gateway HTTP", "PIN translation: pinBlock bad hex", [[request("POST", PATHS.pin, json{sessionKeyId = PIN_ID, sessionKeyCheckValue = PIN_KCV, pinBlock = ("ZZ"):rep(16), pan = PAN})]], 422, "3932" },
}

--- The fixtures the calls run against. Every key has a marked value (spec/support/marked):
-- the secrets spec scans every message these calls return for them.
function M.env()
  local hsm = require "payhsm"
  local cjson = require "cjson"
  local util = require "payhsm.util"
  local marked = require "spec.support.marked"
  local gateway = require "payhsm.gateway"

  -- Tags are even: DES ignores the low bit of every byte, so tags 2n and 2n+1 would give
  -- the same TDES key.
  local tag = 0
  local function hex(n, what)
    tag = tag + 2
    return marked.hex(n, ("%02X"):format(tag), "bad_input key " .. what)
  end
  local function imp(alg, n, _, attrs)
    return assert(hsm.key.import(alg, hex(n, alg), attrs))
  end
  local k = {
    des = imp("DES", 8, "01", { usage = "P0" }),
    m3 = imp("TDES_2KEY", 16, "02", { usage = "M3", mode = "C" }),
    m3_verify_only = imp("TDES_2KEY", 16, "03", { usage = "M3", mode = "V" }),
    aes_m3 = imp("AES_128", 16, "04", { usage = "M3" }),
    cmac = imp("AES_128", 16, "05", { usage = "M6" }),
    hmac = imp("HMAC_SHA256", 32, "06", { usage = "M7" }),
    dek = imp("AES_256", 32, "07", { usage = "D0", mode = "B" }),
    dek_decrypt_only = imp("AES_256", 32, "08", { usage = "D0", mode = "D" }),
    dek_encrypt_only = imp("AES_256", 32, "09", { usage = "D0", mode = "E" }),
    aes_d0 = imp("AES_256", 32, "0A", { usage = "D0" }),
    aes_d0_exportable = imp("AES_256", 32, "0B", { usage = "D0", mode = "B", exportability = "E" }),
    tdes_d0 = imp("TDES_2KEY", 16, "0C", { usage = "D0" }),
    kbpk_aes = imp("AES_256", 32, "0D", { usage = "K1", mode = "B" }),
    kbpk_aes_other = imp("AES_256", 32, "0E", { usage = "K1", mode = "B" }),
    kbpk_tdes = imp("TDES_3KEY", 24, "0F", { usage = "K0", mode = "B" }),
    pek_aes = imp("AES_128", 16, "10", { usage = "P0", mode = "B", exportability = "E" }),
    pek_aes256 = imp("AES_256", 32, "11", { usage = "P0" }),
    pek_tdes = imp("TDES_2KEY", 16, "12", { usage = "P0", mode = "B" }),
    pek_tdes_other = imp("TDES_2KEY", 16, "13", { usage = "P0", mode = "B" }),
    pek_nonexport = imp("AES_128", 16, "14", { usage = "P0", exportability = "N" }),
    imk = imp("TDES_2KEY", 16, "15", { usage = "E0" }),
    kek = imp("TDES_2KEY", 16, "16", { usage = "K0" }),
    kek_other = imp("TDES_2KEY", 16, "17", { usage = "K0" }),
    zka_mk = imp("TDES_2KEY", 16, "18", { usage = "B0" }),
    msk = imp("AES_256", 32, "19", { usage = "D0" }),
    msk_other = imp("AES_256", 32, "1A", { usage = "D0" }),
    zmk_pan = imp("AES_256", 32, "1B", { usage = "K0" }),
    zmk_pin = imp("AES_256", 32, "1C", { usage = "K0" }),
    -- no usage: these reach the key-type checks (a usage would be refused first)
    aes_any = imp("AES_128", 16, "1D"),
    tdes_any = imp("TDES_2KEY", 16, "1E"),
    hmac_any = imp("HMAC_SHA256", 32, "1F"),
    bdk_tdes = imp("TDES_2KEY", 16, "20", { usage = "B0" }),
    bdk_aes = imp("AES_128", 16, "21", { usage = "B0" }),
    tdes3_any = imp("TDES_3KEY", 24, "22"),
  }
  k.dukpt_ik = assert(hsm.dukpt.initial_key(k.bdk_tdes, "FFFF9876543210E00000"))
  k.dukpt_aik = assert(hsm.dukpt.initial_key(k.bdk_aes, "123456789012345600000000"))
  local TDES, TDES3, AES128, HMAC = hex(16, "TDES literal"), hex(24, "TDES3 literal"), hex(16, "AES128 literal"),
    hex(32, "HMAC literal")
  local PAN = "4111111111111111"
  local DATA = "4E6F77206973207468652074696D6520666F7220616C6C20"
  local EMV_DATA = "0000000010000000000000000840000000000008402303010000000001"

  -- flip(hex): the last hex digit changed; edit(s, pos, text): text placed at pos.
  local function flip(h)
    local last = h:sub(-1)
    return h:sub(1, -2) .. (last == "0" and "1" or "0")
  end
  local function edit(s, pos, text) return s:sub(1, pos - 1) .. text .. s:sub(pos + #text) end

  k.icc_mk = assert(hsm.emv.derive_icc_master_key(k.imk, PAN, "00"))
  -- the card key for dCVV and CVC3, from an IMK of usage E4 (dynamic numbers)
  k.icc_dn = assert(hsm.emv.derive_icc_master_key(imp("TDES_2KEY", 16, "45", { usage = "E4" }), PAN, "00"))
  k.session_e0 = assert(hsm.emv.derive_session_key(k.icc_mk, "EMV_COMMON", { atc = "0001" }))
  k.imk_smc = imp("TDES_2KEY", 16, "43", { usage = "E1" })
  k.imk_smi = imp("TDES_2KEY", 16, "44", { usage = "E2" })
  k.icc_smi = assert(hsm.emv.derive_icc_master_key(k.imk_smi, PAN, "00"))
  k.sk_smc = assert(hsm.emv.derive_sm_session_key(assert(hsm.emv.derive_icc_master_key(k.imk_smc, PAN, "00")),
    "EMV_COMMON", { arqc = "1234567890ABCDEF" }))
  k.sk_smi = assert(hsm.emv.derive_sm_session_key(assert(hsm.emv.derive_icc_master_key(k.imk_smi, PAN, "00")),
    "EMV_COMMON", { arqc = "1234567890ABCDEF" }))
  local rnd = ("3C"):rep(16)
  k.zka_pac = assert(hsm.zka.derive_session_key(k.zka_mk, "PAC", rnd))
  k.zka_mac = assert(hsm.zka.derive_session_key(k.zka_mk, "MAC", rnd))

  local envelope = hsm.envelope.seal(k.msk, '{"approved":true}', { iv = ("11"):rep(16) })
  local envelope_json = hsm.envelope.encode(envelope)
  local M82C0 = { variant_mask = "VARIANT_MASK_82C0" }
  local krs = assert(hsm.as2805.kek_validation_request(k.kek, M82C0)).random_key_send

  local env = {
    hsm = hsm, k = k, flip = flip, edit = edit, string = string, tostring = tostring,
    TDES = TDES, TDES3 = TDES3, AES128 = AES128, HMAC = HMAC, PAN = PAN, DATA = DATA, EMV_DATA = EMV_DATA,
    RND = rnd, M82C0 = M82C0,
    MAC3 = assert(hsm.mac.generate(k.m3, "ISO9797_ALGORITHM3", DATA)),
    BLOCK_D = assert(hsm.tr31.wrap(k.kbpk_aes, k.pek_aes, { version = "D" })),
    BLOCK_KS = assert(hsm.tr31.wrap(k.kbpk_aes, k.pek_aes, { version = "D",
      blocks = { { id = "KS", data = "00604B120F9292800000" } } })),
    BLOCK_B = assert(hsm.tr31.wrap(k.kbpk_tdes, k.pek_tdes, { version = "B" })),
    CLEAR0 = assert(hsm.pin.format("ISO_FORMAT_0", "1234", PAN)),
    PINBLOCK0 = assert(hsm.pin.encrypt(k.pek_tdes, "ISO_FORMAT_0", "1234", PAN)),
    PINBLOCK4 = assert(hsm.pin.encrypt(k.pek_aes, "ISO_FORMAT_4", "1234", PAN)),
    ARQC = assert(hsm.emv.generate_arqc(k.imk, { pan = PAN, atc = "0001", data = EMV_DATA })),
    KRS = krs,
    SM_MC = assert(hsm.emv.sm_encrypt(k.sk_smc, "249999FFFFFFFFFF", { type = "MASTERCARD" })),
    KRR = assert(hsm.as2805.kek_validation_response(k.kek, krs, M82C0)),
    KRR_OTHER = assert(hsm.as2805.kek_validation_response(k.kek_other, krs, M82C0)),
    ZKA_MAC = assert(hsm.zka.mac(k.zka_mac, DATA)),
    ENVELOPE = envelope,
    ENVELOPE_JSON = envelope_json,
    ENVELOPE_HMAC = hsm.hmac(k.hmac, envelope_json),
  }
  function env.envelope_with(field, value)
    local e = {}
    for f, v in pairs(envelope) do e[f] = v end
    e[field] = value
    return e
  end
  local rot = hsm.rotation.new { ids = { "1001", "1002", "1003" } }
  rot:import { kcv = "5AB19C", block = "D0144" }
  rot:import { kcv = "6BC2AD", block = "D0144" }
  env.SNAPSHOT = rot:snapshot()


  -- ---- rsa and the multi-use public key service ---------------------------------------
  k.aes_kek = imp("AES_256", 32, "40", { usage = "K0" })
  k.aes_kek2 = imp("AES_256", 32, "42", { usage = "K0" })
  local priv = hsm.rsa.generate(2048)
  env.RSA_PRIV = priv
  env.RSA_WRAPPED = priv:wrap(k.aes_kek)
  env.EC_P256, env.EC_P384 = hsm.ec.generate("P-256"), hsm.ec.generate("P-384")
  env.EC_WRAPPED = env.EC_P256:wrap(k.aes_kek)
  env.ECDH_OPTS = { kdf = "NIST_SP800", hash = "SHA_256", algorithm = "AES_128" }
  local pub = assert(hsm.rsa.public(priv:public_der()))
  local function flip_hex(h, at)
    local c = h:sub(at, at)
    return h:sub(1, at - 1) .. (c == "0" and "1" or "0") .. h:sub(at + 1)
  end
  --- sealed_with{field = true (flip a digit) | "hex" (replace)}: a sealed card-data record.
  function env.sealed_with(change)
    local t = hsm.rsa.seal(pub, "card data")
    for f, v in pairs(change) do t[f] = v == true and flip_hex(t[f], 9) or v end
    return t
  end
  -- ---- tr34: the ASC X9 TR-34-2019 Annex B sample PKI and its B.9 two-pass token ------
  local S = require "spec.support.tr34_samples"
  env.TR34, env.B9, env.flip_at = S, S.token_2pass:gsub("%s", ""), flip_hex
  local function opts(base, change, drop)
    for f, v in pairs(change or {}) do base[f] = v end
    if drop then base[drop] = nil end
    return base
  end
  --- B9_OPTS{...} / KDH_OPTS{...}: unwrap and wrap options at 2019-06-12, changed as given.
  function env.B9_OPTS(change, drop)
    return opts({ kdh_cert = S.kdh1_cert, ca_cert = S.root_cert, chain = S.ca_kdh_cert, time = 1560358800,
      nonce = "167EB0E72781E4940112233445566778" }, change, drop)
  end
  function env.KDH_OPTS(change)
    return opts({ kdh_key = S.kdh1_key, kdh_cert = S.kdh1_cert, krd_cert = S.krd1_cert, ca_cert = S.root_cert,
      chain = S.ca_krd_cert, time = 1560358800, nonce = "0011223344556677" }, change)
  end
  local mupk = require "payhsm.mupk"
  local now = 1704067200 -- 2024-01-01T00:00:00Z
  local svc = mupk.new { clock = function() return now end, storage_key = { algorithm = "AES_256", hex = hex(32, "mupk LMK") },
    webhook_post = function() return 200 end, basic_auth = { shop = "pw" }, generate_rate = { per_minute = 2 } }
  function env.mupk_request(method, path, body, headers)
    return svc:handle { method = method, path = path, body = body, headers = headers or { ["content-type"] = "application/json",
      authorization = "Basic " .. util.b64encode("shop:pw") } }
  end
  --- mupk_anonymous(method, path, body): a request without credentials.
  function env.mupk_anonymous(method, path, body)
    return env.mupk_request(method, path, body, { ["content-type"] = "application/json" })
  end
  --- mupk_flood(): one merchant's third key generation within a minute (generate_rate 2).
  function env.mupk_flood()
    local body = cjson.encode { merchantDetails = { merchantId = "FLOOD" } }
    env.mupk_request("POST", "/security/v1/keys/generate", body)
    env.mupk_request("POST", "/security/v1/keys/generate", body)
    return env.mupk_request("POST", "/security/v1/keys/generate", body)
  end
  local function new_key(mid)
    local resp = env.mupk_request("POST", "/security/v1/keys/generate", cjson.encode { merchantDetails = { merchantId = mid } })
    return cjson.decode(resp.body).asymmetricKeyDetails
  end
  function env.mupk_revoke_twice()
    local d = new_key("M2")
    local body = cjson.encode { merchantDetails = { merchantId = "M2" } }
    env.mupk_request("POST", "/security/v1/keys/" .. d.keyId .. "/revoke", body)
    return env.mupk_request("POST", "/security/v1/keys/" .. d.keyId .. "/revoke", body)
  end
  local n = 0
  --- mupk_pay{tamper = field, after_expiry = true, revoked = true}: a store-and-forward
  -- transaction for a fresh merchant's key, spoiled as asked.
  function env.mupk_pay(o)
    n = n + 1
    local mid = "PAY" .. n
    local d = new_key(mid)
    local der = util.b64decode(d.encodedPublicKey):gsub(".", function(c) return ("%02X"):format(c:byte()) end)
    local s = hsm.rsa.seal(assert(hsm.rsa.public(der)), cjson.encode { cardData = "4111111111111111",
      expirationMonth = "12", expirationYear = "2030" }, d.keyId)
    local ed = { keyId = d.keyId, encryptionType = "RSA", encryptedKey = s.encrypted_key, iv = s.iv,
      encryptionBlock = s.ciphertext, authenticationTag = s.tag }
    if o.tamper then ed[o.tamper] = flip_hex(ed[o.tamper], 9) end
    if o.revoked then
      env.mupk_request("POST", "/security/v1/keys/" .. d.keyId .. "/revoke", cjson.encode { merchantDetails = { merchantId = mid } })
    end
    local saved = now
    if o.after_expiry then now = now + 400 * 86400 end
    local resp = env.mupk_request("POST", "/security/v1/transactions", cjson.encode {
      merchantDetails = { merchantId = mid }, amount = { total = 10.5, currency = "USD" },
      transactionDetails = { merchantTransactionId = "bad-" .. n, captureTime = "2024-01-01T00:00:00Z" },
      source = { sourceType = "PaymentCard", encryptionData = ed } })
    now = saved
    return resp
  end


  -- ---- the POS host, in process, with one activated device --------------------------
  local pos = require "payhsm.pos.server"
  local P = require "payhsm.pos.protocol"
  local device_mod = require "payhsm.pos.device"
  local memory = require "payhsm.store.memory"
  local pnow = 1767225600 -- 2026-01-01T00:00:00Z
  local pclock = function() return pnow end
  local pzmk, pdak = hex(32, "pos ZMK"), hex(32, "pos attestation key")
  local pzmk2, pdak2 = hex(32, "pos ZMK 2"), hex(32, "pos attestation key 2")
  local psrv = pos.new { clock = pclock, store = memory.new { clock = pclock },
    storage_key = { hex = hex(32, "pos LMK") },
    devices = { { device_id = "POS-0BAD1A01", zmk = pzmk, attestation_key = pdak },
                { device_id = "POS-0BAD1A02", zmk = pzmk2, attestation_key = pdak2 } } }
  local function pdevice(id, zmk, dak)
    return device_mod.new { device_id = id, clock = pclock,
      zmk = hsm.key.import("AES_256", zmk, { usage = "K1", mode = "B" }),
      attestation_key = hsm.key.import("HMAC_SHA256", dak, { usage = "M7", mode = "C" }),
      transport = function(req) return psrv:handle(req) end }
  end
  local pd = pdevice("POS-0BAD1A01", pzmk, pdak)
  assert(pd:activate_all())
  function env.pos_request(method, path, headers, body)
    return psrv:handle { method = method, path = path, headers = headers or {}, body = body or "" }
  end
  --- pos_attest_wrong_type(): POST /pos/attest with a fresh challenge and an object
  -- where the firmware version string goes.
  function env.pos_attest_wrong_type()
    local id = "POS-0BAD1A01"
    local h = { [P.H.device] = id, ["content-type"] = "application/json" }
    local ch = cjson.decode(env.pos_request("POST", P.PATHS.challenge, h, cjson.encode { device_id = id }).body).challenge
    return env.pos_request("POST", P.PATHS.attest, h,
      cjson.encode { device_id = id, challenge = ch, firmware_version = {}, proof = ("00"):rep(32) })
  end
  --- pos_keys(how): POST /pos/keys with a token spoiled as named.
  function env.pos_keys(how)
    local d = pdevice("POS-0BAD1A01", pzmk, pdak)
    local token = d:attest()
    local h = { [P.H.device] = "POS-0BAD1A01", authorization = "Attestation " .. token }
    if how == nil then h.authorization = nil
    elseif how == "Bearer" then h.authorization = "Bearer " .. token
    elseif how == "unknown" then h.authorization = "Attestation att_" .. ("0"):rep(32)
    elseif how == "other device" then h[P.H.device] = "POS-0BAD1A02"
    elseif how == "bad device id" then h[P.H.device] = "pos-0bad1a01"
    elseif how == "expired" then pnow = pnow + 301 end
    local resp = env.pos_request("POST", P.PATHS.keys, h)
    if how == "expired" then pnow = pnow - 301 end
    return resp
  end
  local seen_nonce
  --- pos_signed{...}: a signed MSK-protected request from the activated device (a charge
  -- envelope by default), spoiled as asked.
  function env.pos_signed(o)
    local path = o.path or P.PATHS.charge
    local body = hsm.envelope.encode(hsm.envelope.seal(o.foreign_envelope and k.aes_d0 or pd.keys.msk,
      cjson.encode { request_id = o.no_request_id and nil or ("req-" .. hsm.random(8)), amount = 100,
        currency = "EUR" }))
    local ks = pd.key_set.key_set_id
    local ts = P.iso8601(pnow - (o.old and 600 or 0))
    local nonce = o.replay and (seen_nonce or hsm.random(16)) or hsm.random(16)
    -- signed as the server asks: the body alone (viopay's guide, the default) or bound
    local sig = hsm.hmac(pd.keys.mac, psrv.signature == "bound"
      and P.request_signing_string("POST", path, pd.device_id, ks, ts, nonce, body) or P.body_signing_string(body))
    if o.signature then sig = (sig:sub(1, 1) == "0" and "1" or "0") .. sig:sub(2) end
    if o.body_changed then body = body:gsub("CBC", "cbc", 1) end
    local h = { [P.H.device] = pd.device_id, [P.H.key_set] = ks, [P.H.timestamp] = ts, [P.H.nonce] = nonce,
      [P.H.signature] = sig }
    if o.replay and not seen_nonce then
      seen_nonce = nonce
      env.pos_request("POST", path, h, body) -- the first use
    end
    return env.pos_request("POST", path, h, body)
  end

  -- ---- the gateway, in process (the handler `bin/payhsm serve gateway` runs) ----------
  local gw = gateway.new {
    master_keys = {
      { label = "ZMK_PAN_XXX_YYY", key_type = "PAN", algorithm = "AES_256", hex = k.zmk_pan:export() },
      { label = "ZMK_PIN_XXX_YYY", key_type = "PIN", algorithm = "AES_256", hex = k.zmk_pin:export() },
    },
    basic_auth = { integrator = "pa55word" },
  }
  env.gw, env.PATHS = gw, gateway.PATHS
  env.json = function(t) return cjson.encode(t) end
  --- request(method, path [, body [, credentials]]): credentials "user:password", a
  -- whole Authorization value (containing a space), or false for none.
  function env.request(method, path, body, cred)
    local auth
    if cred == nil then cred = "integrator:pa55word" end
    if cred then auth = cred:find(" ", 1, true) and cred or "Basic " .. util.b64encode(cred) end
    return gw:handle { method = method, path = path, body = body,
      headers = { authorization = auth, ["content-type"] = "application/json" } }
  end
  local label_n = 0
  --- import_body{field = value | false, session_key =, kbpk =, tamper =}: a valid
  -- Import Key request for a fresh PAN session key under a fresh label, then changed.
  function env.import_body(over)
    over = over or {}
    label_n = label_n + 1
    local sk = over.session_key or hsm.key.generate("AES_128", { usage = "D0", mode = "B", exportability = "E" })
    local block = assert(hsm.tr31.wrap(over.kbpk or k.zmk_pan, sk, { version = "D" }))
    if over.tamper then block = flip(block) end
    local req = {
      requestType = "ImportKeyRequest", keyType = "PAN", masterKeyLabel = "ZMK_PAN_XXX_YYY",
      sessionKeyLabel = "DEK_BAD_" .. label_n, sessionKey = block, sessionKeyCheckValue = sk:kcv("CMAC"),
    }
    for f, v in pairs(over) do
      if req[f] ~= nil then req[f] = v or nil end
    end
    return cjson.encode(req)
  end
  local function import_ok(body)
    local resp = env.request("POST", gateway.PATHS.import, body)
    assert(resp.status == 200, resp.body)
    return cjson.decode(resp.body)
  end
  function env.import_twice()
    local body = env.import_body()
    import_ok(body)
    return env.request("POST", gateway.PATHS.import, body)
  end
  function env.import_other_type()
    local first = cjson.decode(env.import_body())
    import_ok(cjson.encode(first))
    local sk = hsm.key.generate("AES_128", { usage = "P0", mode = "B", exportability = "E" })
    return env.request("POST", gateway.PATHS.import, cjson.encode {
      requestType = "ImportKeyRequest", keyType = "PIN", masterKeyLabel = "ZMK_PIN_XXX_YYY",
      sessionKeyLabel = first.sessionKeyLabel, sessionKey = assert(hsm.tr31.wrap(k.zmk_pin, sk, { version = "D" })),
      sessionKeyCheckValue = sk:kcv("CMAC") })
  end
  do
    local first = import_ok(env.import_body())
    env.PAN_ID, env.PAN_KCV = first.sessionKeyId, first.sessionKeyCheckValue
  end
  do
    local sk = hsm.key.generate("AES_128", { usage = "P0", mode = "B", exportability = "E" })
    env.PIN_ID = import_ok(cjson.encode {
      requestType = "ImportKeyRequest", keyType = "PIN", masterKeyLabel = "ZMK_PIN_XXX_YYY",
      sessionKeyLabel = "PIN_BAD", sessionKey = assert(hsm.tr31.wrap(k.zmk_pin, sk, { version = "D" })),
      sessionKeyCheckValue = sk:kcv("CMAC") }).sessionKeyId
    env.PIN_KCV = sk:kcv("CMAC")
    -- the PIN block the gateway translates is under that session key
    env.PINBLOCK4 = assert(hsm.pin.encrypt(sk, "ISO_FORMAT_4", "1234", PAN))
  end

  -- ---- card and PIN verification values ------------------------------------------------
  k.cvk = imp("TDES_2KEY", 16, nil, { usage = "C0" })
  k.cvk_generate_only = imp("TDES_2KEY", 16, nil, { usage = "C0", mode = "G" })
  k.pvk_pvv = imp("TDES_2KEY", 16, nil, { usage = "V2" })
  k.pvk_ibm = imp("TDES_2KEY", 16, nil, { usage = "V1" })
  env.DCVV = function(t)
    local p = { pan = PAN, psn = "00", expiry = "2512", service_code = "101", atc = "0001" }
    for f, v in pairs(t) do p[f] = v end
    return p
  end
  env.CVC3 = function(t)
    local p = { track_data = PAN .. "D25121010000000000000F", atc = "0001", un = "00000899" }
    for f, v in pairs(t) do p[f] = v end
    return p
  end
  env.PVV = assert(hsm.pin.visa_pvv(k.pvk_pvv, "1234", PAN, "1"))
  env.IBM = function(t)
    local p = { decimalization_table = "0123456789012345", validation_data = PAN:sub(5, 15), pad_char = "F" }
    for f, v in pairs(t) do p[f] = v end
    return p
  end
  env.CVV = assert(hsm.card.cvv(k.cvk, PAN, "2512", "101"))
  env.other_digits = function(v) return (v:gsub("%d", function(d) return ("%d"):format((tonumber(d) + 1) % 10) end)) end
  return env
end

--- run(row, env) -> outcome: {raised = message} or {results = {n =, ...}} for library
-- rows, {status =, code =, body =} for gateway rows.
function M.run(row, env)
  local fn = assert(load("return " .. row[3], "=" .. row[1] .. ": " .. row[2], "t", env))
  local res = table.pack(pcall(fn))
  if not res[1] then return { raised = tostring(res[2]) } end
  if row[1]:match(" HTTP$") then
    local resp = res[2]
    local doc = require("cjson.safe").decode(resp.body or "")
    local err = type(doc) == "table" and type(doc.error) == "table" and doc.error or {}
    local code = err.code or (type(err[1]) == "table" and err[1].code) or nil
    return { status = resp.status, code = code, body = resp.body }
  end
  return { results = table.pack(table.unpack(res, 2, res.n)) }
end

return M

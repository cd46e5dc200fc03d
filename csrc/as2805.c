/*
 * as2805.c - AS2805 node-to-node KEK validation, both sides, as AWS Payment
 * Cryptography's GenerateAs2805KekValidation computes it.
 *
 * AS2805.6.6 (node-to-node key management): before session keys are exchanged,
 * each node proves it holds the partner's KEK. The initiator draws a random key
 * KR and sends KRs, KR enciphered under the request variant of the KEK; the
 * partner deciphers KRs, inverts KR and returns KRr, the inverted key enciphered
 * under the response variant of the same KEK. The initiator compares KRr with the
 * value it computed itself when it made the request.
 *
 * As AWS computes it (aws-samples/samples-for-payment-cryptography-service,
 * python_sdk_example/as2805_node-to-node_examples/as2805_1_5_KEK_Validation.py,
 * written to match the live GenerateAs2805KekValidation output for VARIANT_MASK_82):
 *  - KRs = TDES-CBC, zero IV, of KR under KEK xor the request variant;
 *  - KRr = TDES-CBC, zero IV, of inv(KR) under KEK xor the response variant, where
 *    inv(KR) is KR with every bit flipped, then odd parity set on every byte;
 *  - VARIANT_MASK_82: request variant 82 on every byte of the KEK, response 84.
 *  - VARIANT_MASK_82C0: the two-byte form AWS uses for its AS2805 key variants
 *    (28C0, 22C0, 24C0 repeated over the KEK in the same repository's
 *    as2805_2_1_Working_Key_Exchange.py): request 82C0 repeated, response 84C0
 *    repeated. The sample shows only VARIANT_MASK_82; this counterpart follows
 *    AWS's two-byte pattern and is not confirmed against the service.
 *  KR is as long as random_key_max_length (BYTES_8/16/24), drawn at random with
 *  odd parity set (a DES key; inv() of such a key changes no parity bit).
 *  AWS's published example (KRs 9217DC67B8763BABCFDF3DADFCD0F84A -> KRr
 *  A4B7E249C40C98178C1B856DB7FB76EB, KEK KCV 0A3674) does not publish the KEK.
 *
 * Lua: core.as2805.kek_validation_request(kek, {derive_algorithm=, random_key_max_length=,
 *        variant_mask=}) -> {random_key_send=, random_key_receive=, kcv=}
 *      core.as2805.kek_validation_response(kek, random_key_send, {variant_mask=}) -> random_key_receive
 *      core.as2805.kek_validation_verify(kek, random_key_send, random_key_receive, {variant_mask=})
 *        -> true | false, msg, code   (the initiator's check, constant time)
 *      core.as2805.derive_pek(kpp, stan, amount) -> key | nil, msg, code
 *        the per-transaction PIN encryption key (AS2805.6.6.3, below)
 * derive_algorithm: TDES_2KEY (default) or TDES_3KEY: the KEK's algorithm, checked.
 * random_key_max_length: BYTES_8, BYTES_16 (default) or BYTES_24.
 * Keys: the KEK TDES_2KEY or TDES_3KEY, usage K0 (or none).
 * Codes: BAD_HEX, AS2805_KRS_LENGTH, AS2805_MISMATCH, KEY_TYPE, KEY_USAGE.
 *
 * The per-transaction PIN key (TranslatePinData's IncomingAs2805Attributes), as AWS's interop
 * sample computes it (same repository, as2805_3_1_pin_translation.py, "AS2805 section
 * 6.6.3"): D = E || F, E the 6-digit STAN followed by ten zeros, F the 12-digit amount
 * right-justified in 16 zero-filled digits (16 bytes); KPE = OWF(KPP, D) = TDES-CBC(KPP, D,
 * IV = the TDES CBC-MAC of D with a zero IV) xor D, a TDES_2KEY key.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "payhsm.h"

static const char *const mask_names[] = {"VARIANT_MASK_82C0", "VARIANT_MASK_82", NULL};
/* [mask][0 request, 1 response]: two bytes repeated over the KEK */
static const unsigned char masks[2][2][2] = {{{0x82, 0xC0}, {0x84, 0xC0}}, {{0x82, 0x82}, {0x84, 0x84}}};

static int check_kek(lua_State *L, payhsm_key *k, const char *fn, const char *modes) {
  int r;
  if ((r = payhsm_key_usage(L, k, fn, "K0", modes))) return r;
  if (k->alg != PAYHSM_ALG_TDES_2KEY && k->alg != PAYHSM_ALG_TDES_3KEY)
    return payhsm_fail(L, fn, "KEY_TYPE", "AS2805 KEKs are TDES_2KEY or TDES_3KEY, got %s", payhsm_alg_name(k->alg));
  return 0;
}

/* The options table at idx (raises when absent or with an unknown field); returns the mask. */
static int mask_opt(lua_State *L, int idx, const char *fn, int request) {
  static const char *const req_fields[] = {"variant_mask", "derive_algorithm", "random_key_max_length", NULL};
  static const char *const fields[] = {"variant_mask", NULL};
  int m;
  if (lua_isnoneornil(L, idx)) return luaL_error(L, "as2805: options with variant_mask are required");
  luaL_checktype(L, idx, LUA_TTABLE);
  payhsm_checkfields(L, idx, fn, request ? req_fields : fields);
  lua_getfield(L, idx, "variant_mask");
  if (lua_isnil(L, -1)) return luaL_error(L, "as2805: variant_mask is required (VARIANT_MASK_82C0 or VARIANT_MASK_82)");
  m = payhsm_checkname(L, -1, "variant mask", mask_names);
  lua_pop(L, 1);
  return m;
}

/* enc = 1: out = TDES-CBC, zero IV, under KEK xor the request (resp = 0) or response
 * (resp = 1) variant; enc = 0 deciphers. n a multiple of 8. */
static int variant_crypt(lua_State *L, payhsm_key *kek, int m, int resp, int enc,
                         const unsigned char *in, unsigned char *out, size_t n) {
  static const unsigned char zero_iv[8] = {0};
  unsigned char kx[24];
  payhsm_key t;
  size_t i;
  int ok;
  for (i = 0; i < kek->len; i++) kx[i] = (unsigned char)(kek->bytes[i] ^ masks[m][resp][i % 2]);
  ok = payhsm_key_init(&t, kek->alg, kx, kek->len);
  OPENSSL_cleanse(kx, sizeof kx);
  ok = ok && payhsm_key_crypt(L, &t, enc, zero_iv, in, out, n);
  payhsm_key_clear(&t);
  return ok;
}

/* inv(KR): ones' complement, then odd parity on every byte. */
static void invert(unsigned char *kr, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) kr[i] = (unsigned char)~kr[i];
  payhsm_des_parity(kr, n);
}

/* core.as2805.kek_validation_request(kek, opts) -> {random_key_send, random_key_receive, kcv} */
static int as2805_request(lua_State *L) {
  static const char fn[] = "as2805.kek_validation_request";
  static const char *const lengths[] = {"BYTES_8", "BYTES_16", "BYTES_24", NULL};
  static const char *const algs[] = {"TDES_2KEY", "TDES_3KEY", NULL};
  payhsm_key *kek = payhsm_checkkey(L, 1);
  int m = mask_opt(L, 2, fn, 1), r, alg = 0, len = 1;
  unsigned char kr[24], krs[24], krr[24], kcv[3];
  size_t n;
  if (lua_getfield(L, 2, "random_key_max_length") != LUA_TNIL) len = payhsm_checkname(L, -1, "random key length", lengths);
  if (lua_getfield(L, 2, "derive_algorithm") != LUA_TNIL) alg = payhsm_checkname(L, -1, "derive key algorithm", algs);
  lua_pop(L, 2);
  if ((r = check_kek(L, kek, fn, "EBN"))) return r;
  if ((alg == 0) != (kek->alg == PAYHSM_ALG_TDES_2KEY))
    return payhsm_fail(L, fn, "KEY_TYPE", "derive_algorithm %s does not match the %s KEK", algs[alg],
                       payhsm_alg_name(kek->alg));
  n = (size_t)(8 * (len + 1));
  if (RAND_priv_bytes(kr, (int)n) != 1) return payhsm_raise_ossl(L, fn);
  payhsm_des_parity(kr, n);
  r = variant_crypt(L, kek, m, 0, 1, kr, krs, n);
  invert(kr, n);
  r = r && variant_crypt(L, kek, m, 1, 1, kr, krr, n) && payhsm_kcv_compute(L, kek, 0, kcv);
  OPENSSL_cleanse(kr, sizeof kr);
  if (!r) return payhsm_raise_ossl(L, fn);
  lua_createtable(L, 0, 3);
  payhsm_pushhex(L, krs, n);
  lua_setfield(L, -2, "random_key_send");
  payhsm_pushhex(L, krr, n);
  lua_setfield(L, -2, "random_key_receive");
  payhsm_pushhex(L, kcv, 3);
  lua_setfield(L, -2, "kcv");
  return 1;
}

/* KRr for an incoming KRs; 0 with the failure pushed on bad input. */
static size_t response(lua_State *L, const char *fn, payhsm_key *kek, int krs_idx, int m, unsigned char *krr) {
  unsigned char krs[24], kr[24];
  size_t n;
  int ok;
  n = payhsm_hexarg(L, krs_idx, fn, "random_key_send", krs, sizeof krs);
  if (n == (size_t)-1) return 0;
  if (n != 8 && n != 16 && n != 24) {
    payhsm_fail(L, fn, "AS2805_KRS_LENGTH", "random key send must be 8, 16 or 24 bytes, got %d", (int)n);
    return 0;
  }
  ok = variant_crypt(L, kek, m, 0, 0, krs, kr, n);
  invert(kr, n);
  ok = ok && variant_crypt(L, kek, m, 1, 1, kr, krr, n);
  OPENSSL_cleanse(kr, sizeof kr);
  if (!ok) payhsm_raise_ossl(L, fn);
  return n;
}

/* core.as2805.kek_validation_response(kek, random_key_send, {variant_mask=}) -> random_key_receive */
static int as2805_response(lua_State *L) {
  static const char fn[] = "as2805.kek_validation_response";
  payhsm_key *kek = payhsm_checkkey(L, 1);
  int m = mask_opt(L, 3, fn, 0), r;
  unsigned char krr[24];
  size_t n;
  if ((r = check_kek(L, kek, fn, "DBN"))) return r;
  if (!(n = response(L, fn, kek, 2, m, krr))) return 3;
  payhsm_pushhex(L, krr, n);
  return 1;
}

/* core.as2805.kek_validation_verify(kek, krs, krr, {variant_mask=}) -> true | false, msg, code */
static int as2805_verify(lua_State *L) {
  static const char fn[] = "as2805.kek_validation_verify";
  payhsm_key *kek = payhsm_checkkey(L, 1);
  int m = mask_opt(L, 4, fn, 0), r;
  unsigned char want[24], given[24];
  size_t n, gn;
  if ((r = check_kek(L, kek, fn, NULL))) { lua_pushboolean(L, 0); lua_replace(L, -4); return r; }
  gn = payhsm_hexarg(L, 3, fn, "random_key_receive", given, sizeof given);
  if (gn == (size_t)-1 || !(n = response(L, fn, kek, 2, m, want))) {
    lua_pushboolean(L, 0);
    lua_replace(L, -4);
    return 3;
  }
  if (gn != n || CRYPTO_memcmp(want, given, n) != 0)
    return payhsm_false(L, fn, "AS2805_MISMATCH", "random key receive does not match: the partner holds another KEK");
  lua_pushboolean(L, 1);
  return 1;
}

/* core.as2805.derive_pek(kpp, stan, amount) -> key | nil, msg, code
 * The per-transaction PIN encryption key KPE of AS2805.6.6.3 from the PIN key KPP
 * (TDES_2KEY or TDES_3KEY, usage P0 or none), the 6-digit STAN and the 12-digit
 * transaction amount, as AWS's interop sample computes it (see the top). The KPE is a
 * TDES_2KEY key with usage P0, the KPP's mode of use, not exportable; D, the MAC and the
 * key bytes stay in C and are cleansed. Codes AS2805_DATA (STAN or amount not 6 and 12
 * digits), KEY_TYPE, KEY_USAGE. */
static int as2805_derive_pek(lua_State *L) {
  static const char fn[] = "as2805.derive_pek";
  payhsm_key *kpp = payhsm_checkkey(L, 1), *kpe;
  size_t sn, an, i;
  const char *stan = luaL_checklstring(L, 2, &sn), *amount = luaL_checklstring(L, 3, &an);
  static const unsigned char zero_iv[8] = {0};
  unsigned char d[16], mac[16], kb[16];
  char digits[33];
  int r, ok;
  if ((r = payhsm_key_usage(L, kpp, fn, "P0", NULL))) return r;
  if (kpp->alg != PAYHSM_ALG_TDES_2KEY && kpp->alg != PAYHSM_ALG_TDES_3KEY)
    return payhsm_fail(L, fn, "KEY_TYPE", "the PIN key must be TDES_2KEY or TDES_3KEY, got %s", payhsm_alg_name(kpp->alg));
  if (sn != 6 || an != 12) return payhsm_fail(L, fn, "AS2805_DATA", "STAN must be 6 digits and amount 12");
  for (i = 0; i < 6; i++)
    if (stan[i] < '0' || stan[i] > '9') return payhsm_fail(L, fn, "AS2805_DATA", "STAN must be 6 digits");
  for (i = 0; i < 12; i++)
    if (amount[i] < '0' || amount[i] > '9') return payhsm_fail(L, fn, "AS2805_DATA", "amount must be 12 digits");
  memcpy(digits, stan, 6);
  memset(digits + 6, '0', 14);
  memcpy(digits + 20, amount, 12);
  digits[32] = 0;
  for (i = 0; i < 16; i++) {
    unsigned hi = (unsigned)(digits[2 * i] - '0'), lo = (unsigned)(digits[2 * i + 1] - '0');
    d[i] = (unsigned char)(hi << 4 | lo);
  }
  kpe = payhsm_pushkey(L, PAYHSM_ALG_TDES_2KEY, (const unsigned char *)"\0", 1); /* shell first */
  ok = payhsm_key_crypt(L, kpp, 1, zero_iv, d, mac, 16) &&     /* CBC-MAC: its last block */
       payhsm_key_crypt(L, kpp, 1, mac + 8, d, kb, 16);        /* CBC again, IV = the MAC */
  for (i = 0; i < 16; i++) kb[i] ^= d[i];
  if (ok) {
    payhsm_key_clear(kpe);
    ok = payhsm_key_init(kpe, PAYHSM_ALG_TDES_2KEY, kb, 16);
  }
  OPENSSL_cleanse(kb, sizeof kb);
  OPENSSL_cleanse(mac, sizeof mac);
  OPENSSL_cleanse(d, sizeof d);
  if (!ok) return payhsm_raise_ossl(L, fn);
  kpe->usage[0] = 'P';
  kpe->usage[1] = '0';
  kpe->mode = kpp->mode;
  kpe->exportability = 'N';
  return 1;
}

void payhsm_as2805_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"kek_validation_request", as2805_request}, {"kek_validation_response", as2805_response},
    {"kek_validation_verify", as2805_verify}, {"derive_pek", as2805_derive_pek}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "as2805");
}

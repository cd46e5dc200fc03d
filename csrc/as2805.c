/*
 * as2805.c - AS2805 node-to-node KEK validation, both sides, as AWS Payment
 * Cryptography's GenerateAs2805KekValidation offers it (seeds/aws-payment-
 * cryptography-arqc-as2805.txt).
 *
 * AS2805.6.6 (node-to-node key management): before session keys are exchanged,
 * each node proves it holds the partner's KEK. The initiator draws a random key
 * KR and sends KRs, KR enciphered under a variant of its sending KEK (KEKs); the
 * partner deciphers KRs with its receiving KEK (KEKr, the same key), inverts KR
 * (ones' complement: every bit flipped) and returns KRr, the inverted key
 * enciphered under the same variant of the KEK. The initiator compares KRr with
 * the value it computed itself when it made the request.
 *
 * Reading where the public material stops (kept as data, in masks[] below):
 *  - VARIANT_MASK_82C0: the two bytes 82 C0 repeated over the whole KEK
 *    (82C082C0...), i.e. the AS2805 key-type variant 82 on the first byte and C0
 *    on the second byte of every byte pair;
 *  - VARIANT_MASK_82: the byte 82 on every byte of the KEK.
 *  - KR is as long as random_key_max_length (BYTES_8/16/24) and is enciphered in
 *    TDES-ECB under KEK xor mask; KRr uses the same variant as KRs.
 *  AWS's published example (KRs 9217DC67B8763BABCFDF3DADFCD0F84A -> KRr
 *  A4B7E249C40C98178C1B856DB7FB76EB, KEK KCV 0A3674) does not publish the KEK, so
 *  it checks only shapes: 16-byte KRs and KRr, a 3-byte KCV. docs in README.
 *
 * Lua: core.as2805.kek_validation_request(kek, {derive_algorithm=, random_key_max_length=,
 *        variant_mask=}) -> {random_key_send=, random_key_receive=, kcv=}
 *      core.as2805.kek_validation_response(kek, random_key_send, {variant_mask=}) -> random_key_receive
 *      core.as2805.kek_validation_verify(kek, random_key_send, random_key_receive, {variant_mask=})
 *        -> true | false, msg, code   (the initiator's check, constant time)
 * derive_algorithm: TDES_2KEY (default) or TDES_3KEY: the KEK's algorithm, checked.
 * random_key_max_length: BYTES_8, BYTES_16 (default) or BYTES_24.
 * Keys: the KEK TDES_2KEY or TDES_3KEY, usage K0 (or none).
 * Codes: BAD_HEX, AS2805_KRS_LENGTH, AS2805_MISMATCH, KEY_TYPE, KEY_USAGE.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "payhsm.h"

static const char *const mask_names[] = {"VARIANT_MASK_82C0", "VARIANT_MASK_82", NULL};
static const unsigned char masks[2][2] = {{0x82, 0xC0}, {0x82, 0x82}}; /* repeated over the key */

static int check_kek(lua_State *L, payhsm_key *k, const char *fn, const char *modes) {
  int r;
  if ((r = payhsm_key_usage(L, k, fn, "K0", modes))) return r;
  if (k->alg != PAYHSM_ALG_TDES_2KEY && k->alg != PAYHSM_ALG_TDES_3KEY)
    return payhsm_fail(L, fn, "KEY_TYPE", "AS2805 KEKs are TDES_2KEY or TDES_3KEY, got %s", payhsm_alg_name(k->alg));
  return 0;
}

static int mask_opt(lua_State *L, int idx) {
  int m;
  if (lua_isnoneornil(L, idx)) return luaL_error(L, "as2805: options with variant_mask are required");
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "variant_mask");
  if (lua_isnil(L, -1)) return luaL_error(L, "as2805: variant_mask is required (VARIANT_MASK_82C0 or VARIANT_MASK_82)");
  m = payhsm_checkname(L, -1, "variant mask", mask_names);
  lua_pop(L, 1);
  return m;
}

/* enc = 1: out = E(KEK xor mask)(in); 0: decrypt. n a multiple of 8. */
static int variant_crypt(lua_State *L, payhsm_key *kek, int m, int enc, const unsigned char *in, unsigned char *out,
                         size_t n) {
  unsigned char kx[24];
  payhsm_key t;
  size_t i;
  int ok;
  for (i = 0; i < kek->len; i++) kx[i] = (unsigned char)(kek->bytes[i] ^ masks[m][i % 2]);
  ok = payhsm_key_init(&t, kek->alg, kx, kek->len);
  OPENSSL_cleanse(kx, sizeof kx);
  ok = ok && payhsm_key_crypt(L, &t, enc, NULL, in, out, n);
  payhsm_key_clear(&t);
  return ok;
}

/* core.as2805.kek_validation_request(kek, opts) -> {random_key_send, random_key_receive, kcv} */
static int as2805_request(lua_State *L) {
  static const char fn[] = "as2805.kek_validation_request";
  static const char *const lengths[] = {"BYTES_8", "BYTES_16", "BYTES_24", NULL};
  static const char *const algs[] = {"TDES_2KEY", "TDES_3KEY", NULL};
  static const char *const fields[] = {"variant_mask", "random_key_max_length", "derive_algorithm", NULL};
  payhsm_key *kek = payhsm_checkkey(L, 1);
  int m = (payhsm_checkfields(L, 2, fn, fields), mask_opt(L, 2)), r, alg = 0, len = 1;
  unsigned char kr[48], both[48], krs[24], krr[24], kcv[3];
  size_t n, i;
  if (lua_getfield(L, 2, "random_key_max_length") != LUA_TNIL) len = payhsm_checkname(L, -1, "random key length", lengths);
  if (lua_getfield(L, 2, "derive_algorithm") != LUA_TNIL) alg = payhsm_checkname(L, -1, "derive key algorithm", algs);
  lua_pop(L, 2);
  if ((r = check_kek(L, kek, fn, "EBN"))) return r;
  if ((alg == 0) != (kek->alg == PAYHSM_ALG_TDES_2KEY))
    return payhsm_fail(L, fn, "KEY_TYPE", "derive_algorithm %s does not match the %s KEK", algs[alg],
                       payhsm_alg_name(kek->alg));
  n = (size_t)(8 * (len + 1));
  if (RAND_priv_bytes(kr, (int)n) != 1) return payhsm_raise_ossl(L, fn);
  for (i = 0; i < n; i++) kr[n + i] = (unsigned char)~kr[i]; /* KR || ~KR: one keying, one ECB call */
  r = variant_crypt(L, kek, m, 1, kr, both, 2 * n) && payhsm_kcv_compute(L, kek, 0, kcv);
  memcpy(krs, both, n);
  memcpy(krr, both + n, n);
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
  size_t n, i;
  int ok;
  n = payhsm_hexarg(L, krs_idx, fn, "random_key_send", krs, sizeof krs);
  if (n == (size_t)-1) return 0;
  if (n != 8 && n != 16 && n != 24) {
    payhsm_fail(L, fn, "AS2805_KRS_LENGTH", "random key send must be 8, 16 or 24 bytes, got %d", (int)n);
    return 0;
  }
  ok = variant_crypt(L, kek, m, 0, krs, kr, n);
  for (i = 0; i < n; i++) kr[i] = (unsigned char)~kr[i];
  ok = ok && variant_crypt(L, kek, m, 1, kr, krr, n);
  OPENSSL_cleanse(kr, sizeof kr);
  if (!ok) payhsm_raise_ossl(L, fn);
  return n;
}

/* core.as2805.kek_validation_response(kek, random_key_send, {variant_mask=}) -> random_key_receive */
static int as2805_response(lua_State *L) {
  static const char fn[] = "as2805.kek_validation_response";
  static const char *const fields[] = {"variant_mask", NULL};
  payhsm_key *kek = payhsm_checkkey(L, 1);
  int m = (payhsm_checkfields(L, 3, fn, fields), mask_opt(L, 3)), r;
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
  static const char *const fields[] = {"variant_mask", NULL};
  payhsm_key *kek = payhsm_checkkey(L, 1);
  int m = (payhsm_checkfields(L, 4, fn, fields), mask_opt(L, 4)), r;
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

void payhsm_as2805_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"kek_validation_request", as2805_request}, {"kek_validation_response", as2805_response},
    {"kek_validation_verify", as2805_verify}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "as2805");
}

/*
 * sigv4.c - the two primitives AWS Signature Version 4 needs that a payment HSM
 * does not otherwise expose (AWS General Reference, "Create a signed AWS API
 * request", tasks 1 to 4): SHA-256 of request parts and the signing-key chain.
 *
 * Lua:
 *   core.digest(alg, data) -> hex         alg "SHA256" | "SHA384" | "SHA512"; data is
 *                                          any string (bytes); upper-case hex out
 *   core.sigv4.signing_key(secret, date, region, service) -> key
 *        kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" .. secret, date), region), service),
 *        "aws4_request") as a payhsm.Key (HMAC_SHA256, usage M7, mode C), so the
 *        derived bytes never become a Lua string; core.hmac(key, string_to_sign) then
 *        gives the signature. Every intermediate is cleansed.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "payhsm.h"

/* core.digest(alg, data) -> upper-case hex of the digest of data (FIPS 180-4). */
static int l_digest(lua_State *L) {
  static const char *const names[] = {"SHA256", "SHA384", "SHA512", NULL};
  static const payhsm_alg algs[] = {PAYHSM_ALG_HMAC_SHA256, PAYHSM_ALG_HMAC_SHA384, PAYHSM_ALG_HMAC_SHA512};
  int which = payhsm_checkname(L, 1, "digest", names);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdn = 0;
  if (!EVP_Digest(data, n, md, &mdn, payhsm_md_for(algs[which]), NULL)) return payhsm_raise_ossl(L, "digest");
  payhsm_pushhex(L, md, mdn);
  return 1;
}

static int hmac256(const unsigned char *key, size_t klen, const char *msg, size_t mlen, unsigned char out[32]) {
  size_t outlen = 0;
  return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, klen, (const unsigned char *)msg, mlen, out, 32,
                   &outlen) != NULL && outlen == 32;
}

/* core.sigv4.signing_key(secret, date, region, service) -> key (AWS SigV4 task 4) */
static int l_signing_key(lua_State *L) {
  static const char fn[] = "sigv4.signing_key";
  size_t slen, n[3];
  const char *secret = luaL_checklstring(L, 1, &slen);
  const char *part[3];
  unsigned char buf[4 + 256], k[32];
  payhsm_key *key;
  int i, ok;
  part[0] = luaL_checklstring(L, 2, &n[0]);
  part[1] = luaL_checklstring(L, 3, &n[1]);
  part[2] = luaL_checklstring(L, 4, &n[2]);
  luaL_argcheck(L, slen > 0 && slen <= 256, 1, "secret access key must be 1..256 characters");
  key = payhsm_pushkey(L, PAYHSM_ALG_HMAC_SHA256, (const unsigned char *)"\0", 1); /* shell first */
  memcpy(buf, "AWS4", 4);
  memcpy(buf + 4, secret, slen);
  ok = hmac256(buf, 4 + slen, part[0], n[0], k);
  for (i = 1; ok && i < 3; i++) ok = hmac256(k, 32, part[i], n[i], k);
  ok = ok && hmac256(k, 32, "aws4_request", 12, k);
  OPENSSL_cleanse(buf, sizeof buf);
  if (!ok) {
    OPENSSL_cleanse(k, sizeof k);
    return payhsm_raise_ossl(L, fn);
  }
  payhsm_key_clear(key);
  ok = payhsm_key_init(key, PAYHSM_ALG_HMAC_SHA256, k, 32);
  OPENSSL_cleanse(k, sizeof k);
  if (!ok) return luaL_error(L, "%s: out of secure memory", fn);
  memcpy(key->usage, "M7", 3);
  key->mode = 'C';
  key->exportability = 'N';
  return 1;
}

void payhsm_sigv4_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"signing_key", l_signing_key}, {NULL, NULL}};
  lua_pushcfunction(L, l_digest);
  lua_setfield(L, -2, "digest");
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  lua_setfield(L, -2, "sigv4");
}

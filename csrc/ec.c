/*
 * ec.c - elliptic-curve key pairs (NIST P-256, P-384 and P-521, FIPS 186-5) and ECDH key
 * agreement with the two key derivation functions AWS Payment Cryptography names for it
 * (EcdhDerivationAttributes, DiffieHellmanTr31KeyBlock):
 *   NIST_SP800  the one-step KDF of NIST SP 800-56C rev 2 section 4.1 with a hash:
 *               K = H(counter || Z || FixedInfo) || ..., counter from 1, 32 bits big-endian
 *               (python3-cryptography's ConcatKDFHash, which AWS's ECDH samples use);
 *   ANSI_X963   the KDF of ANSI X9.63-2011 section 5.6.3 (SEC 1 v2 section 3.6.1):
 *               K = H(Z || counter || SharedInfo) || ...
 * Z is the ECDH shared secret of NIST SP 800-56A rev 3 section 5.7.1.2 (the x-coordinate,
 * as long as the field); the shared information is the FixedInfo / SharedInfo.
 *
 * Two userdata types, laid out as rsa.c's (one EVP_PKEY pointer):
 *   payhsm.EcKey        a private key: :public_der(), :public(), :wrap(kek), :curve(), :close()
 *   payhsm.EcPublicKey  a public key: :public_der(), :curve(), :close()
 * tostring shows the type, the curve and the first 8 bytes of the SHA-256 of the DER
 * SubjectPublicKeyInfo, never private material.
 *
 * Lua:
 *   core.ec.generate(curve) -> EcKey          curve "P-256" | "P-384" | "P-521"
 *   core.ec.public(der_hex) -> EcPublicKey | nil, msg, "EC_PUBLIC" | "BAD_HEX"
 *   key:public_der() -> hex of the DER SubjectPublicKeyInfo (RFC 5480)
 *   key:wrap(kek) -> hex: PKCS#8 under AES key wrap with padding (kwp.c)
 *   core.ec.unwrap(kek, hex) -> EcKey | nil, msg, "EC_UNWRAP" | "BAD_HEX" | "KEY_USAGE"
 *   core.ec.derive(private, peer, opts) -> key | nil, msg, code
 *        ECDH between private (EcKey) and peer (EcPublicKey, or an EcKey's public half),
 *        then the KDF over Z into a new key. opts (all but attrs required):
 *          kdf = "NIST_SP800" | "ANSI_X963", hash = "SHA_256" | "SHA_384" | "SHA_512",
 *          shared_info = hex (may be ""), algorithm = the derived key's algorithm (its
 *          length: TDES_2KEY 16 bytes with odd parity set, ... AES_256 32, HMAC keys as
 *          long as their digest), attrs = TR-31 attributes for the new key.
 *        Z and the derived bytes stay in C and are cleansed on every path. Codes EC_CURVE
 *        (the keys are on different curves), BAD_HEX.
 */
#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/x509.h>

#include "payhsm.h"

#define EC_PRIV_MT "payhsm.EcKey"
#define EC_PUB_MT "payhsm.EcPublicKey"

typedef struct {
  EVP_PKEY *pkey; /* NULL once closed (or before it is filled) */
} ec_key;

/* OpenSSL's group names and the NIST names payhsm uses, in the same order. */
static const char *const group_names[] = {"prime256v1", "secp384r1", "secp521r1", NULL};
static const char *const curve_names[] = {"P-256", "P-384", "P-521", NULL};

/* The curve of pkey as an index into curve_names, -1 for another curve or key type. */
static int curve_of(EVP_PKEY *pkey) {
  char name[64];
  size_t len = 0;
  int i;
  if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC) return -1;
  if (EVP_PKEY_get_group_name(pkey, name, sizeof name, &len) != 1) return -1;
  for (i = 0; group_names[i]; i++)
    if (!strcmp(name, group_names[i])) return i;
  return -1;
}

static ec_key *push_shell(lua_State *L, const char *mt) { return (ec_key *)(void *)payhsm_pkey_push(L, mt); }

static ec_key *check_open(lua_State *L, int idx, const char *mt) {
  ec_key *k = (ec_key *)luaL_checkudata(L, idx, mt);
  if (!k->pkey) luaL_error(L, "ec key has been closed");
  return k;
}

static ec_key *test_any(lua_State *L, int idx) {
  ec_key *k = (ec_key *)luaL_testudata(L, idx, EC_PRIV_MT);
  if (!k) k = (ec_key *)luaL_testudata(L, idx, EC_PUB_MT);
  if (k && !k->pkey) luaL_error(L, "ec key has been closed");
  return k;
}

static ec_key *check_any(lua_State *L, int idx) {
  ec_key *k = test_any(L, idx);
  if (!k) luaL_typeerror(L, idx, "payhsm.EcKey or payhsm.EcPublicKey");
  return k;
}

EVP_PKEY *payhsm_ec_pkey(lua_State *L, int idx, int need_private) {
  ec_key *k = need_private ? (ec_key *)luaL_testudata(L, idx, EC_PRIV_MT) : test_any(L, idx);
  if (k && !k->pkey) luaL_error(L, "ec key has been closed");
  return k ? k->pkey : NULL;
}

void payhsm_ec_push_public(lua_State *L, EVP_PKEY *pkey) {
  push_shell(L, EC_PUB_MT)->pkey = pkey;
}

int payhsm_ec_supported(EVP_PKEY *pkey) { return curve_of(pkey) >= 0; }

static int ec_close(lua_State *L) {
  ec_key *k = (ec_key *)luaL_testudata(L, 1, EC_PRIV_MT);
  if (!k) k = (ec_key *)luaL_checkudata(L, 1, EC_PUB_MT);
  if (k->pkey) {
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
  }
  return 0;
}

/* key:public_der() -> hex of the DER SubjectPublicKeyInfo (RFC 5480), either type */
static int ec_public_der(lua_State *L) {
  ec_key *k = check_any(L, 1);
  size_t n;
  unsigned char *der = payhsm_spki_der(L, k->pkey, &n, "ec.public_der");
  payhsm_pushhex(L, der, n);
  return 1;
}

/* key:curve() -> "P-256" | "P-384" | "P-521", either type */
static int ec_curve(lua_State *L) {
  int c = curve_of(check_any(L, 1)->pkey);
  lua_pushstring(L, c >= 0 ? curve_names[c] : "?");
  return 1;
}

static int ec_tostring(lua_State *L) {
  ec_key *k = (ec_key *)luaL_testudata(L, 1, EC_PRIV_MT);
  const char *kind = "EcKey";
  char hex[17];
  int c;
  if (!k) {
    k = (ec_key *)luaL_checkudata(L, 1, EC_PUB_MT);
    kind = "EcPublicKey";
  }
  if (!k->pkey) {
    lua_pushfstring(L, "payhsm.%s(closed)", kind);
    return 1;
  }
  payhsm_pkey_fingerprint(L, k->pkey, "ec", hex);
  c = curve_of(k->pkey);
  lua_pushfstring(L, "payhsm.%s(%s, SPKI SHA-256 %s...)", kind, c >= 0 ? curve_names[c] : "?", hex);
  return 1;
}

/* key:public() -> EcPublicKey with the same public half */
static int ec_public_of(lua_State *L) {
  payhsm_pkey_public_copy(L, check_open(L, 1, EC_PRIV_MT)->pkey, EC_PUB_MT, "ec.public");
  return 1;
}

/* core.ec.generate(curve) -> EcKey: a FIPS 186-5 key pair from OpenSSL; curve "P-256",
 * "P-384" or "P-521" (raises on another). */
static int ec_generate(lua_State *L) {
  static const char fn[] = "ec.generate";
  int c = payhsm_checkname(L, 1, "curve", curve_names);
  EVP_PKEY_CTX *ctx;
  ec_key *k = push_shell(L, EC_PRIV_MT);
  int ok;
  if (!(ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL))) return payhsm_raise_ossl(L, fn);
  ok = EVP_PKEY_keygen_init(ctx) > 0 && EVP_PKEY_CTX_set_group_name(ctx, group_names[c]) > 0 &&
       EVP_PKEY_generate(ctx, &k->pkey) > 0;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return payhsm_raise_ossl(L, fn);
  return 1;
}

/* core.ec.public(der_hex) -> EcPublicKey | nil, msg, code
 * A DER SubjectPublicKeyInfo of a key on P-256, P-384 or P-521. Codes EC_PUBLIC (not
 * SubjectPublicKeyInfo, another key type or curve), BAD_HEX. */
static int ec_public(lua_State *L) {
  static const char fn[] = "ec.public";
  unsigned char *der;
  const unsigned char *p;
  size_t n = payhsm_hexarg_alloc(L, 1, fn, "public key", 0, &der);
  EVP_PKEY *pkey;
  if (n == (size_t)-1) return 3;
  p = der;
  pkey = d2i_PUBKEY(NULL, &p, (long)n);
  ERR_clear_error();
  if (!pkey || p != der + n) {
    EVP_PKEY_free(pkey);
    return payhsm_fail(L, fn, "EC_PUBLIC", "not a DER SubjectPublicKeyInfo");
  }
  if (curve_of(pkey) < 0) {
    EVP_PKEY_free(pkey);
    return payhsm_fail(L, fn, "EC_PUBLIC", "not an elliptic-curve key on P-256, P-384 or P-521");
  }
  push_shell(L, EC_PUB_MT)->pkey = pkey;
  return 1;
}

/* key:wrap(kek) -> hex: the PKCS#8 PrivateKeyInfo DER (RFC 5208) under AES key wrap with
 * padding (RFC 5649) under kek (AES, usage K0/K1 or none); the clear DER is cleansed. */
static int ec_wrap(lua_State *L) {
  ec_key *k = check_open(L, 1, EC_PRIV_MT);
  return payhsm_pkcs8_wrap(L, k->pkey, payhsm_checkkey(L, 2), "ec.wrap");
}

static EVP_PKEY **ec_shell(lua_State *L) { return &push_shell(L, EC_PRIV_MT)->pkey; }

/* core.ec.unwrap(kek, hex) -> EcKey | nil, msg, code
 * The private key of key:wrap back into an EcKey (the clear DER never leaves C). Codes
 * EC_UNWRAP (integrity check: wrong KEK or altered data; not PKCS#8; not an EC key on a
 * supported curve), BAD_HEX, KEY_USAGE. */
static int ec_unwrap(lua_State *L) {
  int r = payhsm_pkcs8_unwrap(L, 1, 2, "ec.unwrap", "EC_UNWRAP", EVP_PKEY_EC, "elliptic-curve", ec_shell);
  ec_key *k;
  if (r != 1) return r;
  k = (ec_key *)lua_touserdata(L, -1);
  if (curve_of(k->pkey) < 0) {
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
    return payhsm_fail(L, "ec.unwrap", "EC_UNWRAP", "the key is not on P-256, P-384 or P-521");
  }
  return 1;
}

/* The derived key's length: the algorithm's, or the digest's for HMAC keys. */
static size_t derived_len(payhsm_alg alg) {
  const EVP_MD *md;
  if (payhsm_alg_keylen(alg)) return payhsm_alg_keylen(alg);
  md = payhsm_md_for(alg);
  return md ? (size_t)EVP_MD_get_size(md) : 0;
}

/* Runs the KDF (0 SP 800-56C one-step, 1 X9.63) over z into out. Never raises. */
static int run_kdf(int kdf, const char *digest, const unsigned char *z, size_t zlen, const unsigned char *info,
                   size_t ilen, unsigned char *out, size_t n) {
  EVP_KDF *k = EVP_KDF_fetch(NULL, kdf == 0 ? "SSKDF" : "X963KDF", NULL);
  EVP_KDF_CTX *ctx = k ? EVP_KDF_CTX_new(k) : NULL;
  OSSL_PARAM params[4];
  int ok;
  EVP_KDF_free(k);
  if (!ctx) return 0;
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)(uintptr_t)digest, 0);
  params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)z, zlen);
  params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)info, ilen);
  params[3] = OSSL_PARAM_construct_end();
  ok = EVP_KDF_derive(ctx, out, n, params) == 1;
  EVP_KDF_CTX_free(ctx);
  return ok;
}

/* core.ec.derive(private, peer, opts) -> key | nil, msg, code
 * ECDH (NIST SP 800-56A rev 3 5.7.1.2) between private (EcKey) and peer (EcPublicKey, or
 * an EcKey's public half) on one curve, then a KDF over the shared secret Z into a new
 * key. opts: kdf = "NIST_SP800" (SP 800-56C rev 2 4.1 one-step, hash) | "ANSI_X963"
 * (X9.63 5.6.3), hash = "SHA_256" | "SHA_384" | "SHA_512", algorithm = the new key's
 * (TDES keys get odd parity; HMAC keys are as long as their digest), shared_info = hex
 * (optional), attrs = TR-31 attributes of the new key (optional). Z and the derived bytes
 * are cleansed. Raises on unknown fields or names. Codes EC_CURVE, BAD_HEX. */
static int ec_derive(lua_State *L) {
  static const char fn[] = "ec.derive";
  static const char *const allowed[] = {"kdf", "hash", "shared_info", "algorithm", "attrs", NULL};
  static const char *const kdfs[] = {"NIST_SP800", "ANSI_X963", NULL};
  static const char *const hashes[] = {"SHA_256", "SHA_384", "SHA_512", NULL};
  static const char *const digests[] = {"SHA256", "SHA384", "SHA512"};
  ec_key *priv = check_open(L, 1, EC_PRIV_MT);
  ec_key *peer = check_any(L, 2);
  unsigned char *info = NULL, *z, *out;
  size_t ilen = 0, zlen = 0, n;
  int kdf, hash, alg, ok, attrs;
  EVP_PKEY_CTX *ctx;
  payhsm_key *k;
  luaL_checktype(L, 3, LUA_TTABLE);
  payhsm_checkfields(L, 3, fn, allowed);
  lua_getfield(L, 3, "kdf");
  kdf = payhsm_checkname(L, lua_gettop(L), "kdf", kdfs);
  lua_getfield(L, 3, "hash");
  hash = payhsm_checkname(L, lua_gettop(L), "hash", hashes);
  lua_getfield(L, 3, "algorithm");
  alg = payhsm_alg_from_name(luaL_checkstring(L, -1));
  if (alg < 0 || alg == PAYHSM_ALG_DES) return luaL_error(L, "%s: unknown or unfit key algorithm %s", fn, lua_tostring(L, -1));
  lua_getfield(L, 3, "attrs");
  attrs = lua_gettop(L);
  if (!lua_isnil(L, attrs)) luaL_checktype(L, attrs, LUA_TTABLE);
  lua_getfield(L, 3, "shared_info");
  if (!lua_isnil(L, -1)) {
    ilen = payhsm_hexarg_alloc(L, lua_gettop(L), fn, "shared_info", 0, &info);
    if (ilen == (size_t)-1) return 3;
  }
  if (curve_of(priv->pkey) < 0 || curve_of(priv->pkey) != curve_of(peer->pkey))
    return payhsm_fail(L, fn, "EC_CURVE", "the two keys are not on one curve");
  n = derived_len((payhsm_alg)alg);
  z = lua_newuserdatauv(L, 80, 0); /* P-521: 66 bytes */
  out = lua_newuserdatauv(L, 64, 0);
  k = payhsm_pushkey(L, (payhsm_alg)alg, (const unsigned char *)"\0", 1); /* shell first */
  if (!(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv->pkey, NULL))) return payhsm_raise_ossl(L, fn);
  zlen = 80;
  ok = EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_derive_set_peer(ctx, peer->pkey) > 0 &&
       EVP_PKEY_derive(ctx, z, &zlen) > 0;
  EVP_PKEY_CTX_free(ctx);
  ok = ok && n > 0 && n <= 64 && run_kdf(kdf, digests[hash], z, zlen, info, ilen, out, n);
  OPENSSL_cleanse(z, 80);
  if (ok && payhsm_alg_family((payhsm_alg)alg) == PAYHSM_FAM_DES) payhsm_des_parity(out, n);
  if (ok) {
    payhsm_key_clear(k);
    ok = payhsm_key_init(k, (payhsm_alg)alg, out, n);
  }
  OPENSSL_cleanse(out, 64);
  if (!ok) return payhsm_raise_ossl(L, fn);
  if (!lua_isnil(L, attrs)) payhsm_key_setattrs(L, k, attrs);
  return 1;
}

void payhsm_ec_open(lua_State *L) {
  static const luaL_Reg priv_methods[] = {{"public_der", ec_public_der}, {"public", ec_public_of},
                                          {"wrap", ec_wrap}, {"curve", ec_curve}, {"close", ec_close},
                                          {NULL, NULL}};
  static const luaL_Reg pub_methods[] = {
    {"public_der", ec_public_der}, {"curve", ec_curve}, {"close", ec_close}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__gc", ec_close}, {"__close", ec_close}, {"__tostring", ec_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"generate", ec_generate}, {"public", ec_public}, {"unwrap", ec_unwrap},
                                   {"derive", ec_derive}, {NULL, NULL}};
  payhsm_pkey_types(L, EC_PRIV_MT, EC_PUB_MT, meta, priv_methods, pub_methods);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "ec");
}

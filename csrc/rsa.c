/*
 * rsa.c - RSA key pairs for the multi-use public key service
 * (Commerce Hub's multi-use public keys) and hybrid card-data encryption.
 *
 * Two userdata types:
 *   payhsm.RsaKey        a private key (OpenSSL EVP_PKEY); methods :public_der(),
 *                        :public(), :wrap(kek), :bits(), :close()
 *   payhsm.RsaPublicKey  a public key; methods :public_der(), :bits(), :close()
 * tostring shows the type, the modulus size and the first 8 bytes of the SHA-256
 * of the DER SubjectPublicKeyInfo, never private material. Closing frees the
 * EVP_PKEY (OpenSSL clears the private big numbers as it frees them).
 *
 * Lua:
 *   core.rsa.generate([bits]) -> RsaKey          2048 default, 2048..4096, multiple of 8
 *   core.rsa.public(der_hex) -> RsaPublicKey | nil, msg, "RSA_PUBLIC" | "BAD_HEX"
 *   key:public_der() -> hex of the DER SubjectPublicKeyInfo (RFC 5280 4.1.2.7)
 *   key:wrap(kek) -> hex: the PKCS#8 PrivateKeyInfo DER (RFC 5208) wrapped with AES
 *        key wrap with padding (RFC 5649) under kek (AES_128/192/256, usage K0/K1 or none)
 *   core.rsa.unwrap(kek, hex) -> RsaKey | nil, msg, "RSA_UNWRAP" | "BAD_HEX"
 *   core.rsa.kwp_wrap(kek, hex) -> hex; core.rsa.kwp_verify(kek, wrapped, plain) -> true |
 *        false, msg, "KWP_UNWRAP" | "KWP_MISMATCH" | "BAD_HEX" | "BAD_LENGTH"   (the RFC 5649
 *        primitive, for known answers). No function returns unwrapped bytes: a wrapped
 *        private key only ever becomes an opaque RsaKey inside C.
 *   core.rsa.seal(key, plaintext [, aad]) -> {encrypted_key=, iv=, ciphertext=, tag=}
 *        a fresh AES-256 key (RAND_priv_bytes) encrypts plaintext with AES-256-GCM
 *        (NIST SP 800-38D; 12-byte IV, 16-byte tag, aad authenticated); the AES key is
 *        encrypted with RSAES-OAEP (RFC 8017 7.1; SHA-256, MGF1-SHA-256, empty label).
 *        key is an RsaKey or RsaPublicKey. The AES key never leaves C.
 *   core.rsa.open(priv, sealed [, aad]) -> plaintext | nil, msg, code
 *        codes BAD_HEX, BAD_LENGTH (field sizes), RSA_DECRYPT (OAEP fails: wrong key or
 *        altered encrypted_key), GCM_TAG (altered iv, ciphertext, tag or aad)
 *   core.rsa.gcm_encrypt(aes_key, iv_hex, pt_hex [, aad_hex]) -> ct_hex, tag_hex
 *   core.rsa.gcm_decrypt(aes_key, iv_hex, ct_hex, tag_hex [, aad_hex]) -> pt_hex | nil, msg,
 *        "GCM_TAG"    (the AES-GCM primitive of seal/open under a payhsm AES key, for
 *        known-answer tests; any IV length OpenSSL accepts)
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "payhsm.h"

#define RSA_PRIV_MT "payhsm.RsaKey"
#define RSA_PUB_MT "payhsm.RsaPublicKey"
#define GCM_IV 12
#define GCM_TAG 16
#define AES_KEY 32

typedef struct {
  EVP_PKEY *pkey; /* NULL once closed (or before it is filled) */
} rsa_key;

/* ---- objects ------------------------------------------------------------- */

/* Shell first: a zeroed userdata with its metatable, filled by the caller. */
static rsa_key *push_shell(lua_State *L, const char *mt) { return (rsa_key *)(void *)payhsm_pkey_push(L, mt); }

static rsa_key *check_open(lua_State *L, int idx, const char *mt) {
  rsa_key *k = (rsa_key *)luaL_checkudata(L, idx, mt);
  if (!k->pkey) luaL_error(L, "rsa key has been closed");
  return k;
}

/* Either type (seal, public_der, bits). */
static rsa_key *check_any(lua_State *L, int idx) {
  rsa_key *k = (rsa_key *)luaL_testudata(L, idx, RSA_PRIV_MT);
  if (!k) k = (rsa_key *)luaL_testudata(L, idx, RSA_PUB_MT);
  if (!k) luaL_typeerror(L, idx, "payhsm.RsaKey or payhsm.RsaPublicKey");
  if (!k->pkey) luaL_error(L, "rsa key has been closed");
  return k;
}

EVP_PKEY *payhsm_rsa_pkey(lua_State *L, int idx) {
  rsa_key *k = (rsa_key *)luaL_testudata(L, idx, RSA_PRIV_MT);
  if (k && !k->pkey) luaL_error(L, "rsa key has been closed");
  return k ? k->pkey : NULL;
}

/* :close(), __close, __gc of both types: one idempotent free. */
static int rsa_close(lua_State *L) {
  rsa_key *k = (rsa_key *)luaL_testudata(L, 1, RSA_PRIV_MT);
  if (!k) k = (rsa_key *)luaL_checkudata(L, 1, RSA_PUB_MT);
  if (k->pkey) {
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
  }
  return 0;
}

/* key:public_der() -> hex of the DER SubjectPublicKeyInfo */
static int rsa_public_der(lua_State *L) {
  rsa_key *k = check_any(L, 1);
  size_t n;
  unsigned char *der = payhsm_spki_der(L, k->pkey, &n, "rsa.public_der");
  payhsm_pushhex(L, der, n);
  return 1;
}

/* key:bits() -> modulus size in bits */
static int rsa_bits(lua_State *L) {
  rsa_key *k = check_any(L, 1);
  lua_pushinteger(L, EVP_PKEY_get_bits(k->pkey));
  return 1;
}

static int rsa_tostring(lua_State *L) {
  rsa_key *k = (rsa_key *)luaL_testudata(L, 1, RSA_PRIV_MT);
  const char *kind = "RsaKey";
  char hex[17];
  if (!k) {
    k = (rsa_key *)luaL_checkudata(L, 1, RSA_PUB_MT);
    kind = "RsaPublicKey";
  }
  if (!k->pkey) {
    lua_pushfstring(L, "payhsm.%s(closed)", kind);
    return 1;
  }
  payhsm_pkey_fingerprint(L, k->pkey, "rsa", hex);
  lua_pushfstring(L, "payhsm.%s(RSA-%d, SPKI SHA-256 %s...)", kind, EVP_PKEY_get_bits(k->pkey), hex);
  return 1;
}

/* key:public() -> RsaPublicKey with the same public half */
static int rsa_public_of(lua_State *L) {
  payhsm_pkey_public_copy(L, check_open(L, 1, RSA_PRIV_MT)->pkey, RSA_PUB_MT, "rsa.public");
  return 1;
}

/* core.rsa.generate([bits]) -> RsaKey (FIPS 186-5 key pair from OpenSSL, e = 65537) */
static int rsa_generate(lua_State *L) {
  static const char fn[] = "rsa.generate";
  lua_Integer bits = luaL_optinteger(L, 1, 2048);
  EVP_PKEY_CTX *ctx;
  rsa_key *k;
  int ok;
  luaL_argcheck(L, bits >= 2048 && bits <= 4096 && bits % 8 == 0, 1, "bits must be 2048..4096, a multiple of 8");
  k = push_shell(L, RSA_PRIV_MT);
  if (!(ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL))) return payhsm_raise_ossl(L, fn);
  ok = EVP_PKEY_keygen_init(ctx) > 0 && EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) > 0 &&
       EVP_PKEY_generate(ctx, &k->pkey) > 0;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return payhsm_raise_ossl(L, fn);
  return 1;
}

/* core.rsa.public(der_hex) -> RsaPublicKey | nil, msg, code */
static int rsa_public(lua_State *L) {
  static const char fn[] = "rsa.public";
  unsigned char *der;
  const unsigned char *p;
  size_t n = payhsm_hexarg_alloc(L, 1, fn, "public key", 0, &der);
  rsa_key *k;
  EVP_PKEY *pkey;
  if (n == (size_t)-1) return 3;
  p = der;
  pkey = d2i_PUBKEY(NULL, &p, (long)n);
  if (!pkey || p != der + n) {
    EVP_PKEY_free(pkey);
    return payhsm_fail(L, fn, "RSA_PUBLIC", "not a DER SubjectPublicKeyInfo");
  }
  if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
    EVP_PKEY_free(pkey);
    return payhsm_fail(L, fn, "RSA_PUBLIC", "not an RSA public key");
  }
  k = push_shell(L, RSA_PUB_MT); /* cannot raise after this but on memory */
  k->pkey = pkey;
  return 1;
}

/* ---- the private key under a KEK (kwp.c) ------------------------------------ */

/* key:wrap(kek) -> hex of KWP(kek, PKCS#8 PrivateKeyInfo DER)
 * RFC 5208 inside RFC 5649 section 4.1 (kwp.c): the clear DER exists only in a scratch
 * that is cleansed before anything can raise. kek: AES, usage K0/K1 or none. */
static int rsa_wrap(lua_State *L) {
  rsa_key *k = check_open(L, 1, RSA_PRIV_MT);
  return payhsm_pkcs8_wrap(L, k->pkey, payhsm_checkkey(L, 2), "rsa.wrap");
}

static EVP_PKEY **rsa_shell(lua_State *L) { return &push_shell(L, RSA_PRIV_MT)->pkey; }

/* core.rsa.unwrap(kek, hex) -> RsaKey | nil, msg, code
 * KWP-unwraps (RFC 5649 4.2) a PKCS#8 RSA private key into an RsaKey; the clear DER exists
 * only in a scratch cleansed on every path. Codes RSA_UNWRAP (integrity check, not PKCS#8,
 * not RSA), BAD_HEX, KEY_USAGE. */
static int rsa_unwrap(lua_State *L) {
  return payhsm_pkcs8_unwrap(L, 1, 2, "rsa.unwrap", "RSA_UNWRAP", EVP_PKEY_RSA, "RSA", rsa_shell);
}

/* ---- AES-256-GCM (NIST SP 800-38D) ---------------------------------------- */

/* GCM over n bytes with key (klen bytes: 16, 24 or 32). enc: tag is written; decrypt:
 * tag is checked. Returns 1 on success, 0 on tag mismatch, -1 on an OpenSSL failure
 * (never raises, so callers can cleanse key material before they raise). */
static int gcm_run(lua_State *L, int enc, const unsigned char *key, size_t klen, const unsigned char *iv,
                   size_t ivn, const unsigned char *aad, size_t aadn, const unsigned char *in, size_t n,
                   unsigned char *out, unsigned char *tag, const char *fn) {
  const EVP_CIPHER *c = klen == 16 ? EVP_aes_128_gcm() : klen == 24 ? EVP_aes_192_gcm() : EVP_aes_256_gcm();
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int l = 0, lf = 0, ok;
  (void)L;
  (void)fn;
  if (!ctx) return -1;
  ok = EVP_CipherInit_ex(ctx, c, NULL, NULL, NULL, enc) == 1 &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, (int)ivn, NULL) == 1 &&
       EVP_CipherInit_ex(ctx, NULL, NULL, key, iv, enc) == 1 &&
       (aadn == 0 || EVP_CipherUpdate(ctx, NULL, &l, aad, (int)aadn) == 1) &&
       (n == 0 || EVP_CipherUpdate(ctx, out, &l, in, (int)n) == 1) &&
       (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG, tag) == 1);
  if (!ok) {
    EVP_CIPHER_CTX_free(ctx);
    return -1;
  }
  ok = EVP_CipherFinal_ex(ctx, out + (n ? (size_t)l : 0), &lf) == 1;
  if (ok && enc) ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG, tag) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok && enc) return -1;
  if (!ok) ERR_clear_error();
  return ok;
}

static const unsigned char *opt_aad(lua_State *L, int idx, size_t *n) {
  if (lua_isnoneornil(L, idx)) { *n = 0; return (const unsigned char *)""; }
  return (const unsigned char *)luaL_checklstring(L, idx, n);
}

/* Encrypts or decrypts the 32-byte AES key with RSAES-OAEP (SHA-256, MGF1-SHA-256).
 * Returns the output length, 0 when decryption fails (wrong key or altered data), or
 * (size_t)-1 on an OpenSSL failure (never raises). */
static size_t oaep_run(lua_State *L, EVP_PKEY *pkey, int enc, const unsigned char *in, size_t n,
                       unsigned char *out, size_t cap, const char *fn) {
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
  size_t outlen = cap;
  int ok;
  (void)L;
  (void)fn;
  if (!ctx) return (size_t)-1;
  ok = (enc ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) > 0 &&
       EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
       EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) > 0 &&
       EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) > 0;
  if (!ok) {
    EVP_PKEY_CTX_free(ctx);
    return (size_t)-1;
  }
  ok = (enc ? EVP_PKEY_encrypt(ctx, out, &outlen, in, n) : EVP_PKEY_decrypt(ctx, out, &outlen, in, n)) > 0;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) {
    if (enc) return (size_t)-1;
    ERR_clear_error();
    return 0;
  }
  return outlen;
}

/* core.rsa.seal(key, plaintext [, aad]) -> {encrypted_key=, iv=, ciphertext=, tag=} */
static int rsa_seal(lua_State *L) {
  static const char fn[] = "rsa.seal";
  rsa_key *k = check_any(L, 1);
  size_t n, aadn, ekn;
  const unsigned char *pt = (const unsigned char *)luaL_checklstring(L, 2, &n);
  const unsigned char *aad = opt_aad(L, 3, &aadn);
  unsigned char aes[AES_KEY], iv[GCM_IV], tag[GCM_TAG], ek[512], *ct;
  int r;
  if (n > (size_t)1 << 30) return luaL_error(L, "%s: plaintext too long", fn);
  ct = lua_newuserdatauv(L, n ? n : 1, 0);
  if (RAND_priv_bytes(aes, AES_KEY) != 1 || !payhsm_random(iv, GCM_IV)) return payhsm_raise_ossl(L, fn);
  /* the AES key is cleansed before anything can raise */
  ekn = oaep_run(L, k->pkey, 1, aes, AES_KEY, ek, sizeof ek, fn);
  r = ekn == (size_t)-1 ? -1 : gcm_run(L, 1, aes, AES_KEY, iv, GCM_IV, aad, aadn, pt, n, ct, tag, fn);
  OPENSSL_cleanse(aes, AES_KEY);
  if (r != 1) return payhsm_raise_ossl(L, fn);
  lua_createtable(L, 0, 4);
  payhsm_pushhex(L, ek, ekn);
  lua_setfield(L, -2, "encrypted_key");
  payhsm_pushhex(L, iv, GCM_IV);
  lua_setfield(L, -2, "iv");
  payhsm_pushhex(L, ct, n);
  lua_setfield(L, -2, "ciphertext");
  payhsm_pushhex(L, tag, GCM_TAG);
  lua_setfield(L, -2, "tag");
  return 1;
}

/* Decodes field name of the table at idx into buf (cap); -1 after pushing a failure. */
static size_t field_hex(lua_State *L, int idx, const char *fn, const char *name, unsigned char *buf, size_t cap,
                        size_t want) {
  size_t len, n;
  const char *s = payhsm_optfield_str(L, idx, name, &len);
  if (!s) { payhsm_fail(L, fn, "BAD_LENGTH", "%s is missing", name); return (size_t)-1; }
  if (len % 2 == 0 && len / 2 > cap) { payhsm_fail(L, fn, "BAD_LENGTH", "%s is too long", name); return (size_t)-1; }
  n = payhsm_hex_decode(s, len, buf, cap);
  if (n == (size_t)-1) { payhsm_fail(L, fn, "BAD_HEX", "%s is not valid hex", name); return (size_t)-1; }
  if (want && n != want) {
    payhsm_fail(L, fn, "BAD_LENGTH", "%s must be %d bytes, got %d", name, (int)want, (int)n);
    return (size_t)-1;
  }
  return n;
}

/* core.rsa.open(priv, sealed [, aad]) -> plaintext | nil, msg, code */
static int rsa_open(lua_State *L) {
  static const char fn[] = "rsa.open";
  rsa_key *k = check_open(L, 1, RSA_PRIV_MT);
  size_t aadn, ekn, ctn, ctlen, aesn, modn;
  const unsigned char *aad;
  const char *cts;
  unsigned char aes[512], iv[GCM_IV], tag[GCM_TAG], ek[512], *ct, *pt;
  int ok;
  static const char *const fields[] = {"encrypted_key", "iv", "ciphertext", "tag", NULL};
  luaL_checktype(L, 2, LUA_TTABLE);
  payhsm_checkfields(L, 2, fn, fields);
  aad = opt_aad(L, 3, &aadn);
  modn = (size_t)EVP_PKEY_get_size(k->pkey);
  if ((ekn = field_hex(L, 2, fn, "encrypted_key", ek, sizeof ek, modn)) == (size_t)-1) return 3;
  if (field_hex(L, 2, fn, "iv", iv, sizeof iv, GCM_IV) == (size_t)-1) return 3;
  if (field_hex(L, 2, fn, "tag", tag, sizeof tag, GCM_TAG) == (size_t)-1) return 3;
  if (!(cts = payhsm_optfield_str(L, 2, "ciphertext", &ctlen)))
    return payhsm_fail(L, fn, "BAD_LENGTH", "ciphertext is missing");
  ct = lua_newuserdatauv(L, ctlen / 2 + 1, 0);
  pt = lua_newuserdatauv(L, ctlen / 2 + 1, 0);
  if ((ctn = payhsm_hex_decode(cts, ctlen, ct, ctlen / 2 + 1)) == (size_t)-1)
    return payhsm_fail(L, fn, "BAD_HEX", "ciphertext is not valid hex");
  aesn = oaep_run(L, k->pkey, 0, ek, ekn, aes, sizeof aes, fn);
  if (aesn == (size_t)-1) {
    OPENSSL_cleanse(aes, sizeof aes);
    return payhsm_raise_ossl(L, fn);
  }
  if (aesn != AES_KEY) {
    OPENSSL_cleanse(aes, sizeof aes);
    return payhsm_fail(L, fn, "RSA_DECRYPT", "the encrypted key does not decrypt: wrong key or altered data");
  }
  ok = gcm_run(L, 0, aes, AES_KEY, iv, GCM_IV, aad, aadn, ct, ctn, pt, tag, fn);
  OPENSSL_cleanse(aes, sizeof aes);
  if (ok < 0) return payhsm_raise_ossl(L, fn);
  if (!ok) {
    OPENSSL_cleanse(pt, ctn);
    return payhsm_fail(L, fn, "GCM_TAG", "authentication tag does not verify: altered data or wrong key");
  }
  lua_pushlstring(L, (const char *)pt, ctn);
  OPENSSL_cleanse(pt, ctn);
  return 1;
}

static payhsm_key *gcm_key(lua_State *L, int idx, const char *fn) {
  payhsm_key *k = payhsm_checkkey(L, idx);
  if (payhsm_alg_family(k->alg) != PAYHSM_FAM_AES)
    luaL_error(L, "%s: GCM needs an AES key, got %s", fn, payhsm_alg_name(k->alg));
  return k;
}

/* core.rsa.gcm_encrypt(aes_key, iv_hex, pt_hex [, aad_hex]) -> ct_hex, tag_hex */
static int rsa_gcm_encrypt(lua_State *L) {
  static const char fn[] = "rsa.gcm_encrypt";
  payhsm_key *k = gcm_key(L, 1, fn);
  unsigned char iv[64], tag[GCM_TAG], *pt, *aad = NULL, *ct;
  size_t ivn, n, aadn = 0;
  int r;
  if ((r = payhsm_key_usage(L, k, fn, "D0", "EBN"))) return r;
  if ((ivn = payhsm_hexarg(L, 2, fn, "IV", iv, sizeof iv)) == (size_t)-1) return 3;
  if (ivn == 0) return payhsm_fail(L, fn, "BAD_LENGTH", "IV must not be empty");
  if ((n = payhsm_hexarg_alloc(L, 3, fn, "plaintext", 1, &pt)) == (size_t)-1) return 3;
  if (!lua_isnoneornil(L, 4) && (aadn = payhsm_hexarg_alloc(L, 4, fn, "AAD", 1, &aad)) == (size_t)-1) return 3;
  ct = lua_newuserdatauv(L, n + 1, 0);
  r = gcm_run(L, 1, k->bytes, k->len, iv, ivn, aad, aadn, pt, n, ct, tag, fn);
  OPENSSL_cleanse(pt, n);
  if (r != 1) return payhsm_raise_ossl(L, fn);
  payhsm_pushhex(L, ct, n);
  payhsm_pushhex(L, tag, GCM_TAG);
  return 2;
}

/* core.rsa.gcm_decrypt(aes_key, iv_hex, ct_hex, tag_hex [, aad_hex]) -> pt_hex | nil, msg, code */
static int rsa_gcm_decrypt(lua_State *L) {
  static const char fn[] = "rsa.gcm_decrypt";
  payhsm_key *k = gcm_key(L, 1, fn);
  unsigned char iv[64], tag[GCM_TAG], *ct, *aad = NULL, *pt;
  size_t ivn, n, tn, aadn = 0;
  int r;
  if ((r = payhsm_key_usage(L, k, fn, "D0", "DBN"))) return r;
  if ((ivn = payhsm_hexarg(L, 2, fn, "IV", iv, sizeof iv)) == (size_t)-1) return 3;
  if (ivn == 0) return payhsm_fail(L, fn, "BAD_LENGTH", "IV must not be empty");
  if ((n = payhsm_hexarg_alloc(L, 3, fn, "ciphertext", 1, &ct)) == (size_t)-1) return 3;
  if ((tn = payhsm_hexarg(L, 4, fn, "tag", tag, sizeof tag)) == (size_t)-1) return 3;
  if (tn != GCM_TAG) return payhsm_fail(L, fn, "BAD_LENGTH", "tag must be 16 bytes, got %d", (int)tn);
  if (!lua_isnoneornil(L, 5) && (aadn = payhsm_hexarg_alloc(L, 5, fn, "AAD", 1, &aad)) == (size_t)-1) return 3;
  pt = lua_newuserdatauv(L, n + 1, 0);
  if ((r = gcm_run(L, 0, k->bytes, k->len, iv, ivn, aad, aadn, ct, n, pt, tag, fn)) < 0)
    return payhsm_raise_ossl(L, fn);
  if (!r) {
    OPENSSL_cleanse(pt, n);
    return payhsm_fail(L, fn, "GCM_TAG", "authentication tag does not verify");
  }
  payhsm_pushhex(L, pt, n);
  OPENSSL_cleanse(pt, n);
  return 1;
}

void payhsm_rsa_open(lua_State *L) {
  static const luaL_Reg priv_methods[] = {
    {"public_der", rsa_public_der}, {"public", rsa_public_of}, {"wrap", rsa_wrap},
    {"bits", rsa_bits}, {"close", rsa_close}, {NULL, NULL}};
  static const luaL_Reg pub_methods[] = {
    {"public_der", rsa_public_der}, {"bits", rsa_bits}, {"close", rsa_close}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__gc", rsa_close}, {"__close", rsa_close}, {"__tostring", rsa_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"generate", rsa_generate}, {"public", rsa_public}, {"unwrap", rsa_unwrap},
    {"kwp_wrap", payhsm_kwp_wrap}, {"kwp_verify", payhsm_kwp_verify}, {"seal", rsa_seal}, {"open", rsa_open},
    {"gcm_encrypt", rsa_gcm_encrypt}, {"gcm_decrypt", rsa_gcm_decrypt}, {NULL, NULL}};
  payhsm_pkey_types(L, RSA_PRIV_MT, RSA_PUB_MT, meta, priv_methods, pub_methods);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "rsa");
}

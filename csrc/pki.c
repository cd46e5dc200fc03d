/*
 * pki.c - X.509 certificates and RSA-OAEP key cryptograms for key exchange as AWS
 * Payment Cryptography does it (user guide, "Import and export keys": root and
 * trusted public key certificates, wrapping and signing certificates, and
 * "KeyCryptogram" = RSAES-OAEP over the clear key bytes, RFC 8017 section 7.1).
 *
 * Lua:
 *   core.pki.certificate(signer, subject, opts) -> PEM
 *        an X.509 v3 certificate (RFC 5280) for subject's public key (RsaKey,
 *        RsaPublicKey, EcKey or EcPublicKey) signed by signer (RsaKey: sha256WithRSAEncryption;
 *        EcKey: ecdsa-with-SHA256, RFC 5758). opts: subject (CN, required), issuer (CN,
 *        required), ca (boolean: basic constraints CA:TRUE and keyCertSign), usage ("sign"
 *        | "encipher" | "agree", leaf key usage: digitalSignature, keyEncipherment or
 *        keyAgreement), days (1..36500, default 365), not_before (seconds since the epoch,
 *        default now).
 *   core.pki.parse(pem) -> {public_key =, subject =, issuer =, ca =, not_before =,
 *        not_after =} | nil, msg, "PKI_CERT"   (RSA keys, and EC keys on P-256, P-384 and
 *        P-521 as EcPublicKey; subject and issuer are the one-line RFC 2253 form)
 *   core.pki.verify(pem, issuer_key) -> true | false, msg, "PKI_SIGNATURE" | nil, msg,
 *        "PKI_CERT"
 *   core.pki.oaep_wrap(public, key, digest) -> hex of RSAES-OAEP(key bytes), digest
 *        "SHA_256" | "SHA_512" (MGF1 with the same digest, empty label). key must be
 *        exportable (else nil, msg, "KEY_EXPORTABILITY").
 *   core.pki.oaep_unwrap(private, hex, digest, algorithm [, attrs]) -> key | nil, msg,
 *        "RSA_DECRYPT" | "KEY_LENGTH" | "BAD_HEX". The clear bytes stay in a scratch
 *        that is cleansed on every path.
 */
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "payhsm.h"

#define RSA_PRIV_MT "payhsm.RsaKey"
#define RSA_PUB_MT "payhsm.RsaPublicKey"

typedef struct {
  EVP_PKEY *pkey;
} pki_rsa; /* the layout of rsa.c's RsaKey / RsaPublicKey userdata */

static EVP_PKEY *check_rsa(lua_State *L, int idx, int need_private) {
  pki_rsa *k = (pki_rsa *)luaL_testudata(L, idx, RSA_PRIV_MT);
  if (!k && !need_private) k = (pki_rsa *)luaL_testudata(L, idx, RSA_PUB_MT);
  if (!k) luaL_typeerror(L, idx, need_private ? "payhsm.RsaKey" : "payhsm.RsaKey or payhsm.RsaPublicKey");
  if (!k->pkey) luaL_error(L, "rsa key has been closed");
  return k->pkey;
}

/* An RSA or elliptic-curve key (ec.c) for certificates: signer, subject, issuer. */
static EVP_PKEY *check_asym(lua_State *L, int idx, int need_private) {
  EVP_PKEY *ec = payhsm_ec_pkey(L, idx, need_private);
  if (ec) return ec;
  if (luaL_testudata(L, idx, RSA_PRIV_MT) || luaL_testudata(L, idx, RSA_PUB_MT)) return check_rsa(L, idx, need_private);
  luaL_typeerror(L, idx, need_private ? "payhsm.RsaKey or payhsm.EcKey" : "an RSA or EC key");
  return NULL;
}

static int add_ext(X509 *crt, X509 *issuer, int nid, const char *value) {
  X509V3_CTX ctx;
  X509_EXTENSION *ext;
  int ok;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, crt, NULL, NULL, 0);
  ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  if (!ext) return 0;
  ok = X509_add_ext(crt, ext, -1);
  X509_EXTENSION_free(ext);
  return ok;
}

static int set_cn(X509_NAME *name, const char *cn) {
  return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
}

/* core.pki.certificate(signer, subject, opts) -> PEM
 * (see the top for opts). Every OpenSSL object is freed before anything can raise. */
static int l_certificate(lua_State *L) {
  static const char fn[] = "pki.certificate";
  static const char *const allowed[] = {"subject", "issuer", "ca", "usage", "days", "not_before", NULL};
  EVP_PKEY *signer = check_asym(L, 1, 1), *subject = check_asym(L, 2, 0);
  const char *scn, *icn, *usage;
  int ca;
  lua_Integer days, nb;
  X509 *crt;
  BIO *bio = NULL;
  unsigned char serial[16];
  BIGNUM *bn = NULL;
  BUF_MEM *mem;
  time_t start;
  int ok;
  luaL_checktype(L, 3, LUA_TTABLE);
  payhsm_checkfields(L, 3, fn, allowed);
  scn = payhsm_optfield_str(L, 3, "subject", NULL);
  icn = payhsm_optfield_str(L, 3, "issuer", NULL);
  usage = payhsm_optfield_str(L, 3, "usage", NULL);
  lua_getfield(L, 3, "ca");
  ca = lua_toboolean(L, -1);
  lua_pop(L, 1);
  days = payhsm_optfield_int(L, 3, "days", 365);
  nb = payhsm_optfield_int(L, 3, "not_before", (lua_Integer)time(NULL));
  luaL_argcheck(L, scn && icn, 3, "pki.certificate: subject and issuer are required");
  luaL_argcheck(L, days >= 1 && days <= 36500, 3, "pki.certificate: days must be 1..36500");
  luaL_argcheck(L, !usage || !strcmp(usage, "sign") || !strcmp(usage, "encipher") || !strcmp(usage, "agree"), 3,
                "pki.certificate: usage must be 'sign', 'encipher' or 'agree'");
  start = (time_t)nb;
  if (!payhsm_random(serial, sizeof serial)) return payhsm_raise_ossl(L, fn);
  serial[0] &= 0x7F;
  serial[0] |= 0x40;
  if (!(crt = X509_new())) return payhsm_raise_ossl(L, fn);
  ok = X509_set_version(crt, 2) && (bn = BN_bin2bn(serial, sizeof serial, NULL)) != NULL &&
       BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt)) != NULL &&
       X509_time_adj_ex(X509_getm_notBefore(crt), 0, 0, &start) != NULL &&
       X509_time_adj_ex(X509_getm_notAfter(crt), (int)days, 0, &start) != NULL &&
       set_cn(X509_get_subject_name(crt), scn) && set_cn(X509_get_issuer_name(crt), icn) &&
       X509_set_pubkey(crt, subject) &&
       add_ext(crt, crt, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE") &&
       add_ext(crt, crt, NID_key_usage, ca ? "critical,keyCertSign,cRLSign,digitalSignature"
                                           : usage && !strcmp(usage, "encipher") ? "critical,keyEncipherment"
                                           : usage && !strcmp(usage, "agree")    ? "critical,keyAgreement"
                                                                                 : "critical,digitalSignature") &&
       add_ext(crt, crt, NID_subject_key_identifier, "hash") &&
       X509_sign(crt, signer, EVP_sha256()) > 0 && (bio = BIO_new(BIO_s_mem())) != NULL &&
       PEM_write_bio_X509(bio, crt) > 0;
  BN_free(bn);
  X509_free(crt);
  if (!ok) {
    BIO_free(bio);
    return payhsm_raise_ossl(L, fn);
  }
  BIO_get_mem_ptr(bio, &mem);
  lua_pushlstring(L, mem->data, mem->length);
  BIO_free(bio);
  return 1;
}

static X509 *read_cert(lua_State *L, int idx) {
  size_t n;
  const char *pem = luaL_checklstring(L, idx, &n);
  BIO *bio = BIO_new_mem_buf(pem, (int)n);
  X509 *crt = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  ERR_clear_error();
  return crt;
}

static void push_name(lua_State *L, X509_NAME *name) {
  BIO *bio = BIO_new(BIO_s_mem());
  BUF_MEM *mem;
  if (!bio || X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0) {
    BIO_free(bio);
    lua_pushliteral(L, "");
    return;
  }
  BIO_get_mem_ptr(bio, &mem);
  lua_pushlstring(L, mem->data, mem->length);
  BIO_free(bio);
}

/* Seconds since the epoch of an ASN.1 time (UTC; days from the civil date). */
static lua_Integer asn1_epoch(const ASN1_TIME *t) {
  struct tm tm;
  lua_Integer y, m, d, era, yoe, doy, doe;
  memset(&tm, 0, sizeof tm);
  if (!ASN1_TIME_to_tm(t, &tm)) return 0;
  y = tm.tm_year + 1900;
  m = tm.tm_mon + 1;
  d = tm.tm_mday;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = y - era * 400;
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return (era * 146097 + doe - 719468) * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
}

/* core.pki.parse(pem) -> {public_key, subject, issuer, ca, not_before, not_after} */
static int l_parse(lua_State *L) {
  static const char fn[] = "pki.parse";
  X509 *crt = read_cert(L, 1);
  EVP_PKEY *pub;
  pki_rsa *k;
  if (!crt) return payhsm_fail(L, fn, "PKI_CERT", "not a PEM X.509 certificate");
  pub = X509_get_pubkey(crt);
  if (!pub || (EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA && !payhsm_ec_supported(pub))) {
    EVP_PKEY_free(pub);
    X509_free(crt);
    return payhsm_fail(L, fn, "PKI_CERT", "the certificate's key is neither RSA nor EC on P-256, P-384 or P-521");
  }
  lua_createtable(L, 0, 6);
  if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC) {
    payhsm_ec_push_public(L, pub);
  } else {
    k = lua_newuserdatauv(L, sizeof *k, 0);
    k->pkey = pub;
    luaL_setmetatable(L, RSA_PUB_MT);
  }
  lua_setfield(L, -2, "public_key");
  push_name(L, X509_get_subject_name(crt));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(crt));
  lua_setfield(L, -2, "issuer");
  lua_pushboolean(L, X509_check_ca(crt) > 0);
  lua_setfield(L, -2, "ca");
  lua_pushinteger(L, asn1_epoch(X509_get0_notBefore(crt)));
  lua_setfield(L, -2, "not_before");
  lua_pushinteger(L, asn1_epoch(X509_get0_notAfter(crt)));
  lua_setfield(L, -2, "not_after");
  X509_free(crt);
  return 1;
}

/* core.pki.verify(pem, issuer_key) -> true | false, msg, "PKI_SIGNATURE" */
static int l_verify(lua_State *L) {
  static const char fn[] = "pki.verify";
  EVP_PKEY *issuer = check_asym(L, 2, 0);
  X509 *crt = read_cert(L, 1);
  int ok;
  if (!crt) return payhsm_fail(L, fn, "PKI_CERT", "not a PEM X.509 certificate");
  ok = X509_verify(crt, issuer) == 1;
  X509_free(crt);
  ERR_clear_error();
  if (!ok) return payhsm_false(L, fn, "PKI_SIGNATURE", "the certificate is not signed by this key");
  lua_pushboolean(L, 1);
  return 1;
}

static const EVP_MD *oaep_md(lua_State *L, int idx) {
  static const char *const names[] = {"SHA_256", "SHA_512", NULL};
  return payhsm_checkname(L, idx, "OAEP digest", names) == 0 ? EVP_sha256() : EVP_sha512();
}

static EVP_PKEY_CTX *oaep_ctx(EVP_PKEY *pkey, int enc, const EVP_MD *md) {
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
  if (ctx && (enc ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) > 0 &&
      EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 && EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) > 0 &&
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) > 0)
    return ctx;
  EVP_PKEY_CTX_free(ctx);
  return NULL;
}

/* core.pki.oaep_wrap(public, key, digest) -> hex */
static int l_oaep_wrap(lua_State *L) {
  static const char fn[] = "pki.oaep_wrap";
  EVP_PKEY *pub = check_rsa(L, 1, 0);
  payhsm_key *k = payhsm_checkkey(L, 2);
  const EVP_MD *md = oaep_md(L, 3);
  EVP_PKEY_CTX *ctx;
  unsigned char *out;
  size_t outlen = (size_t)EVP_PKEY_get_size(pub);
  int ok;
  if (k->exportability == 'N') return payhsm_fail(L, fn, "KEY_EXPORTABILITY", "the key is not exportable");
  out = lua_newuserdatauv(L, outlen, 0);
  if (!(ctx = oaep_ctx(pub, 1, md))) return payhsm_raise_ossl(L, fn);
  ok = EVP_PKEY_encrypt(ctx, out, &outlen, k->bytes, k->len) > 0;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return payhsm_fail(L, fn, "RSA_ENCRYPT", "the key does not fit under this RSA key with OAEP");
  payhsm_pushhex(L, out, outlen);
  return 1;
}

/* core.pki.oaep_unwrap(private, hex, digest, algorithm [, attrs]) -> key */
static int l_oaep_unwrap(lua_State *L) {
  static const char fn[] = "pki.oaep_unwrap";
  EVP_PKEY *priv = check_rsa(L, 1, 1);
  const EVP_MD *md = oaep_md(L, 3);
  const char *algname = luaL_checkstring(L, 4);
  int alg = payhsm_alg_from_name(algname);
  unsigned char *in, *clear;
  size_t n, cap, outlen;
  EVP_PKEY_CTX *ctx;
  payhsm_key *k;
  int ok;
  if (alg < 0) return luaL_argerror(L, 4, "unknown key algorithm");
  if (!lua_isnoneornil(L, 5)) luaL_checktype(L, 5, LUA_TTABLE);
  n = payhsm_hexarg_alloc(L, 2, fn, "cryptogram", 0, &in);
  if (n == (size_t)-1) return 3;
  cap = (size_t)EVP_PKEY_get_size(priv);
  clear = lua_newuserdatauv(L, cap, 0);
  k = payhsm_pushkey(L, (payhsm_alg)alg, (const unsigned char *)"\0", 1); /* shell first */
  if (!(ctx = oaep_ctx(priv, 0, md))) return payhsm_raise_ossl(L, fn);
  outlen = cap;
  ok = EVP_PKEY_decrypt(ctx, clear, &outlen, in, n) > 0;
  EVP_PKEY_CTX_free(ctx);
  ERR_clear_error();
  if (!ok) {
    OPENSSL_cleanse(clear, cap);
    return payhsm_fail(L, fn, "RSA_DECRYPT", "the cryptogram does not decrypt under this key (OAEP)");
  }
  if ((payhsm_alg_keylen((payhsm_alg)alg) && outlen != payhsm_alg_keylen((payhsm_alg)alg)) || outlen == 0 ||
      outlen > PAYHSM_MAX_KEY) {
    OPENSSL_cleanse(clear, cap);
    return payhsm_fail(L, fn, "KEY_LENGTH", "the cryptogram holds %d bytes, not a %s key", (int)outlen, algname);
  }
  payhsm_key_clear(k);
  ok = payhsm_key_init(k, (payhsm_alg)alg, clear, outlen);
  OPENSSL_cleanse(clear, cap);
  if (!ok) return luaL_error(L, "%s: out of secure memory", fn);
  if (lua_istable(L, 5)) payhsm_key_setattrs(L, k, 5);
  return 1;
}

/* RSA padding by AWS Payment Cryptography's PaddingType names (EncryptData / DecryptData
 * with an asymmetric key): PKCS #1 v1.5 (RFC 8017 7.2) or OAEP (7.1) with SHA-1, SHA-256
 * or SHA-512 for the label hash and MGF1. */
static EVP_PKEY_CTX *asym_ctx(lua_State *L, EVP_PKEY *pkey, int enc, int idx) {
  static const char *const names[] = {"PKCS1", "OAEP_SHA1", "OAEP_SHA256", "OAEP_SHA512", NULL};
  int pad = payhsm_checkname(L, idx, "RSA padding", names);
  const EVP_MD *md = pad == 1 ? EVP_sha1() : pad == 2 ? EVP_sha256() : EVP_sha512();
  EVP_PKEY_CTX *ctx;
  if (pad != 0) return oaep_ctx(pkey, enc, md);
  ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
  if (ctx && (enc ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) > 0 &&
      EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0)
    return ctx;
  EVP_PKEY_CTX_free(ctx);
  return NULL;
}

/*
 * core.pki.rsa_encrypt(key, data_hex, padding) -> hex | nil, msg, code
 * RSA encryption of data under an RSA public key (payhsm.RsaPublicKey, or the public half
 * of a payhsm.RsaKey); padding "PKCS1", "OAEP_SHA1", "OAEP_SHA256" or "OAEP_SHA512".
 * Codes: BAD_HEX, RSA_ENCRYPT (data too long for the key and padding).
 */
static int l_rsa_encrypt(lua_State *L) {
  static const char fn[] = "pki.rsa_encrypt";
  EVP_PKEY *pub = check_rsa(L, 1, 0);
  unsigned char *in, *out;
  size_t n, outlen = (size_t)EVP_PKEY_get_size(pub);
  EVP_PKEY_CTX *ctx;
  int ok;
  n = payhsm_hexarg_alloc(L, 2, fn, "data", 0, &in);
  if (n == (size_t)-1) return 3;
  out = lua_newuserdatauv(L, outlen, 0);
  if (!(ctx = asym_ctx(L, pub, 1, 3))) return payhsm_raise_ossl(L, fn);
  ok = EVP_PKEY_encrypt(ctx, out, &outlen, in, n) > 0;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return payhsm_fail(L, fn, "RSA_ENCRYPT", "%d bytes do not fit under this RSA key with this padding",
                              (int)n);
  payhsm_pushhex(L, out, outlen);
  return 1;
}

/*
 * core.pki.rsa_decrypt(private, hex, padding) -> data_hex | nil, msg, code
 * RSA decryption under a payhsm.RsaKey; padding as rsa_encrypt. The deciphered data is
 * the caller's (it is returned as hex); the scratch is wiped.
 * Codes: BAD_HEX, RSA_DECRYPT (wrong key, padding or altered ciphertext).
 */
static int l_rsa_decrypt(lua_State *L) {
  static const char fn[] = "pki.rsa_decrypt";
  EVP_PKEY *priv = check_rsa(L, 1, 1);
  unsigned char *in, *clear;
  size_t n, cap = (size_t)EVP_PKEY_get_size(priv), outlen = cap;
  EVP_PKEY_CTX *ctx;
  int ok;
  n = payhsm_hexarg_alloc(L, 2, fn, "ciphertext", 0, &in);
  if (n == (size_t)-1) return 3;
  clear = lua_newuserdatauv(L, cap, 0);
  if (!(ctx = asym_ctx(L, priv, 0, 3))) return payhsm_raise_ossl(L, fn);
  ok = EVP_PKEY_decrypt(ctx, clear, &outlen, in, n) > 0;
  EVP_PKEY_CTX_free(ctx);
  ERR_clear_error();
  if (!ok) {
    OPENSSL_cleanse(clear, cap);
    return payhsm_fail(L, fn, "RSA_DECRYPT", "the ciphertext does not decrypt under this key with this padding");
  }
  payhsm_pushhex(L, clear, outlen);
  OPENSSL_cleanse(clear, cap);
  return 1;
}

void payhsm_pki_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"certificate", l_certificate}, {"parse", l_parse}, {"verify", l_verify},
                                   {"oaep_wrap", l_oaep_wrap}, {"oaep_unwrap", l_oaep_unwrap},
                                   {"rsa_encrypt", l_rsa_encrypt}, {"rsa_decrypt", l_rsa_decrypt}, {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  lua_setfield(L, -2, "pki");
}

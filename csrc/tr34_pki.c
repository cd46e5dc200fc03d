/*
 * tr34_pki.c - the certificate side of TR-34 key transport (ASC X9 TR-34-2019 section 5):
 * reading X.509 certificates and RSA private keys in the forms key exchange partners
 * hand them over (PEM, base64 of PEM as AWS Payment Cryptography's GetParametersForImport
 * returns them, base64 or hex of DER), checking a certificate path to a trusted CA at a
 * given time (RFC 5280 section 6 through OpenSSL's X509_verify_cert), the small DER
 * writer tr34.c builds key blocks with, and what wrap (tr34.c) and unwrap (tr34_unwrap.c)
 * share: the option readers and the key block header check. Nothing here is callable from
 * Lua.
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tr34.h"

#define CTX_MT "payhsm.tr34.scratch"

/* ---- the per-call context -------------------------------------------------- */

static int ctx_gc(lua_State *L) {
  payhsm_tr34_ctx_free((payhsm_tr34_ctx *)luaL_checkudata(L, 1, CTX_MT));
  return 0;
}

payhsm_tr34_ctx *payhsm_tr34_ctx_new(lua_State *L) {
  payhsm_tr34_ctx *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  if (luaL_newmetatable(L, CTX_MT)) {
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return c;
}

void payhsm_tr34_ctx_free(payhsm_tr34_ctx *c) {
  size_t i;
  X509_free(c->kdh_cert);
  X509_free(c->krd_cert);
  sk_X509_pop_free(c->anchors, X509_free);
  sk_X509_pop_free(c->chain, X509_free);
  EVP_PKEY_free(c->own_key);
  CMS_ContentInfo_free(c->cms);
  CMS_ContentInfo_free(c->env);
  for (i = 0; i < sizeof c->buf / sizeof c->buf[0]; i++) OPENSSL_clear_free(c->buf[i], c->cap[i]);
  memset(c, 0, sizeof *c);
}

/* ---- DER writing (ITU-T X.690 definite lengths) ----------------------------- */

static unsigned char *der_room(payhsm_der *d, size_t extra) {
  payhsm_tr34_ctx *c = d->c;
  int i = d->slot;
  size_t need = d->n + extra, cap;
  unsigned char *nb;
  if (need > c->cap[i]) {
    for (cap = c->cap[i] ? c->cap[i] : 512; cap < need; cap *= 2) {}
    if (!(nb = OPENSSL_malloc(cap))) return NULL;
    if (d->n) memcpy(nb, c->buf[i], d->n);
    OPENSSL_clear_free(c->buf[i], c->cap[i]); /* the old copy may hold key bytes */
    c->buf[i] = nb;
    c->cap[i] = cap;
  }
  return c->buf[i] + d->n;
}

static size_t hdr_len(size_t n) { return n < 0x80 ? 2 : n < 0x100 ? 3 : n < 0x10000 ? 4 : 5; }

static void put_hdr(unsigned char *o, unsigned tag, size_t n) {
  size_t h = hdr_len(n), i;
  o[0] = (unsigned char)tag;
  if (h == 2) { o[1] = (unsigned char)n; return; }
  o[1] = (unsigned char)(0x80 | (h - 2));
  for (i = h - 1; i >= 2; i--, n >>= 8) o[i] = (unsigned char)(n & 0xff);
}

int payhsm_der_put(payhsm_der *d, const void *p, size_t n) {
  unsigned char *o = der_room(d, n);
  if (!o) return 0;
  if (n) memcpy(o, p, n);
  d->n += n;
  return 1;
}

int payhsm_der_tlv(payhsm_der *d, unsigned tag, const void *body, size_t n) {
  unsigned char *o = der_room(d, hdr_len(n) + n);
  if (!o) return 0;
  put_hdr(o, tag, n);
  if (n) memcpy(o + hdr_len(n), body, n);
  d->n += hdr_len(n) + n;
  return 1;
}

int payhsm_der_wrap(payhsm_der *d, unsigned tag, size_t from) {
  size_t body = d->n - from, h = hdr_len(body);
  unsigned char *b;
  if (!der_room(d, h)) return 0;
  b = d->c->buf[d->slot] + from;
  memmove(b + h, b, body);
  put_hdr(b, tag, body);
  d->n += h;
  return 1;
}

int payhsm_tr34_ias(payhsm_der *d, X509 *cert) {
  size_t from = d->n;
  int n1 = i2d_X509_NAME(X509_get_issuer_name(cert), NULL);
  int n2 = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), NULL);
  unsigned char *p;
  if (n1 <= 0 || n2 <= 0 || !(p = der_room(d, (size_t)n1 + (size_t)n2))) return 0;
  if (i2d_X509_NAME(X509_get_issuer_name(cert), &p) != n1 ||
      i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &p) != n2)
    return 0;
  d->n += (size_t)n1 + (size_t)n2;
  return payhsm_der_wrap(d, 0x30, from);
}

/* ---- certificates and keys in the forms partners send them ------------------- */

/* Text that is not PEM is hex of DER (only hex digits) or base64 (of PEM or DER).
 * Returns the bytes in a buffer the caller frees with OPENSSL_clear_free(*out, *cap),
 * or 0 when the text is none of these. */
static int decode_text(const char *s, size_t n, unsigned char **out, size_t *len, size_t *cap) {
  unsigned char *b;
  int l1 = 0, l2 = 0;
  EVP_ENCODE_CTX *e;
  *cap = n + 1;
  if (!(b = OPENSSL_malloc(*cap))) return 0;
  if (n && strspn(s, "0123456789abcdefABCDEF") == n) {
    if ((*len = payhsm_hex_decode(s, n, b, *cap)) != (size_t)-1) { *out = b; return 1; }
  }
  if (!(e = EVP_ENCODE_CTX_new())) { OPENSSL_free(b); return 0; }
  EVP_DecodeInit(e);
  if (n > 0x7fffffff || EVP_DecodeUpdate(e, b, &l1, (const unsigned char *)s, (int)n) < 0 ||
      EVP_DecodeFinal(e, b + l1, &l2) != 1 || l1 + l2 == 0) {
    EVP_ENCODE_CTX_free(e);
    OPENSSL_clear_free(b, *cap);
    return 0;
  }
  EVP_ENCODE_CTX_free(e);
  *out = b;
  *len = (size_t)(l1 + l2);
  return 1;
}

static int is_pem(const char *s, size_t n) {
  size_t i;
  for (i = 0; i + 10 <= n; i++)
    if (memcmp(s + i, "-----BEGIN", 10) == 0) return 1;
  return 0;
}

/* All the certificates in s: PEM (any number), or DER certificates one after another. */
static STACK_OF(X509) *parse_certs(const char *s, size_t n) {
  STACK_OF(X509) *sk = sk_X509_new_null();
  unsigned char *b = NULL;
  size_t len = 0, cap = 0;
  X509 *x;
  if (!sk) return NULL;
  if (!is_pem(s, n)) {
    if (!decode_text(s, n, &b, &len, &cap)) goto fail;
    s = (const char *)b;
    n = len;
  }
  if (is_pem(s, n)) {
    BIO *bio = BIO_new_mem_buf(s, (int)n);
    while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
      if (!sk_X509_push(sk, x)) { X509_free(x); break; }
    BIO_free(bio);
  } else {
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end && (x = d2i_X509(NULL, &p, (long)(end - p))))
      if (!sk_X509_push(sk, x)) { X509_free(x); break; }
    if (p != end) goto fail;
  }
  ERR_clear_error();
  OPENSSL_clear_free(b, cap);
  if (sk_X509_num(sk) > 0) return sk;
  sk_X509_free(sk);
  return NULL;
fail:
  OPENSSL_clear_free(b, cap);
  sk_X509_pop_free(sk, X509_free);
  ERR_clear_error();
  return NULL;
}

STACK_OF(X509) *payhsm_tr34_certs(lua_State *L, int idx, const char *fn, const char *field, int *failed) {
  size_t n;
  const char *s = payhsm_optfield_str(L, idx, field, &n);
  STACK_OF(X509) *sk;
  *failed = 0;
  if (!s) return NULL;
  if (!(sk = parse_certs(s, n))) {
    *failed = 1;
    payhsm_fail(L, fn, "TR34_CERT", "%s is not an X.509 certificate (PEM, base64 or hex DER)", field);
  }
  return sk;
}

X509 *payhsm_tr34_cert(lua_State *L, int idx, const char *fn, const char *field, int *failed) {
  STACK_OF(X509) *sk = payhsm_tr34_certs(L, idx, fn, field, failed);
  X509 *x;
  if (!sk) return NULL;
  if (sk_X509_num(sk) != 1) {
    sk_X509_pop_free(sk, X509_free);
    *failed = 1;
    payhsm_fail(L, fn, "TR34_CERT", "%s must be one certificate", field);
    return NULL;
  }
  x = sk_X509_shift(sk);
  sk_X509_free(sk);
  return x;
}

static int no_passphrase(char *buf, int size, int rw, void *u) {
  (void)buf; (void)size; (void)rw; (void)u;
  return 0;
}

EVP_PKEY *payhsm_tr34_privkey(lua_State *L, int idx, payhsm_tr34_ctx *c, const char *fn, const char *what) {
  EVP_PKEY *pk = payhsm_rsa_pkey(L, idx);
  unsigned char *b = NULL;
  size_t n, len = 0, cap = 0;
  const char *s;
  BIO *bio;
  if (pk) return pk;
  if (lua_type(L, idx) != LUA_TSTRING) {
    luaL_error(L, "%s: %s must be a payhsm.RsaKey or PEM text, got %s", fn, what, luaL_typename(L, idx));
    return NULL;
  }
  s = lua_tolstring(L, idx, &n);
  if (!is_pem(s, n) && decode_text(s, n, &b, &len, &cap)) {
    s = (const char *)b;
    n = len;
  }
  bio = BIO_new_mem_buf(s, (int)n);
  pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
  BIO_free(bio);
  OPENSSL_clear_free(b, cap); /* base64 of a private key PEM */
  if (!pk || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
    EVP_PKEY_free(pk);
    payhsm_fail(L, fn, "TR34_KEY", "%s is not an RSA private key (payhsm.RsaKey or unencrypted PEM)", what);
    return NULL;
  }
  EVP_PKEY_free(c->own_key);
  c->own_key = pk;
  return pk;
}

/* ---- certificate checks ------------------------------------------------------ */

int payhsm_tr34_check_cert(lua_State *L, const char *fn, const char *what, X509 *cert, unsigned ku,
                           STACK_OF(X509) *anchors, STACK_OF(X509) *chain, int has_time, time_t t) {
  EVP_PKEY *pk = X509_get0_pubkey(cert);
  X509_STORE *store;
  X509_STORE_CTX *ctx;
  char subj[256] = "?";
  int i, ok, err;
  if (!pk || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA)
    return payhsm_fail(L, fn, "TR34_CERT", "%s does not hold an RSA public key", what);
  if (EVP_PKEY_get_bits(pk) < 2048 || EVP_PKEY_get_bits(pk) > 4096)
    return payhsm_fail(L, fn, "TR34_CERT", "%s holds a %d-bit RSA key; TR-34 takes 2048 to 4096 bits", what,
                       EVP_PKEY_get_bits(pk));
  if ((X509_get_extension_flags(cert) & EXFLAG_KUSAGE) && !(X509_get_key_usage(cert) & ku))
    return payhsm_fail(L, fn, "TR34_CERT_USAGE", "%s does not allow %s (key usage extension)", what,
                       ku & X509v3_KU_KEY_ENCIPHERMENT ? "key encipherment" : "digital signatures");
  if (!(store = X509_STORE_new())) return payhsm_raise_ossl(L, fn);
  if (!(ctx = X509_STORE_CTX_new())) {
    X509_STORE_free(store);
    return payhsm_raise_ossl(L, fn);
  }
  ok = 1;
  for (i = 0; ok && i < sk_X509_num(anchors); i++) ok = X509_STORE_add_cert(store, sk_X509_value(anchors, i));
  ok = ok && X509_STORE_CTX_init(ctx, store, cert, chain);
  if (!ok) {
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return payhsm_raise_ossl(L, fn);
  }
  /* a trusted intermediate (AWS's TrustedCertificatePublicKey) may end the path */
  X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
  if (has_time) X509_STORE_CTX_set_time(ctx, 0, t);
  ok = X509_verify_cert(ctx) == 1;
  err = X509_STORE_CTX_get_error(ctx);
  if (!ok && X509_STORE_CTX_get_current_cert(ctx))
    X509_NAME_oneline(X509_get_subject_name(X509_STORE_CTX_get_current_cert(ctx)), subj, sizeof subj);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  if (ok) return 0;
  return payhsm_fail(L, fn,
                     err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID
                         ? "TR34_CERT_EXPIRED" : "TR34_CERT_CHAIN",
                     "%s does not verify: %s (at %s)", what, X509_verify_cert_error_string(err), subj);
}

const char *const payhsm_tr34_forms[] = {"X9_TR34_2012", "TR34_2019", "RFC5652", NULL};


/* ---- options ---------------------------------------------------------------- */

int payhsm_tr34_opt_time(lua_State *L, int idx, time_t *t) {
  lua_Integer v = payhsm_optfield_int(L, idx, "time", -1);
  if (v < 0) return 0;
  *t = (time_t)v;
  return 1;
}

/* Decodes the nonce option (8 to 32 bytes; AWS's RandomNonce is 8). -1 when absent,
 * -2 after pushing a failure. */
int payhsm_tr34_opt_nonce(lua_State *L, int idx, const char *fn, unsigned char *out) {
  size_t n, len;
  const char *s = payhsm_optfield_str(L, idx, "nonce", &len);
  if (!s) return -1;
  n = payhsm_hex_decode(s, len, out, 32);
  if (n == (size_t)-1 && (len % 2 || len / 2 <= 32)) { payhsm_fail(L, fn, "BAD_HEX", "nonce is not valid hex"); return -2; }
  if (n == (size_t)-1 || n < 8) { payhsm_fail(L, fn, "BAD_LENGTH", "nonce must be 8 to 32 bytes"); return -2; }
  return (int)n;
}

/* ---- the key block header (TR-34-2019 5.4.5: the TR-31 header, length ignored) -- */

#define ALNUM(ch) (((ch) >= '0' && (ch) <= '9') || ((ch) >= 'A' && (ch) <= 'Z') || (ch) == 'c')

/* Checks the first 16 characters of a header (TR-31 / X9.143 usage, mode of use, version,
 * exportability; an HMAC usage cannot ride on a TDES or AES key); returns the algorithm
 * it names for a key of keylen bytes, or -1. */
int payhsm_tr34_header_alg(const char *h, size_t n, size_t keylen) {
  const char *modes;
  char u[3];
  int i;
  if (n < 16) return -1;
  for (i = 0; i < 16; i++)
    if (h[i] < 0x20 || h[i] > 0x7e) return -1;
  u[0] = h[5];
  u[1] = h[6];
  u[2] = 0;
  if (!(modes = payhsm_usage_modes(u)) || (u[0] == 'M' && u[1] == '7') || !payhsm_mode_known(h[8]) ||
      (modes[0] && !strchr(modes, h[8])) || !strchr("ENS", h[11]) || !ALNUM(h[9]) || !ALNUM(h[10]))
    return -1;
  if (h[7] == 'T') return keylen == 16 ? PAYHSM_ALG_TDES_2KEY : keylen == 24 ? PAYHSM_ALG_TDES_3KEY : -1;
  if (h[7] == 'A')
    return keylen == 16 ? PAYHSM_ALG_AES_128 : keylen == 24 ? PAYHSM_ALG_AES_192
                                              : keylen == 32 ? PAYHSM_ALG_AES_256 : -1;
  return -1;
}

/*
 * tr34.h - what csrc/tr34.c (the key blocks) and csrc/tr34_pki.c (certificates, RSA
 * keys, chain checks, DER writing) share. Private to those two files.
 */
#ifndef PAYHSM_TR34_H
#define PAYHSM_TR34_H

#include <time.h>

#include <openssl/cms.h>
#include <openssl/x509.h>

#include "payhsm.h"

/*
 * Everything one wrap or unwrap call allocates outside Lua, held by a userdata whose
 * __gc frees it: a Lua error raised halfway (out of memory) leaks nothing and leaves no
 * clear key bytes behind. payhsm_tr34_ctx_free is idempotent; the functions call it
 * before they return.
 */
typedef struct {
  X509 *kdh_cert, *krd_cert;
  STACK_OF(X509) *anchors, *chain;
  EVP_PKEY *own_key;          /* a private key parsed from PEM (not a payhsm.RsaKey) */
  CMS_ContentInfo *cms, *env; /* the block and its envelope, as OpenSSL CMS objects */
  unsigned char *buf[8];      /* DER scratch; cleansed before it is freed */
  size_t cap[8];
} payhsm_tr34_ctx;

payhsm_tr34_ctx *payhsm_tr34_ctx_new(lua_State *L);
void payhsm_tr34_ctx_free(payhsm_tr34_ctx *c);

/* A growing DER buffer in slot i of the context. Returns 0 when memory runs out. */
typedef struct {
  payhsm_tr34_ctx *c;
  int slot;
  size_t n;
} payhsm_der;
int payhsm_der_put(payhsm_der *d, const void *p, size_t n);
int payhsm_der_tlv(payhsm_der *d, unsigned tag, const void *body, size_t n);
/* Turns the bytes from offset `from` to the end into the body of one TLV of `tag`. */
int payhsm_der_wrap(payhsm_der *d, unsigned tag, size_t from);
#define PAYHSM_DER_BYTES(d) ((d)->c->buf[(d)->slot])

/*
 * Reads the string option `field` of the options table at idx as one X509 certificate
 * (PEM text, base64 of PEM as AWS Payment Cryptography passes certificates, base64 of
 * DER, or hex of DER). NULL when absent; pushes nil, msg, "TR34_CERT" and sets *failed
 * when present but not a certificate.
 */
X509 *payhsm_tr34_cert(lua_State *L, int idx, const char *fn, const char *field, int *failed);
/* Same for a list of certificates (PEM text may hold several). */
STACK_OF(X509) *payhsm_tr34_certs(lua_State *L, int idx, const char *fn, const char *field,
                                  int *failed);
/*
 * The RSA private key at stack index idx: a payhsm.RsaKey, or PEM text of a PKCS#8 or
 * PKCS#1 private key (or its base64). A parsed key is owned by c->own_key. Returns NULL
 * after pushing nil, msg, "TR34_KEY". Raises when idx is neither a string nor an RsaKey.
 */
EVP_PKEY *payhsm_tr34_privkey(lua_State *L, int idx, payhsm_tr34_ctx *c, const char *fn,
                              const char *what);
/*
 * Checks the certificate: an RSA key of 2048 to 4096 bits, the key usage bit
 * (X509v3_KU_*, when the certificate carries the extension), and a path to one of the
 * anchors through the optional intermediates, valid at time t (or now when has_time
 * is 0). Returns 0 when it passes; otherwise pushes nil, msg, code (TR34_CERT,
 * TR34_CERT_USAGE, TR34_CERT_EXPIRED, TR34_CERT_CHAIN) and returns 3.
 */
int payhsm_tr34_check_cert(lua_State *L, const char *fn, const char *what, X509 *cert,
                           unsigned ku, STACK_OF(X509) *anchors, STACK_OF(X509) *chain,
                           int has_time, time_t t);
/* Appends the DER IssuerAndSerialNumber (RFC 5652 10.2.4) of cert. Returns 0 on failure. */
int payhsm_tr34_ias(payhsm_der *d, X509 *cert);

/* ---- shared by tr34.c (wrap) and tr34_unwrap.c -------------------------------- */
#define O(...) {__VA_ARGS__}
static const unsigned char OID_DATA[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01);
static const unsigned char OID_SIGNED[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02);
static const unsigned char OID_ENVELOPED[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03);
static const unsigned char OID_CONTENT_TYPE[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x03);
static const unsigned char OID_MESSAGE_DIGEST[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x04);
static const unsigned char OID_SIGNING_TIME[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x05);
static const unsigned char OID_NONCE[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x19, 0x03);
static const unsigned char OID_SHA256[] = O(0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01);
static const unsigned char OID_RSA[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01);
static const unsigned char OID_OAEP[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x07);
static const unsigned char OID_MGF1[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x08);
static const unsigned char OID_PSPECIFIED[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x09);
static const unsigned char OID_DES3_CBC[] = O(0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x03, 0x07);
static const unsigned char OID_AES128_CBC[] = O(0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02);
/* RSAES-OAEP-params {SHA-256, MGF1 SHA-256, empty label}: as TR-34-2019 B.2.2.3 and AWS
 * write them (three untagged AlgorithmIdentifiers), and as RFC 4055 section 4.1 does. */
static const unsigned char OAEP_TR34[] = O(
  0x30, 0x38, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
  0x30, 0x18, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x08, 0x30, 0x0B, 0x06, 0x09,
  0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86,
  0xF7, 0x0D, 0x01, 0x01, 0x09, 0x04, 0x00);
static const unsigned char OAEP_RFC4055[] = O(
  0x30, 0x2F, 0xA0, 0x0F, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
  0x05, 0x00, 0xA1, 0x1C, 0x30, 0x1A, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x08,
  0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00);
#define EQ(p, n, oid) ((size_t)(n) == sizeof oid && memcmp(p, oid, sizeof oid) == 0)

enum { FORM_AWS, FORM_2019, FORM_RFC };
static const char *const forms[] = {"X9_TR34_2012", "TR34_2019", "RFC5652", NULL};
enum { S_PLAIN, S_CT, S_ENV, S_ATTR, S_SET, S_CEK, S_OUT, S_IAS };
extern const char *const payhsm_tr34_forms[];
/* The algorithm a TR-31 style key block header (its first 16 characters) names for a
 * key of keylen bytes, or -1 when the header is malformed or does not fit. */
int payhsm_tr34_header_alg(const char *h, size_t n, size_t keylen);
/* The time option (Unix seconds) of the table at idx: 1 and *t, or 0 when absent. */
int payhsm_tr34_opt_time(lua_State *L, int idx, time_t *t);
/* The nonce option: its length, -1 when absent, -2 after pushing a failure. */
int payhsm_tr34_opt_nonce(lua_State *L, int idx, const char *fn, unsigned char *out);
int payhsm_tr34_unwrap(lua_State *L);

#endif

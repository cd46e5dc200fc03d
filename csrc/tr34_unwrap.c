/*
 * tr34_unwrap.c - the Key Receiving Device side of TR-34 (ASC X9 TR-34-2019 5.4.4 and
 * Annex B.8/B.9): tr34.unwrap reads a key token with OpenSSL's CMS API, checks the KDH
 * certificate path, the signature, the envelope digest and the nonce, and opens the
 * envelope with the KRD's RSA private key (see csrc/tr34.c for the token's layout).
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tr34.h"

/* ---- DER reading (for the parts OpenSSL's CMS API does not expose) ----------- */

/* One TLV at *p (before end): definite length only. */
static int tlv(const unsigned char **p, const unsigned char *end, int *tag, int *cls,
               const unsigned char **body, size_t *len) {
  const unsigned char *q = *p;
  long l;
  int r;
  if (q >= end) return 0;
  r = ASN1_get_object(&q, &l, tag, cls, end - q);
  if ((r & 0x80) || r == 0x21 || l < 0 || l > end - q) return 0;
  *body = q;
  *len = (size_t)l;
  *p = q + l;
  return 1;
}

/* AlgorithmIdentifier: SEQUENCE { OID, params? }; *oid is the OID's contents. */
static int algid(const unsigned char *b, size_t n, const unsigned char **oid, size_t *oidn,
                 const unsigned char **par, const unsigned char **parend) {
  const unsigned char *p = b, *e = b + n, *body;
  size_t len;
  int tag, cls;
  if (!tlv(&p, e, &tag, &cls, &body, &len) || tag != V_ASN1_SEQUENCE || p != e) return 0;
  p = body;
  e = body + len;
  if (!tlv(&p, e, &tag, &cls, oid, oidn) || tag != V_ASN1_OBJECT) return 0;
  *par = p;
  *parend = e;
  return 1;
}

/* Whether an AlgorithmIdentifier is SHA-256 with NULL or absent parameters. */
static int is_sha256(const unsigned char *b, size_t n) {
  const unsigned char *oid, *par, *pe;
  size_t on;
  if (!algid(b, n, &oid, &on, &par, &pe) || !EQ(oid, on, OID_SHA256)) return 0;
  return par == pe || (pe - par == 2 && par[0] == 0x05 && par[1] == 0);
}

/* RSAES-OAEP-params, untagged (TR-34) or tagged (RFC 4055): SHA-256, MGF1 with SHA-256,
 * and no label are all that TR-34-2019 allows. */
static int oaep_params_ok(const unsigned char *b, size_t n) {
  const unsigned char *p = b, *e = b + n, *body, *el, *oid, *par, *pe;
  size_t len, eln, on;
  int tag, cls, i, seen = 0;
  if (!tlv(&p, e, &tag, &cls, &body, &len) || tag != V_ASN1_SEQUENCE || p != e) return 0;
  for (p = body, e = body + len, i = 0; p < e; i++) {
    const unsigned char *start = p;
    int k = i;
    if (!tlv(&p, e, &tag, &cls, &el, &eln)) return 0;
    if (cls == V_ASN1_CONTEXT_SPECIFIC) k = tag; /* [k] EXPLICIT AlgorithmIdentifier */
    else if (tag == V_ASN1_SEQUENCE) { el = start; eln = (size_t)(p - start); }
    else return 0;
    if (k == 0 && is_sha256(el, eln)) seen |= 1;
    else if (k == 1 && algid(el, eln, &oid, &on, &par, &pe) && EQ(oid, on, OID_MGF1) &&
             is_sha256(par, (size_t)(pe - par))) seen |= 2;
    else if (!(k == 2 && algid(el, eln, &oid, &on, &par, &pe) && EQ(oid, on, OID_PSPECIFIED) &&
               pe - par == 2 && par[0] == V_ASN1_OCTET_STRING && par[1] == 0)) return 0;
  }
  return seen == 3;
}

/* Whether the n bytes at p all have the value n (RFC 5652 6.3 padding). */
static int padding_ok(const unsigned char *p, size_t n) {
  unsigned char d = 0;
  size_t i;
  for (i = 0; i < n; i++) d |= (unsigned char)(p[i] ^ n);
  return d == 0;
}

static void set_str(lua_State *L, const char *k, const char *v, size_t n) {
  lua_pushlstring(L, v, n);
  lua_setfield(L, -2, k);
}

/* ---- KRD: unwrap ------------------------------------------------------------ */

/* The parts of the EnvelopedData in S_ENV (n bytes) that OpenSSL's CMS API keeps to
 * itself: the recipient's encrypted key, the content IV and the encrypted content. */
typedef struct {
  const unsigned char *ek, *iv, *ct;
  size_t ekn, ivn, ctn;
} env_parts;

/* Returns 1 for AES-128-CBC content, 0 for TDES-CBC, -1 for anything else. */
static int envelope_parts(payhsm_tr34_ctx *c, size_t n, env_parts *ep) {
  const unsigned char *p = c->buf[S_ENV], *e = p + n, *b, *a, *oid, *par, *pe, *q, *qe;
  size_t len, on;
  int tag, cls, i;
  for (i = 0; i < 4; i++) { /* ContentInfo, contentType, [0], EnvelopedData */
    if (!tlv(&p, e, &tag, &cls, &b, &len)) return -1;
    if (i != 1) { p = b; e = b + len; }
  }
  if (!tlv(&p, e, &tag, &cls, &b, &len) || tag != V_ASN1_INTEGER) return -1;
  if (!tlv(&p, e, &tag, &cls, &b, &len) || tag != V_ASN1_SET) return -1;
  q = b;
  qe = b + len;
  if (!tlv(&q, qe, &tag, &cls, &b, &len) || tag != V_ASN1_SEQUENCE || q != qe) return -1;
  q = b; /* KeyTransRecipientInfo: version, rid, keyEncryptionAlgorithm, encryptedKey */
  qe = b + len;
  for (i = 0; i < 4; i++)
    if (!tlv(&q, qe, &tag, &cls, &ep->ek, &ep->ekn)) return -1;
  if (tag != V_ASN1_OCTET_STRING || q != qe) return -1;
  if (!tlv(&p, e, &tag, &cls, &b, &len) || tag != V_ASN1_SEQUENCE) return -1;
  p = b; /* EncryptedContentInfo: contentType, contentEncryptionAlgorithm, [0] content */
  e = b + len;
  if (!tlv(&p, e, &tag, &cls, &b, &len) || tag != V_ASN1_OBJECT || !EQ(b, len, OID_DATA)) return -1;
  a = p;
  if (!tlv(&p, e, &tag, &cls, &b, &len) || !algid(a, (size_t)(p - a), &oid, &on, &par, &pe)) return -1;
  if (!tlv(&par, pe, &tag, &cls, &ep->iv, &ep->ivn) || tag != V_ASN1_OCTET_STRING || par != pe) return -1;
  if (p >= e || *p != 0x80 || !tlv(&p, e, &tag, &cls, &ep->ct, &ep->ctn) || p != e) return -1;
  return EQ(oid, on, OID_AES128_CBC) ? 1 : EQ(oid, on, OID_DES3_CBC) ? 0 : -1;
}

/* RSAES-OAEP (SHA-256, MGF1-SHA-256) opens the ephemeral key into S_CEK, which decrypts
 * the content (CBC; the padding is left for the caller) into S_PLAIN. Returns 1 and *out,
 * 0 when the encrypted key does not open with krd, -1 on a malformed envelope, -2 on an
 * OpenSSL failure. */
static int decrypt_content(payhsm_tr34_ctx *c, EVP_PKEY *krd, const env_parts *ep, int aes, size_t *out) {
  static const unsigned char room[512];
  size_t bs = aes ? 16 : 8, kl = aes ? 16 : 24, ckl = sizeof room;
  payhsm_der cek = {c, S_CEK, 0}, pl = {c, S_PLAIN, 0};
  EVP_PKEY_CTX *pc;
  EVP_CIPHER_CTX *x;
  int ok, l1 = 0, l2 = 0;
  if (ep->ivn != bs || ep->ctn == 0 || ep->ctn % bs || ep->ctn > 0x7fffffff) return -1;
  if (!payhsm_der_put(&cek, room, sizeof room) || !payhsm_der_put(&pl, ep->ct, ep->ctn)) return -2;
  if (!(pc = EVP_PKEY_CTX_new_from_pkey(NULL, krd, NULL))) return -2;
  ok = EVP_PKEY_decrypt_init(pc) > 0 && EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) > 0 &&
       EVP_PKEY_CTX_set_rsa_oaep_md(pc, EVP_sha256()) > 0 && EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) > 0 &&
       EVP_PKEY_decrypt(pc, c->buf[S_CEK], &ckl, ep->ek, ep->ekn) > 0;
  EVP_PKEY_CTX_free(pc);
  if (!ok || ckl != kl) {
    ERR_clear_error();
    return 0;
  }
  x = EVP_CIPHER_CTX_new();
  ok = x && EVP_DecryptInit_ex(x, aes ? EVP_aes_128_cbc() : EVP_des_ede3_cbc(), NULL, c->buf[S_CEK], ep->iv) == 1 &&
       EVP_CIPHER_CTX_set_padding(x, 0) == 1 &&
       EVP_DecryptUpdate(x, c->buf[S_PLAIN], &l1, ep->ct, (int)ep->ctn) == 1 &&
       EVP_DecryptFinal_ex(x, c->buf[S_PLAIN] + l1, &l2) == 1;
  EVP_CIPHER_CTX_free(x);
  OPENSSL_cleanse(c->buf[S_CEK], sizeof room);
  if (!ok) return -2;
  *out = (size_t)(l1 + l2);
  return 1;
}

/* The signed content as a CMS EnvelopedData: the X9_TR34_2012 form lacks the SEQUENCE
 * header, which is put back. Returns the form, or -1 when it is neither. */
static int open_envelope(payhsm_tr34_ctx *c, const ASN1_OCTET_STRING *ec, int *aes, env_parts *ep) {
  payhsm_der d = {c, S_ENV, 0};
  const unsigned char *p;
  int aws;
  if (ec->length < 2 || (ec->data[0] != 0x30 && ec->data[0] != 0x02)) return -1;
  aws = ec->data[0] == 0x02;
  if (!payhsm_der_tlv(&d, 0x06, OID_ENVELOPED, sizeof OID_ENVELOPED) ||
      !payhsm_der_put(&d, ec->data, (size_t)ec->length) || (aws && !payhsm_der_wrap(&d, 0x30, 11)) ||
      !payhsm_der_wrap(&d, 0xA0, 11) || !payhsm_der_wrap(&d, 0x30, 0))
    return -1;
  p = c->buf[S_ENV];
  c->env = d2i_CMS_ContentInfo(NULL, &p, (long)d.n);
  if (!c->env || p != c->buf[S_ENV] + d.n || OBJ_obj2nid(CMS_get0_type(c->env)) != NID_pkcs7_enveloped ||
      (*aes = envelope_parts(c, d.n, ep)) < 0)
    return -1;
  return aws ? FORM_AWS : FORM_2019;
}

/* The recipient's key transport: RSAES-OAEP with SHA-256, MGF1-SHA-256 and no label,
 * its parameters untagged (TR-34, returns 1) or tagged (RFC 4055, returns 2); 0 otherwise. */
static int oaep_form(CMS_RecipientInfo *ri) {
  X509_ALGOR *alg;
  const ASN1_OBJECT *obj;
  const void *pv;
  int pt;
  if (CMS_RecipientInfo_ktri_get0_algs(ri, NULL, NULL, &alg) != 1) return 0;
  X509_ALGOR_get0(&obj, &pt, &pv, alg);
  if (OBJ_obj2nid(obj) != NID_rsaesOaep || pt != V_ASN1_SEQUENCE ||
      !oaep_params_ok(ASN1_STRING_get0_data(pv), (size_t)ASN1_STRING_length(pv)))
    return 0;
  return ASN1_STRING_get0_data(pv)[2] == 0xA0 ? 2 : 1;
}

/* Walks the TR-34 key block (TR-34-2019 5.4.5) at the start of b: SEQUENCE { version 1,
 * IssuerAndSerialNumber, key OCTET STRING, SEQUENCE { id-data, SET { header } } };
 * *used is its length (the padding follows). */
static int key_block(const unsigned char *b, size_t n, size_t *used, const unsigned char **ias, size_t *iasn,
                     const unsigned char **key, size_t *keyn, const unsigned char **hdr, size_t *hdrn) {
  const unsigned char *p = b, *e = b + n, *v, *s;
  size_t len, sn;
  int tag, cls;
  if (!tlv(&p, e, &tag, &cls, &v, &len) || tag != V_ASN1_SEQUENCE) return 0;
  *used = (size_t)(p - b);
  p = v;
  e = v + len;
  if (!tlv(&p, e, &tag, &cls, &v, &len) || tag != V_ASN1_INTEGER || len != 1 || v[0] != 1) return 0;
  *ias = p;
  if (!tlv(&p, e, &tag, &cls, &v, &len) || tag != V_ASN1_SEQUENCE) return 0;
  *iasn = (size_t)(p - *ias);
  if (!tlv(&p, e, &tag, &cls, key, keyn) || tag != V_ASN1_OCTET_STRING) return 0;
  if (!tlv(&p, e, &tag, &cls, &v, &len) || tag != V_ASN1_SEQUENCE || p != e) return 0;
  p = v;
  e = v + len;
  if (!tlv(&p, e, &tag, &cls, &s, &sn) || tag != V_ASN1_OBJECT || !EQ(s, sn, OID_DATA)) return 0;
  if (!tlv(&p, e, &tag, &cls, &v, &len) || tag != V_ASN1_SET || p != e) return 0;
  p = v;
  e = v + len;
  return tlv(&p, e, &tag, &cls, hdr, hdrn) && tag == V_ASN1_OCTET_STRING && p == e;
}

static const void *signed_attr(CMS_SignerInfo *si, const unsigned char *oid, size_t on, int type) {
  const unsigned char *p = oid;
  unsigned char der[16];
  ASN1_OBJECT *obj;
  const void *v;
  der[0] = 0x06;
  der[1] = (unsigned char)on;
  memcpy(der + 2, p, on);
  p = der;
  if (!(obj = d2i_ASN1_OBJECT(NULL, &p, (long)on + 2))) return NULL;
  v = CMS_signed_get0_data_by_OBJ(si, obj, -3, type);
  ASN1_OBJECT_free(obj);
  return v;
}

/*
 * tr34.unwrap(krd_key, block, opts) -> key, info | nil, msg, code
 * The KRD side: opens a TR-34 key token (hex) of any of the three forms with krd_key
 * (payhsm.RsaKey or PEM). opts: kdh_cert (the signer, AWS's SigningKeyCertificate),
 * ca_cert (the CA that issued it, AWS's CertificateAuthorityPublicKeyIdentifier),
 * chain (intermediates, optional), krd_cert (optional: the token must name it as
 * recipient), nonce (hex: the random number this KRD sent, AWS's RandomNonce; a
 * two-pass token must carry it, a one-pass token must not be given one), time (Unix
 * seconds at which the certificates are checked; default now).
 * The key gets the algorithm, usage, mode, version and exportability of the header.
 * info: header, algorithm, usage, mode, version, exportability, nonce (hex) or
 * signing_time (YYMMDDHHMMSSZ), form, cipher ("TDES" | "AES"), kdh_serial (hex).
 * Codes, in the order of the checks: BAD_HEX, BAD_LENGTH (nonce), TR34_KEY, TR34_CERT, TR34_FORMAT (not a
 * TR-34 token), TR34_SIGNER (signed by another KDH than kdh_cert), TR34_SIGNATURE
 * (signature or signed attributes altered), TR34_ENVELOPE (envelope altered: digest
 * mismatch), TR34_NONCE (missing, unexpected, stale or wrong), TR34_CERT_USAGE,
 * TR34_CERT_EXPIRED, TR34_CERT_CHAIN (kdh_cert's path to ca_cert), TR34_RECIPIENT
 * (made for another KRD, or does not open with krd_key), TR34_HEADER (inner header
 * differs from the signed one, or does not fit the key). Nothing is decrypted before
 * the signature, the nonce and the certificate path have passed.
 */
static int tr34_unwrap(lua_State *L) {
  static const char fn[] = "tr34.unwrap";
  static const char *const allowed[] = {"kdh_cert", "ca_cert", "chain", "krd_cert", "nonce", "time", NULL};
  payhsm_tr34_ctx *c;
  unsigned char *blk, nonce[32], md[EVP_MAX_MD_SIZE];
  const unsigned char *p, *ias, *key, *hdr;
  const ASN1_OCTET_STRING *got, *mdv, *shdr;
  const ASN1_UTCTIME *st;
  const ASN1_OBJECT *ct;
  ASN1_OCTET_STRING **pos;
  CMS_SignerInfo *si;
  CMS_RecipientInfo *ri;
  X509_ALGOR *dig;
  EVP_PKEY *krd;
  payhsm_der mine;
  payhsm_key *k;
  size_t n, iasn, keyn, hdrn, plen = 0, used = 0, pad;
  env_parts ep;
  unsigned mdn = 0;
  int nn, failed, form, aes = 0, oaep, alg, has_time, r;
  time_t t = 0;
  luaL_checktype(L, 3, LUA_TTABLE);
  payhsm_checkfields(L, 3, fn, allowed);
  if ((nn = payhsm_tr34_opt_nonce(L, 3, fn, nonce)) == -2) return 3;
  has_time = payhsm_tr34_opt_time(L, 3, &t);
  if ((n = payhsm_hexarg_alloc(L, 2, fn, "block", 0, &blk)) == (size_t)-1) return 3;
  c = payhsm_tr34_ctx_new(L);
  if (!(krd = payhsm_tr34_privkey(L, 1, c, fn, "krd_key"))) return 3;
  if (!(c->kdh_cert = payhsm_tr34_cert(L, 3, fn, "kdh_cert", &failed)) ||
      !(c->anchors = payhsm_tr34_certs(L, 3, fn, "ca_cert", &failed))) {
    if (failed) return 3;
    return luaL_error(L, "%s: kdh_cert and ca_cert are required", fn);
  }
  c->chain = payhsm_tr34_certs(L, 3, fn, "chain", &failed);
  if (failed) return 3;
  c->krd_cert = payhsm_tr34_cert(L, 3, fn, "krd_cert", &failed);
  if (failed) return 3;
  /* SignedData with one SignerInfo over an EnvelopedData (TR-34-2019 B.8, B.9) */
  p = blk;
  c->cms = d2i_CMS_ContentInfo(NULL, &p, (long)n);
  if (!c->cms || p != blk + n || OBJ_obj2nid(CMS_get0_type(c->cms)) != NID_pkcs7_signed ||
      OBJ_obj2nid(CMS_get0_eContentType(c->cms)) != NID_pkcs7_enveloped || !(pos = CMS_get0_content(c->cms)) ||
      !*pos || sk_CMS_SignerInfo_num(CMS_get0_SignerInfos(c->cms)) != 1)
    return payhsm_fail(L, fn, "TR34_FORMAT", "not a TR-34 key token (CMS SignedData of one EnvelopedData)");
  si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(c->cms), 0);
  if (CMS_SignerInfo_cert_cmp(si, c->kdh_cert) != 0)
    return payhsm_fail(L, fn, "TR34_SIGNER", "the token is signed by another KDH than kdh_cert");
  CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, NULL);
  if (CMS_signed_get_attr_count(si) <= 0 || OBJ_obj2nid(dig->algorithm) != NID_sha256)
    return payhsm_fail(L, fn, "TR34_FORMAT", "the signer must use SHA-256 with signed attributes");
  CMS_SignerInfo_set1_signer_cert(si, c->kdh_cert);
  if (CMS_SignerInfo_verify(si) != 1)
    return payhsm_fail(L, fn, "TR34_SIGNATURE", "the KDH signature does not verify: altered signed attributes or signature");
  ct = signed_attr(si, OID_CONTENT_TYPE, sizeof OID_CONTENT_TYPE, V_ASN1_OBJECT);
  mdv = signed_attr(si, OID_MESSAGE_DIGEST, sizeof OID_MESSAGE_DIGEST, V_ASN1_OCTET_STRING);
  shdr = signed_attr(si, OID_DATA, sizeof OID_DATA, V_ASN1_OCTET_STRING);
  if (!ct || OBJ_obj2nid(ct) != NID_pkcs7_enveloped || !mdv || !shdr)
    return payhsm_fail(L, fn, "TR34_FORMAT", "signed attributes must hold contentType, messageDigest and the key block header");
  if (!EVP_Digest((*pos)->data, (size_t)(*pos)->length, md, &mdn, EVP_sha256(), NULL)) return payhsm_raise_ossl(L, fn);
  if ((size_t)mdv->length != mdn || CRYPTO_memcmp(mdv->data, md, mdn) != 0)
    return payhsm_fail(L, fn, "TR34_ENVELOPE", "the envelope does not match the signed digest: altered envelope");
  got = signed_attr(si, OID_NONCE, sizeof OID_NONCE, V_ASN1_OCTET_STRING);
  if (got && nn < 0) return payhsm_fail(L, fn, "TR34_NONCE", "a two-pass token needs the nonce this KRD sent");
  if (!got && nn >= 0) return payhsm_fail(L, fn, "TR34_NONCE", "the token carries no nonce (one-pass), one was expected");
  if (got && ((size_t)got->length != (size_t)nn || CRYPTO_memcmp(got->data, nonce, (size_t)nn) != 0))
    return payhsm_fail(L, fn, "TR34_NONCE", "the token carries another nonce: stale or replayed");
  /* the signer's certificate path, before the KRD key touches anything in the token */
  if (payhsm_tr34_check_cert(L, fn, "kdh_cert", c->kdh_cert, X509v3_KU_DIGITAL_SIGNATURE | X509v3_KU_NON_REPUDIATION,
                             c->anchors, c->chain, has_time, t))
    return 3;
  /* the envelope (RFC 5652 6) */
  if ((form = open_envelope(c, *pos, &aes, &ep)) < 0 || sk_CMS_RecipientInfo_num(CMS_get0_RecipientInfos(c->env)) != 1 ||
      CMS_RecipientInfo_type(ri = sk_CMS_RecipientInfo_value(CMS_get0_RecipientInfos(c->env), 0)) != CMS_RECIPINFO_TRANS)
    return payhsm_fail(L, fn, "TR34_FORMAT", "the signed content is not an EnvelopedData for one RSA recipient");
  if (c->krd_cert && CMS_RecipientInfo_ktri_cert_cmp(ri, c->krd_cert) != 0)
    return payhsm_fail(L, fn, "TR34_RECIPIENT", "the token is made for another KRD than krd_cert");
  if (!(oaep = oaep_form(ri)))
    return payhsm_fail(L, fn, "TR34_FORMAT", "key transport must be RSAES-OAEP with SHA-256, MGF1-SHA-256, no label");
  if (oaep == 2 && form != FORM_AWS) form = FORM_RFC;
  if ((r = decrypt_content(c, krd, &ep, aes, &plen)) == -2) return payhsm_raise_ossl(L, fn);
  if (r == -1) return payhsm_fail(L, fn, "TR34_FORMAT", "the envelope's IV or content length does not fit its cipher");
  if (r == 0) return payhsm_fail(L, fn, "TR34_RECIPIENT", "the envelope does not open with krd_key");
  mine = (payhsm_der){c, S_IAS, 0};
  /* RFC 5652 6.3 padding; a block-aligned key block without it is taken too, as AWS's Go
   * TR-34 sample builds one */
  if (!key_block(c->buf[S_PLAIN], plen, &used, &ias, &iasn, &key, &keyn, &hdr, &hdrn) ||
      (pad = plen - used) > (aes ? 16u : 8u) || !padding_ok(c->buf[S_PLAIN] + used, pad))
    return payhsm_fail(L, fn, "TR34_FORMAT", "the envelope does not hold a padded TR-34 key block");
  if (!payhsm_tr34_ias(&mine, c->kdh_cert)) return payhsm_raise_ossl(L, fn);
  if (iasn != mine.n || memcmp(ias, c->buf[S_IAS], iasn) != 0)
    return payhsm_fail(L, fn, "TR34_SIGNER", "the key block names another KDH than the signer");
  if (hdrn != (size_t)shdr->length || memcmp(hdr, shdr->data, hdrn) != 0)
    return payhsm_fail(L, fn, "TR34_HEADER", "the key block header differs from the signed one");
  if ((alg = payhsm_tr34_header_alg((const char *)hdr, hdrn, keyn)) < 0)
    return payhsm_fail(L, fn, "TR34_HEADER", "the key block header is malformed or does not fit a %d-byte key", (int)keyn);
  k = payhsm_pushkey(L, (payhsm_alg)alg, key, keyn);
  memcpy(k->usage, hdr + 5, 2);
  k->usage[2] = 0;
  k->mode = (char)hdr[8];
  memcpy(k->version, hdr + 9, 2);
  k->exportability = (char)hdr[11];
  lua_createtable(L, 0, 12);
  set_str(L, "header", (const char *)hdr, hdrn);
  lua_pushstring(L, payhsm_alg_name((payhsm_alg)alg));
  lua_setfield(L, -2, "algorithm");
  set_str(L, "usage", (const char *)hdr + 5, 2);
  set_str(L, "mode", (const char *)hdr + 8, 1);
  set_str(L, "version", (const char *)hdr + 9, 2);
  set_str(L, "exportability", (const char *)hdr + 11, 1);
  lua_pushstring(L, payhsm_tr34_forms[form]);
  lua_setfield(L, -2, "form");
  lua_pushstring(L, aes ? "AES" : "TDES");
  lua_setfield(L, -2, "cipher");
  if (got) {
    payhsm_pushhex(L, got->data, (size_t)got->length);
    lua_setfield(L, -2, "nonce");
  }
  if ((st = signed_attr(si, OID_SIGNING_TIME, sizeof OID_SIGNING_TIME, V_ASN1_UTCTIME))) {
    set_str(L, "signing_time", (const char *)st->data, (size_t)st->length);
  }
  payhsm_pushhex(L, ASN1_STRING_get0_data(X509_get0_serialNumber(c->kdh_cert)),
                 (size_t)ASN1_STRING_length(X509_get0_serialNumber(c->kdh_cert)));
  lua_setfield(L, -2, "kdh_serial");
  payhsm_tr34_ctx_free(c);
  return 2;
}

/* Registered by payhsm_tr34_open (tr34.c). */
int payhsm_tr34_unwrap(lua_State *L) { return tr34_unwrap(L); }

/*
 * tr34.c - TR-34 key transport of a key-encryption key (ASC X9 TR-34-2019, the
 * asymmetric method of ANSI X9.24-2), both roles:
 *   the Key Distribution Host (KDH) builds a key token: the TR-34 key block (version,
 *   KDH IssuerAndSerialNumber, the key, the TR-31 style key block header) enveloped
 *   for the Key Receiving Device's RSA certificate (CMS EnvelopedData, RFC 5652 6;
 *   key transport RSAES-OAEP with SHA-256 and MGF1-SHA-256, RFC 8017 7.1; content
 *   encryption TDES-CBC or AES-128-CBC) and signed by the KDH (CMS SignedData, RFC 5652
 *   5; RSASSA-PKCS1-v1_5 with SHA-256) with the signed attributes contentType, the
 *   KRD's random nonce (two-pass, TR-34-2019 B.9) or signingTime (one-pass, B.8), the
 *   key block header and messageDigest;
 *   the KRD checks the KDH certificate path to a trusted CA, the signature, the digest
 *   of the envelope and the nonce, then opens the envelope with its private key.
 * Three forms on the wire: "X9_TR34_2012", AWS Payment Cryptography's KeyBlockFormat
 * (the signed content is the EnvelopedData fields without their SEQUENCE header, as its
 * ImportKey/ExportKey samples build and read them); "TR34_2019", the Annex B sample form
 * (a whole EnvelopedData); "RFC5652", the same with RSAES-OAEP parameters tagged as
 * RFC 4055 section 4.1 writes them (TR-34's samples and AWS write them untagged), which
 * generic CMS tools such as `openssl cms -decrypt` read. The three are read alike.
 * Tokens are read with OpenSSL's CMS API (d2i_CMS_ContentInfo, CMS_SignerInfo_cert_cmp,
 * CMS_SignerInfo_verify, CMS_signed_get0_data_by_OBJ, CMS_RecipientInfo_ktri_cert_cmp);
 * the ephemeral key and the content are then decrypted with EVP (csrc/tr34_unwrap.c), so
 * that a wrong KRD key is told apart and the unpadded block-aligned key block AWS's Go
 * sample sends is taken. Tokens are written here in DER, since OpenSSL's CMS signer always
 * adds a signingTime attribute and writes the OAEP parameters only the RFC 4055 way.
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "tr34.h"

/* ---- KDH: wrap -------------------------------------------------------------- */

/* Sorts the attributes (DER SET OF, X.690 11.6) from slot S_ATTR into the SET in S_SET. */
static int sort_attrs(payhsm_tr34_ctx *c, size_t off[5], int k, payhsm_der *set) {
  int order[4], i, j;
  for (i = 0; i < k; i++) order[i] = i;
  for (i = 1; i < k; i++)
    for (j = i; j > 0; j--) {
      size_t la = off[order[j - 1] + 1] - off[order[j - 1]], lb = off[order[j] + 1] - off[order[j]];
      int r = memcmp(c->buf[S_ATTR] + off[order[j - 1]], c->buf[S_ATTR] + off[order[j]], la < lb ? la : lb);
      if (r < 0 || (r == 0 && la <= lb)) break;
      r = order[j];
      order[j] = order[j - 1];
      order[j - 1] = r;
    }
  for (i = 0; i < k; i++)
    if (!payhsm_der_put(set, c->buf[S_ATTR] + off[order[i]], off[order[i] + 1] - off[order[i]])) return 0;
  return payhsm_der_wrap(set, 0x31, 0);
}

/* Appends SEQUENCE { OID, SET { value TLV } } (an Attribute, RFC 5652 5.3). */
static int attr(payhsm_der *d, const unsigned char *oid, size_t on, unsigned tag, const void *v, size_t vn) {
  size_t a = d->n, s;
  if (!payhsm_der_tlv(d, 0x06, oid, on)) return 0;
  s = d->n;
  return payhsm_der_tlv(d, tag, v, vn) && payhsm_der_wrap(d, 0x31, s) && payhsm_der_wrap(d, 0x30, a);
}

/* Encrypts the padded key block (S_PLAIN) into S_CT under the CEK; RSAES-OAEP encrypts
 * the CEK for the KRD into ek. Returns the length of ek, 0 on an OpenSSL failure. */
static size_t seal(payhsm_tr34_ctx *c, size_t plen, int aes, size_t ceklen, const unsigned char *iv,
                   unsigned char *ek, size_t ekcap) {
  EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
  EVP_PKEY_CTX *pc;
  payhsm_der ct = {c, S_CT, 0};
  int l1 = 0, l2 = 0, ok;
  size_t ekn = ekcap;
  if (!x || !payhsm_der_put(&ct, c->buf[S_PLAIN], plen)) { EVP_CIPHER_CTX_free(x); return 0; }
  ok = EVP_EncryptInit_ex(x, aes ? EVP_aes_128_cbc() : EVP_des_ede3_cbc(), NULL, c->buf[S_CEK], iv) == 1 &&
       EVP_CIPHER_CTX_set_padding(x, 0) == 1 &&
       EVP_EncryptUpdate(x, c->buf[S_CT], &l1, c->buf[S_PLAIN], (int)plen) == 1 &&
       EVP_EncryptFinal_ex(x, c->buf[S_CT] + l1, &l2) == 1 && (size_t)(l1 + l2) == plen;
  EVP_CIPHER_CTX_free(x);
  if (!ok || !(pc = EVP_PKEY_CTX_new_from_pkey(NULL, X509_get0_pubkey(c->krd_cert), NULL))) return 0;
  ok = EVP_PKEY_encrypt_init(pc) > 0 && EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) > 0 &&
       EVP_PKEY_CTX_set_rsa_oaep_md(pc, EVP_sha256()) > 0 && EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) > 0 &&
       EVP_PKEY_encrypt(pc, ek, &ekn, c->buf[S_CEK], ceklen) > 0;
  EVP_PKEY_CTX_free(pc);
  return ok ? ekn : 0;
}

/* The header from the option, or from the KEK's TR-31 attributes ("D9999" + usage,
 * algorithm, mode, version, exportability + "0000", the form AWS's TR-34 import
 * sample sends; TR-34 ignores the version and length fields). */
static const char *wrap_header(lua_State *L, payhsm_key *kek, char def[17], size_t *n) {
  const char *h = payhsm_optfield_str(L, 2, "header", n);
  int fam = payhsm_alg_family(kek->alg) == PAYHSM_FAM_AES;
  if (!h) {
    memcpy(def, "D9999K0TB00E0000", 17);
    if (kek->usage[0]) memcpy(def + 5, kek->usage, 2);
    def[7] = fam ? 'A' : 'T';
    if (kek->mode) def[8] = kek->mode;
    if (kek->version[0]) memcpy(def + 9, kek->version, 2);
    if (kek->exportability) def[11] = kek->exportability;
    h = def;
    *n = 16;
  }
  if (*n > 256 || payhsm_tr34_header_alg(h, *n, kek->len) != (int)kek->alg)
    luaL_error(L, "tr34.wrap: header '%s' is not a TR-31 header for a %s key", h, payhsm_alg_name(kek->alg));
  return h;
}

/*
 * tr34.wrap(kek, opts) -> hex | nil, msg, code
 * The KDH side: a TR-34 key token carrying kek (TDES_2KEY, TDES_3KEY or AES) for the KRD.
 * opts: kdh_key (payhsm.RsaKey or PEM), kdh_cert, krd_cert, ca_cert (the CA that issued
 * krd_cert, AWS's CertificateAuthorityPublicKeyIdentifier; PEM may hold several), chain
 * (intermediates, optional), nonce (hex, 8-32 bytes: the KRD's random number of the
 * two-pass token, AWS's RandomNonce; absent: a one-pass token with signingTime),
 * header (16+ characters; default from the key's TR-31 attributes), cipher ("TDES" |
 * "AES": content encryption; default the KEK's family), form ("X9_TR34_2012" default,
 * "TR34_2019", "RFC5652"), time (Unix seconds at which certificates are checked and
 * signingTime written; default now), cek and iv (a payhsm.Key TDES_3KEY / AES_128 and hex
 * IV fixing the content encryption, for known-answer tests only).
 * Codes: TR34_CERT, TR34_CERT_USAGE, TR34_CERT_EXPIRED, TR34_CERT_CHAIN (krd_cert),
 * TR34_KEY (kdh_key unreadable or not kdh_cert's), KEY_TYPE, KEY_USAGE (exportability N),
 * BAD_HEX, BAD_LENGTH.
 */
static int tr34_wrap(lua_State *L) {
  static const char fn[] = "tr34.wrap";
  static const char *const allowed[] = {"kdh_key", "kdh_cert", "krd_cert", "ca_cert", "chain", "nonce", "header",
                                        "cipher", "form", "time", "cek", "iv", NULL};
  static const char *const ciphers[] = {"TDES", "AES", NULL};
  payhsm_key *kek = payhsm_checkkey(L, 1), *cekkey = NULL;
  payhsm_tr34_ctx *c;
  payhsm_der plain, env, at, set, out, ias;
  unsigned char nonce[32], iv[16], ek[512], md[32], sig[512], tbuf[16];
  char hdef[17];
  const char *hdr, *ivs;
  size_t hn, ivn, ekn, sigl = sizeof sig, off[5], mark, i;
  int nn, aes, form, failed, k = 0, bs;
  time_t t = time(NULL);
  struct tm tm;
  EVP_PKEY *kdh;
  EVP_MD_CTX *mctx;
  luaL_checktype(L, 2, LUA_TTABLE);
  payhsm_checkfields(L, 2, fn, allowed);
  if (payhsm_alg_family(kek->alg) == PAYHSM_FAM_HMAC || kek->alg == PAYHSM_ALG_DES)
    return payhsm_fail(L, fn, "KEY_TYPE", "TR-34 carries TDES_2KEY, TDES_3KEY or AES keys, not %s", payhsm_alg_name(kek->alg));
  if (kek->exportability == 'N') return payhsm_fail(L, fn, "KEY_USAGE", "the key is not exportable (exportability N)");
  hdr = wrap_header(L, kek, hdef, &hn);
  lua_getfield(L, 2, "cipher");
  aes = lua_isnil(L, -1) ? payhsm_alg_family(kek->alg) == PAYHSM_FAM_AES : payhsm_checkname(L, -1, "cipher", ciphers);
  lua_getfield(L, 2, "form");
  form = lua_isnil(L, -1) ? FORM_AWS : payhsm_checkname(L, -1, "form", payhsm_tr34_forms);
  lua_getfield(L, 2, "cek");
  if (!lua_isnil(L, -1)) {
    cekkey = payhsm_checkkey(L, -1);
    if (cekkey->alg != (aes ? PAYHSM_ALG_AES_128 : PAYHSM_ALG_TDES_3KEY))
      return luaL_error(L, "%s: cek must be an %s key", fn, aes ? "AES_128" : "TDES_3KEY");
  }
  bs = aes ? 16 : 8;
  if ((ivs = payhsm_optfield_str(L, 2, "iv", &ivn)) && payhsm_hex_decode(ivs, ivn, iv, sizeof iv) != (size_t)bs)
    return luaL_error(L, "%s: iv must be %d bytes of hex", fn, bs);
  if ((nn = payhsm_tr34_opt_nonce(L, 2, fn, nonce)) == -2) return 3;
  if (payhsm_tr34_opt_time(L, 2, &t) == 0) t = time(NULL);
  c = payhsm_tr34_ctx_new(L);
  lua_getfield(L, 2, "kdh_key");
  if (lua_isnil(L, -1)) return luaL_error(L, "%s: kdh_key is required", fn);
  if (!(kdh = payhsm_tr34_privkey(L, lua_gettop(L), c, fn, "kdh_key"))) return 3;
  if (!(c->kdh_cert = payhsm_tr34_cert(L, 2, fn, "kdh_cert", &failed)) ||
      !(c->krd_cert = payhsm_tr34_cert(L, 2, fn, "krd_cert", &failed)) ||
      !(c->anchors = payhsm_tr34_certs(L, 2, fn, "ca_cert", &failed))) {
    if (failed) return 3;
    return luaL_error(L, "%s: kdh_cert, krd_cert and ca_cert are required", fn);
  }
  c->chain = payhsm_tr34_certs(L, 2, fn, "chain", &failed);
  if (failed) return 3;
  if (X509_check_private_key(c->kdh_cert, kdh) != 1)
    return payhsm_fail(L, fn, "TR34_KEY", "kdh_key is not the private key of kdh_cert");
  if (EVP_PKEY_get_bits(kdh) < 2048 || EVP_PKEY_get_bits(kdh) > 4096)
    return payhsm_fail(L, fn, "TR34_KEY", "kdh_key has %d bits; TR-34 takes 2048 to 4096", EVP_PKEY_get_bits(kdh));
  if (payhsm_tr34_check_cert(L, fn, "krd_cert", c->krd_cert, X509v3_KU_KEY_ENCIPHERMENT, c->anchors, c->chain, 1, t))
    return 3;
  /* the key block, TR-34-2019 5.4.5 (B.2.2.2), padded as RFC 5652 6.3 */
  plain = (payhsm_der){c, S_PLAIN, 0};
  ias = (payhsm_der){c, S_IAS, 0};
  if (!payhsm_tr34_ias(&ias, c->kdh_cert) || !payhsm_der_tlv(&plain, 0x02, "\x01", 1) ||
      !payhsm_der_put(&plain, c->buf[S_IAS], ias.n) || !payhsm_der_tlv(&plain, 0x04, kek->bytes, kek->len) ||
      !payhsm_der_tlv(&plain, 0x06, OID_DATA, sizeof OID_DATA))
    return payhsm_raise_ossl(L, fn);
  mark = plain.n - sizeof OID_DATA - 2;
  if (!payhsm_der_tlv(&plain, 0x04, hdr, hn) || !payhsm_der_wrap(&plain, 0x31, mark + sizeof OID_DATA + 2) ||
      !payhsm_der_wrap(&plain, 0x30, mark) || !payhsm_der_wrap(&plain, 0x30, 0))
    return payhsm_raise_ossl(L, fn);
  for (i = (size_t)bs - plain.n % (size_t)bs, mark = i; i > 0; i--)
    if (!payhsm_der_put(&plain, (unsigned char[]){(unsigned char)mark}, 1)) return payhsm_raise_ossl(L, fn);
  /* the content-encryption key and IV */
  out = (payhsm_der){c, S_CEK, 0};
  memset(ek, 0, 24);
  if (!payhsm_der_put(&out, cekkey ? cekkey->bytes : ek, aes ? 16 : 24)) return payhsm_raise_ossl(L, fn);
  if (!cekkey && RAND_priv_bytes(c->buf[S_CEK], aes ? 16 : 24) != 1) return payhsm_raise_ossl(L, fn);
  if (!cekkey) payhsm_des_parity(c->buf[S_CEK], aes ? 0 : 24);
  if (!ivs && !payhsm_random(iv, (size_t)bs)) return payhsm_raise_ossl(L, fn);
  if (!(ekn = seal(c, plain.n, aes, aes ? 16 : 24, iv, ek, sizeof ek))) return payhsm_raise_ossl(L, fn);
  /* EnvelopedData (RFC 5652 6.1): version 0, one KeyTransRecipientInfo, EncryptedContentInfo */
  env = (payhsm_der){c, S_ENV, 0};
  ias.n = 0;
  if (!payhsm_der_tlv(&env, 0x02, "\x00", 1) || !payhsm_der_tlv(&env, 0x02, "\x00", 1) ||
      !payhsm_tr34_ias(&ias, c->krd_cert) || !payhsm_der_put(&env, c->buf[S_IAS], ias.n))
    return payhsm_raise_ossl(L, fn);
  mark = env.n;
  if (!payhsm_der_tlv(&env, 0x06, OID_OAEP, sizeof OID_OAEP) ||
      !(form == FORM_RFC ? payhsm_der_put(&env, OAEP_RFC4055, sizeof OAEP_RFC4055)
                         : payhsm_der_put(&env, OAEP_TR34, sizeof OAEP_TR34)) ||
      !payhsm_der_wrap(&env, 0x30, mark) || !payhsm_der_tlv(&env, 0x04, ek, ekn) ||
      !payhsm_der_wrap(&env, 0x30, 3) || !payhsm_der_wrap(&env, 0x31, 3))
    return payhsm_raise_ossl(L, fn);
  mark = env.n;
  if (!payhsm_der_tlv(&env, 0x06, OID_DATA, sizeof OID_DATA) ||
      !payhsm_der_tlv(&env, 0x06, aes ? OID_AES128_CBC : OID_DES3_CBC, aes ? sizeof OID_AES128_CBC : sizeof OID_DES3_CBC) ||
      !payhsm_der_tlv(&env, 0x04, iv, (size_t)bs) || !payhsm_der_wrap(&env, 0x30, mark + sizeof OID_DATA + 2) ||
      !payhsm_der_tlv(&env, 0x80, c->buf[S_CT], plain.n) || !payhsm_der_wrap(&env, 0x30, mark) ||
      (form != FORM_AWS && !payhsm_der_wrap(&env, 0x30, 0)))
    return payhsm_raise_ossl(L, fn);
  OPENSSL_cleanse(c->buf[S_PLAIN], plain.n);
  OPENSSL_cleanse(c->buf[S_CEK], 24);
  /* the signed attributes (TR-34-2019 B.2.2.4 / B.2.2.5) and the signature */
  if (!EVP_Digest(c->buf[S_ENV], env.n, md, NULL, EVP_sha256(), NULL)) return payhsm_raise_ossl(L, fn);
  at = (payhsm_der){c, S_ATTR, 0};
  off[k++] = 0;
  if (!attr(&at, OID_CONTENT_TYPE, sizeof OID_CONTENT_TYPE, 0x06, OID_ENVELOPED, sizeof OID_ENVELOPED))
    return payhsm_raise_ossl(L, fn);
  off[k++] = at.n;
  if (nn > 0 ? !attr(&at, OID_NONCE, sizeof OID_NONCE, 0x04, nonce, (size_t)nn)
             : !attr(&at, OID_SIGNING_TIME, sizeof OID_SIGNING_TIME, 0x17, tbuf,
                     strftime((char *)tbuf, sizeof tbuf, "%y%m%d%H%M%SZ", gmtime_r(&t, &tm))))
    return payhsm_raise_ossl(L, fn);
  off[k++] = at.n;
  if (!attr(&at, OID_DATA, sizeof OID_DATA, 0x04, hdr, hn)) return payhsm_raise_ossl(L, fn);
  off[k++] = at.n;
  if (!attr(&at, OID_MESSAGE_DIGEST, sizeof OID_MESSAGE_DIGEST, 0x04, md, sizeof md)) return payhsm_raise_ossl(L, fn);
  off[k] = at.n;
  set = (payhsm_der){c, S_SET, 0};
  if (!sort_attrs(c, off, k, &set) || !(mctx = EVP_MD_CTX_new())) return payhsm_raise_ossl(L, fn);
  failed = EVP_DigestSignInit(mctx, NULL, EVP_sha256(), NULL, kdh) != 1 ||
           EVP_DigestSign(mctx, sig, &sigl, c->buf[S_SET], set.n) != 1;
  EVP_MD_CTX_free(mctx);
  if (failed) return payhsm_raise_ossl(L, fn);
  /* SignedData (RFC 5652 5.1) in a ContentInfo */
  out = (payhsm_der){c, S_OUT, 0};
  ias.n = 0;
  if (!payhsm_der_tlv(&out, 0x06, OID_SIGNED, sizeof OID_SIGNED) || !payhsm_der_tlv(&out, 0x02, "\x01", 1) ||
      !payhsm_der_tlv(&out, 0x06, OID_SHA256, sizeof OID_SHA256) || !payhsm_der_wrap(&out, 0x30, 14) ||
      !payhsm_der_wrap(&out, 0x31, 14) || !payhsm_der_tlv(&out, 0x06, OID_ENVELOPED, sizeof OID_ENVELOPED))
    return payhsm_raise_ossl(L, fn);
  mark = out.n;
  if (!payhsm_der_tlv(&out, 0x04, c->buf[S_ENV], env.n) || !payhsm_der_wrap(&out, 0xA0, mark) ||
      !payhsm_der_wrap(&out, 0x30, mark - sizeof OID_ENVELOPED - 2))
    return payhsm_raise_ossl(L, fn);
  mark = out.n;
  if (!payhsm_der_tlv(&out, 0x02, "\x01", 1) || !payhsm_tr34_ias(&ias, c->kdh_cert) ||
      !payhsm_der_put(&out, c->buf[S_IAS], ias.n) || !payhsm_der_tlv(&out, 0x06, OID_SHA256, sizeof OID_SHA256) ||
      !payhsm_der_wrap(&out, 0x30, out.n - sizeof OID_SHA256 - 2))
    return payhsm_raise_ossl(L, fn);
  i = out.n;
  if (!payhsm_der_put(&out, c->buf[S_SET], set.n)) return payhsm_raise_ossl(L, fn);
  c->buf[S_OUT][i] = 0xA0; /* signedAttrs [0] IMPLICIT SET OF Attribute */
  i = out.n;
  if (!payhsm_der_tlv(&out, 0x06, OID_RSA, sizeof OID_RSA) || !payhsm_der_tlv(&out, 0x05, NULL, 0) ||
      !payhsm_der_wrap(&out, 0x30, i) || !payhsm_der_tlv(&out, 0x04, sig, sigl) ||
      !payhsm_der_wrap(&out, 0x30, mark) || !payhsm_der_wrap(&out, 0x31, mark) ||
      !payhsm_der_wrap(&out, 0x30, sizeof OID_SIGNED + 2) || !payhsm_der_wrap(&out, 0xA0, sizeof OID_SIGNED + 2) ||
      !payhsm_der_wrap(&out, 0x30, 0))
    return payhsm_raise_ossl(L, fn);
  payhsm_pushhex(L, c->buf[S_OUT], out.n);
  payhsm_tr34_ctx_free(c);
  return 1;
}


void payhsm_tr34_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"wrap", tr34_wrap}, {"unwrap", payhsm_tr34_unwrap}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "tr34");
}

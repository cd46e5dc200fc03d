/* tr31.c - pure-C baselines for bench/tr31.lua: the OpenSSL calls payhsm.core makes
 * for a TR-31 wrap/unwrap once the KBEK/KBMK are derived and cached (CMAC over the
 * header and key field, CBC with the MAC as IV, RAND_bytes padding, hex both ways,
 * one allocation for the key object). Same block layouts as the library defaults:
 * version D, AES-128 key padded as 32 bytes -> 48-byte field; version B, TDES key
 * padded as 24 bytes -> 32-byte field. */
#include <stdlib.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include "bench.h"

typedef struct {
  EVP_CIPHER_CTX *enc, *dec, *mac, *ecb_enc, *ecb_dec, *ecb_mac;
  unsigned char k1[16], k2[16];
  int bs, maclen;
} kbkeys;

static void setup(kbkeys *k, const char *ecb, const char *cbc, const unsigned char *kbek,
                  const unsigned char *kbmk, int bs) {
  static const unsigned char zero[16];
  unsigned char l[16];
  int outl;
  EVP_CIPHER_CTX *e = ctx(ecb, kbmk);
  k->ecb_mac = ctx(ecb, kbmk);
  k->ecb_enc = ctx(ecb, kbek);
  k->ecb_dec = ctx(ecb, kbek);
  EVP_CipherInit_ex2(k->ecb_dec, NULL, NULL, NULL, 0, NULL);
  k->enc = ctx(cbc, kbek);
  k->dec = ctx(cbc, kbek);
  EVP_CipherInit_ex2(k->dec, NULL, NULL, NULL, 0, NULL);
  k->mac = ctx(cbc, kbmk);
  EVP_CipherUpdate(e, l, &outl, zero, bs);
  dbl(l, k->k1, bs);
  dbl(k->k1, k->k2, bs);
  k->bs = bs;
  k->maclen = bs;
  EVP_CIPHER_CTX_free(e);
}

static void wrap(kbkeys *k, const char *hdr16, const unsigned char *key, int klen, int fieldlen,
                 char *out) {
  unsigned char buf[256], mac[16], enc[128];
  memcpy(buf, hdr16, 16);
  buf[16] = (unsigned char)((klen * 8) >> 8);
  buf[17] = (unsigned char)(klen * 8);
  memcpy(buf + 18, key, (size_t)klen);
  bench_random(buf + 18 + klen, (size_t)(fieldlen - 2 - klen));
  cmac(k->ecb_mac, k->mac, k->k1, k->k2, buf, 16 + fieldlen, k->bs, mac);
  cbc_crypt(k->ecb_enc, k->enc, 1, mac, buf + 16, enc, fieldlen, k->bs);
  OPENSSL_cleanse(buf + 16, (size_t)fieldlen);
  memcpy(out, hdr16, 16);
  bench_hex(enc, (size_t)fieldlen, out + 16);
  bench_hex(mac, (size_t)k->maclen, out + 16 + 2 * fieldlen);
}

static int unwrap(kbkeys *k, const char *block, int fieldlen) {
  unsigned char buf[256], mac[16], got[16], *key;
  int klen, ok;
  memcpy(buf, block, 16);
  bench_unhex_fast(block + 16, (size_t)(2 * fieldlen), buf + 16);
  bench_unhex_fast(block + 16 + 2 * fieldlen, (size_t)(2 * k->maclen), got);
  cbc_crypt(k->ecb_dec, k->dec, 0, got, buf + 16, buf + 16, fieldlen, k->bs);
  cmac(k->ecb_mac, k->mac, k->k1, k->k2, buf, 16 + fieldlen, k->bs, mac);
  ok = CRYPTO_memcmp(mac, got, (size_t)k->maclen) == 0;
  klen = ((buf[16] << 8) | buf[17]) / 8;
  key = malloc((size_t)klen);
  memcpy(key, buf + 18, (size_t)klen);
  OPENSSL_cleanse(buf + 16, (size_t)fieldlen);
  OPENSSL_cleanse(key, (size_t)klen);
  free(key);
  return ok;
}

int main(void) {
  /* The KBEK/KBMK values are arbitrary: the timing does not depend on them. */
  unsigned char kbek[32], kbmk[32], aes128[16], tdes[16];
  char block_d[16 + 96 + 32 + 1], block_b[16 + 64 + 16 + 1];
  kbkeys d, b;
  int sink = 0;
  memset(kbek, 0x11, sizeof kbek);
  memset(kbmk, 0x22, sizeof kbmk);
  bench_unhex("3F419E1CB7079442AA37474C2EFBF8B8", aes128);
  memcpy(tdes, aes128, 16);
  setup(&d, "AES-256-ECB", "AES-256-CBC", kbek, kbmk, 16);
  {
    unsigned char k3e[24], k3m[24];
    memcpy(k3e, kbek, 16); memcpy(k3e + 16, kbek, 8);
    memcpy(k3m, kbmk, 16); memcpy(k3m + 16, kbmk, 8);
    setup(&b, "DES-EDE3-ECB", "DES-EDE3-CBC", k3e, k3m, 8);
  }
  wrap(&d, "D0144P0AE00E0000", aes128, 16, 48, block_d);
  wrap(&b, "B0096P0TE00E0000", tdes, 16, 32, block_b);
  BENCH("tr31_wrap_D_aes256_aes128", 2000000, wrap(&d, "D0144P0AE00E0000", aes128, 16, 48, block_d));
  BENCH("tr31_unwrap_D_aes256_aes128", 2000000, sink += unwrap(&d, block_d, 48));
  BENCH("tr31_wrap_B_tdes2_tdes2", 1000000, wrap(&b, "B0096P0TE00E0000", tdes, 16, 32, block_b));
  BENCH("tr31_unwrap_B_tdes2_tdes2", 1000000, sink += unwrap(&b, block_b, 32));
  return sink > 0 ? 0 : 1;
}

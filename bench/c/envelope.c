/* envelope.c - pure-C baselines for bench/envelope.lua: AES-256-CBC with the key's cached
 * context (IV reset per call), RAND_bytes IV, PKCS#7, hex out / hex in; HMAC-SHA-256. */
#include <stdint.h>
#include <stdlib.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>
#include "bench.h"

static unsigned char *buf;
static char *hexbuf;

static void seal(EVP_CIPHER_CTX *enc, const char *pt, size_t n, char *ivhex) {
  unsigned char iv[16];
  size_t padded = (n / 16 + 1) * 16;
  int outl;
  bench_random(iv, 16);
  memcpy(buf, pt, n);
  memset(buf + n, (int)(padded - n), padded - n);
  EVP_CipherInit_ex2(enc, NULL, NULL, iv, -1, NULL);
  EVP_CipherUpdate(enc, buf, &outl, buf, (int)padded);
  bench_hex(buf, padded, hexbuf);
  bench_hex(iv, 16, ivhex);
}

static EVP_CIPHER_CTX *ecb_dec;

static size_t open_env(EVP_CIPHER_CTX *dec, const char *cthex, size_t len, const char *ivhex, char *out) {
  unsigned char iv[16];
  size_t n = bench_unhex_fast(cthex, len, buf), i;
  unsigned pad, bad;
  int outl;
  bench_unhex_fast(ivhex, 32, iv);
  cbc_crypt(ecb_dec, dec, 0, iv, buf, buf, (int)n, 16);
  (void)outl;
  pad = buf[n - 1];
  bad = (pad - 1u) >> 31 | (16u - pad) >> 31;
  for (i = 0; i < 16; i++) bad |= (0u - ((unsigned)(15 - (int)i - (int)pad) >> 31)) & (buf[n - 16 + i] ^ pad);
  if (bad) return 0;
  memcpy(out, buf, n - pad);
  return n - pad;
}

int main(void) {
  unsigned char key[32], hk[32], mac[32];
  char ivhex[33], *pt1 = malloc(1024), *pt64 = malloc(65536), *ct1, *ct64, *out = malloc(65600);
  EVP_CIPHER_CTX *enc, *dec;
  EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  EVP_MAC_CTX *h = EVP_MAC_CTX_new(hmac);
  OSSL_PARAM params[2];
  size_t ml, sink = 0;
  char iv1[33], iv64[33];
  memset(key, 0x11, 32); memset(hk, 0x22, 32);
  memset(pt1, 'x', 1024); memset(pt64, 'y', 65536);
  buf = malloc(65536 + 16);
  hexbuf = malloc(2 * (65536 + 16) + 1);
  enc = ctx("AES-256-CBC", key);
  dec = ctx("AES-256-CBC", key);
  EVP_CipherInit_ex2(dec, NULL, NULL, NULL, 0, NULL);
  ecb_dec = ctx("AES-256-ECB", key);
  EVP_CipherInit_ex2(ecb_dec, NULL, NULL, NULL, 0, NULL);
  params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)(uintptr_t)"SHA256", 0);
  params[1] = OSSL_PARAM_construct_end();
  EVP_MAC_init(h, hk, 32, params);
  seal(enc, pt1, 1024, iv1); ct1 = strdup(hexbuf);
  seal(enc, pt64, 65536, iv64); ct64 = strdup(hexbuf);
  BENCH("envelope_seal_1KiB", 300000, seal(enc, pt1, 1024, ivhex));
  BENCH("envelope_open_1KiB", 300000, sink += open_env(dec, ct1, strlen(ct1), iv1, out));
  BENCH("envelope_seal_64KiB", 5000, seal(enc, pt64, 65536, ivhex));
  BENCH("envelope_open_64KiB", 5000, sink += open_env(dec, ct64, strlen(ct64), iv64, out));
  BENCH("hmac_sha256_1KiB", 300000, {
    EVP_MAC_init(h, NULL, 0, NULL);
    EVP_MAC_update(h, (const unsigned char *)pt1, 1024);
    EVP_MAC_final(h, mac, &ml, sizeof mac);
    bench_hex(mac, ml, ivhex);
  });
  return sink > 0 ? 0 : 1;
}

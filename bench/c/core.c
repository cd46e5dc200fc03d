/* core.c - pure-C baselines for bench/core.lua: the same OpenSSL calls payhsm.core
 * makes (cached contexts; short CMACs on the ECB context; hex in and out). */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <stdint.h>
#include "bench.h"

int main(void) {
  unsigned char t2[24], a128[16], zero[16] = {0}, out[64], l[16], tk1[8], tk2[8], ak1[16], ak2[16];
  unsigned char k1x3[24], data[64], hk[32];
  char hex[129];
  const char *d32 = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF";
  int outl;
  size_t mlen;
  EVP_CIPHER_CTX *tecb, *tcbc, *aecb, *acbc, *k1cbc;
  EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  EVP_MAC_CTX *hctx = EVP_MAC_CTX_new(hmac);
  OSSL_PARAM params[2];

  bench_unhex("0123456789ABCDEFFEDCBA98765432100123456789ABCDEF", t2);
  bench_unhex("3F419E1CB7079442AA37474C2EFBF8B8", a128);
  memset(hk, 0x0b, sizeof hk);
  memcpy(k1x3, t2, 8); memcpy(k1x3 + 8, t2, 8); memcpy(k1x3 + 16, t2, 8);
  tecb = ctx("DES-EDE3-ECB", t2); tcbc = ctx("DES-EDE3-CBC", t2);
  aecb = ctx("AES-128-ECB", a128); acbc = ctx("AES-128-CBC", a128);
  k1cbc = ctx("DES-EDE3-CBC", k1x3);
  EVP_CipherUpdate(tecb, l, &outl, zero, 8); dbl(l, tk1, 8); dbl(tk1, tk2, 8);
  EVP_CipherUpdate(aecb, l, &outl, zero, 16); dbl(l, ak1, 16); dbl(ak1, ak2, 16);
  params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)(uintptr_t)"SHA256", 0);
  params[1] = OSSL_PARAM_construct_end();
  EVP_MAC_init(hctx, hk, 32, params);

  BENCH("kcv_tdes_x924", 4000000, {
    EVP_CipherUpdate(tecb, out, &outl, zero, 8);
    bench_hex(out, 3, hex);
  });
  BENCH("kcv_aes_cmac", 4000000, {
    cmac(aecb, acbc, ak1, ak2, zero, 16, 16, out);
    bench_hex(out, 3, hex);
  });
  BENCH("cmac_aes128_32B", 2000000, {
    mlen = bench_unhex_fast(d32, 64, data);
    cmac(aecb, acbc, ak1, ak2, data, (int)mlen, 16, out);
    bench_hex(out, 16, hex);
  });
  BENCH("cmac_tdes_32B", 2000000, {
    mlen = bench_unhex_fast(d32, 64, data);
    cmac(tecb, tcbc, tk1, tk2, data, (int)mlen, 8, out);
    bench_hex(out, 8, hex);
  });
  BENCH("retail_mac_32B", 2000000, {
    unsigned char h[8];
    int i;
    mlen = bench_unhex_fast(d32, 64, data);
    chain(k1cbc, data, (int)mlen - 8, 8, h);
    for (i = 0; i < 8; i++) h[i] ^= data[mlen - 8 + (size_t)i];
    EVP_CipherUpdate(tecb, out, &outl, h, 8);
    bench_hex(out, 8, hex);
  });
  BENCH("retail_mac_verify_32B", 2000000, {
    unsigned char h[8], given[8];
    int i;
    mlen = bench_unhex_fast(d32, 64, data);
    chain(k1cbc, data, (int)mlen - 8, 8, h);
    for (i = 0; i < 8; i++) h[i] ^= data[mlen - 8 + (size_t)i];
    EVP_CipherUpdate(tecb, out, &outl, h, 8);
    bench_unhex_fast("A1C72E74EA3FA9B6", 16, given);
    if (CRYPTO_memcmp(out, given, 8) == 0) hex[0] = 1;
  });
  BENCH("hmac_sha256_32B", 1000000, {
    size_t ol;
    mlen = bench_unhex_fast(d32, 64, data);
    EVP_MAC_init(hctx, NULL, 0, NULL);
    EVP_MAC_update(hctx, data, mlen);
    EVP_MAC_final(hctx, out, &ol, sizeof out);
    bench_hex(out, ol, hex);
  });
  return 0;
}

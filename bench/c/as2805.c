/* as2805.c - pure-C baselines for bench/as2805.lua: KEK xor variant mask keyed into a
 * fresh DES-EDE3 context per call (as payhsm does), RAND_priv_bytes for KR, KCV with the cached context. */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include "bench.h"

static void variant(const unsigned char kek[16], unsigned char k24[24]) {
  int i;
  for (i = 0; i < 16; i++) k24[i] = (unsigned char)(kek[i] ^ (i % 2 ? 0xC0 : 0x82));
  memcpy(k24 + 16, k24, 8);
}

int main(void) {
  unsigned char kek[16], k24[24], kek24[24], kr[16], both[32], krs[16], krr[16], kcv[8], zero[8] = {0};
  char hs[33], hr[33], hk[7];
  int outl, i;
  EVP_CIPHER_CTX *kc;
  bench_unhex("0123456789ABCDEFFEDCBA9876543210", kek);
  memcpy(kek24, kek, 16); memcpy(kek24 + 16, kek, 8);
  kc = ctx("DES-EDE3-ECB", kek24);
  BENCH("as2805_kek_validation_request_16B", 300000, {
    EVP_CIPHER_CTX *c;
    RAND_priv_bytes(kr, 16);
    memcpy(both, kr, 16);
    for (i = 0; i < 16; i++) both[16 + i] = (unsigned char)~kr[i];
    variant(kek, k24);
    c = ctx("DES-EDE3-ECB", k24);
    EVP_CipherUpdate(c, both, &outl, both, 32);
    memcpy(krs, both, 16);
    memcpy(krr, both + 16, 16);
    EVP_CIPHER_CTX_free(c);
    EVP_CipherUpdate(kc, kcv, &outl, zero, 8);
    bench_hex(krs, 16, hs); bench_hex(krr, 16, hr); bench_hex(kcv, 3, hk);
  });
  BENCH("as2805_kek_validation_response_16B", 300000, {
    EVP_CIPHER_CTX *d, *e;
    bench_unhex_fast(hs, 32, krs);
    variant(kek, k24);
    d = ctx("DES-EDE3-ECB", k24);
    EVP_CipherInit_ex2(d, NULL, NULL, NULL, 0, NULL);
    EVP_CipherUpdate(d, kr, &outl, krs, 16);
    EVP_CIPHER_CTX_free(d);
    for (i = 0; i < 16; i++) kr[i] = (unsigned char)~kr[i];
    e = ctx("DES-EDE3-ECB", k24);
    EVP_CipherUpdate(e, krr, &outl, kr, 16);
    EVP_CIPHER_CTX_free(e);
    bench_hex(krr, 16, hr);
  });
  return 0;
}

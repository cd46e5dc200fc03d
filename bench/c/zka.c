/* zka.c - pure-C baselines for bench/zka.lua: SK = TDES-decrypt under MK xor mask of RND
 * (a context per call, as payhsm keys a temporary key), parity, a new key object, then the
 * CBC-MAC over 32 bytes (the new key's CBC context built once, as payhsm does lazily). */
#include <stdlib.h>
#include <openssl/crypto.h>
#include "bench.h"

int main(void) {
  static const unsigned char mask[16] = {'m', 'a', 'c', 0, 0, 0, 0, 0, 'M', 'A', 'C', 0, 0, 0, 0, 0};
  unsigned char mk[16], k24[24], rnd[16], sk[16], data[40], mac[8], *obj;
  char hex[17];
  const char *d32 = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF";
  int outl, i;
  bench_unhex("0123456789ABCDEFFEDCBA9876543210", mk);
  BENCH("zka_derive_mac_32B", 300000, {
    EVP_CIPHER_CTX *d, *c;
    bench_unhex_fast("A1B2C3D4E5F60718293A4B5C6D7E8F90", 32, rnd);
    for (i = 0; i < 16; i++) k24[i] = (unsigned char)(mk[i] ^ mask[i]);
    memcpy(k24 + 16, k24, 8);
    d = ctx("DES-EDE3-ECB", k24);
    EVP_CipherInit_ex2(d, NULL, NULL, NULL, 0, NULL);
    EVP_CipherUpdate(d, sk, &outl, rnd, 16);
    EVP_CIPHER_CTX_free(d);
    for (i = 0; i < 16; i++) {
      unsigned v = sk[i] & 0xFEu, p = v;
      p ^= p >> 4; p ^= p >> 2; p ^= p >> 1;
      sk[i] = (unsigned char)(v | (~p & 1u));
    }
    obj = malloc(16);
    memcpy(obj, sk, 16);
    memcpy(k24, sk, 16); memcpy(k24 + 16, sk, 8);
    c = ctx("DES-EDE3-CBC", k24);
    bench_unhex_fast(d32, 64, data);
    chain(c, data, 32, 8, mac);
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(obj, 16);
    free(obj);
    bench_hex(mac, 8, hex);
  });
  return 0;
}

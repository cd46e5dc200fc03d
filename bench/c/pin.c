/* pin.c - pure-C baselines for bench/pin.lua: ISO 9564 PIN translation with cached
 * key contexts (hex in and out, RAND_bytes for the format 4 fill). */
#include <openssl/rand.h>
#include "bench.h"

static void pan_f0(const char *pan, unsigned char f[8]) {
  size_t n = strlen(pan), i;
  memset(f, 0, 8);
  for (i = 0; i < 12; i++) {
    unsigned v = (unsigned)(pan[n - 13 + i] - '0');
    size_t nib = 4 + i;
    f[nib / 2] |= (unsigned char)(nib % 2 ? v : v << 4);
  }
}

static void pan_f4(const char *pan, unsigned char f[16]) {
  size_t n = strlen(pan), i;
  memset(f, 0, 16);
  f[0] = (unsigned char)((n - 12) << 4);
  for (i = 0; i < n; i++) {
    unsigned v = (unsigned)(pan[i] - '0');
    size_t nib = 1 + i;
    f[nib / 2] |= (unsigned char)(nib % 2 ? v : v << 4);
  }
}

int main(void) {
  unsigned char t1[24], t2[24], a[16], blk[8], clear[16], pf0[8], pf4[16], out[16];
  char hex[33], pin[13];
  const char *pan = "43219876543210987", *in_hex;
  EVP_CIPHER_CTX *d1, *e2, *ea;
  int outl;
  size_t i, len;
  bench_unhex("0123456789ABCDEFFEDCBA98765432100123456789ABCDEF", t1);
  bench_unhex("89E88CF7931444F334BD7547FC3F380C89E88CF7931444F3", t2);
  bench_unhex("00112233445566778899AABBCCDDEEFF", a);
  d1 = ctx("DES-EDE3-ECB", t1);
  EVP_CipherInit_ex2(d1, NULL, NULL, NULL, 0, NULL);
  e2 = ctx("DES-EDE3-ECB", t2);
  ea = ctx("AES-128-ECB", a);
  {
    EVP_CIPHER_CTX *e1 = ctx("DES-EDE3-ECB", t1);
    unsigned char f[8] = {0x04, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    pan_f0(pan, pf0);
    for (i = 0; i < 8; i++) f[i] ^= pf0[i];
    EVP_CipherUpdate(e1, blk, &outl, f, 8);
    bench_hex(blk, 8, hex);
  }
  in_hex = strdup(hex);
#define DECRYPT_F0()                                              \
  bench_unhex_fast(in_hex, 16, blk);                              \
  EVP_CipherUpdate(d1, clear, &outl, blk, 8);                     \
  pan_f0(pan, pf0);                                               \
  for (i = 0; i < 8; i++) clear[i] ^= pf0[i];                     \
  len = clear[0] & 15;                                            \
  for (i = 0; i < len; i++) pin[i] = (char)('0' + ((clear[1 + (i + 1) / 2] >> ((i % 2) ? 4 : 0)) & 15));
  BENCH("pin_translate_f0_tdes_to_f4_aes", 2000000, {
    DECRYPT_F0();
    bench_random(pf4, 16);
    memset(clear, 0xAA, 8);
    clear[0] = (unsigned char)(0x40 | len);
    for (i = 0; i < len; i++) clear[1 + i / 2] = (unsigned char)((clear[1 + i / 2] & (i % 2 ? 0xF0 : 0x0F)) | ((pin[i] - '0') << (i % 2 ? 0 : 4)));
    memcpy(clear + 8, pf4 + 8, 8);
    EVP_CipherUpdate(ea, out, &outl, clear, 16);
    pan_f4(pan, pf4);
    for (i = 0; i < 16; i++) out[i] ^= pf4[i];
    EVP_CipherUpdate(ea, out, &outl, out, 16);
    bench_hex(out, 16, hex);
  });
  BENCH("pin_translate_f0_tdes_to_f0_tdes", 2000000, {
    DECRYPT_F0();
    memset(clear, 0xFF, 8);
    clear[0] = (unsigned char)len;
    for (i = 0; i < len; i++) clear[1 + i / 2] = (unsigned char)((clear[1 + i / 2] & (i % 2 ? 0xF0 : 0x0F)) | ((pin[i] - '0') << (i % 2 ? 0 : 4)));
    for (i = 0; i < 8; i++) clear[i] ^= pf0[i];
    EVP_CipherUpdate(e2, out, &outl, clear, 8);
    bench_hex(out, 8, hex);
  });
  return 0;
}

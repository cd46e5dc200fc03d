/* card.c - pure-C baselines for bench/card.lua: CVV, Visa PVV and IBM 3624 verification
 * and PIN verification from an ISO format 0 / 4 block, with cached key contexts and the
 * same OpenSSL calls as payhsm.core (CVV: single-DES CBC under K1 then TDES; PVV and
 * IBM 3624: one TDES block; blocks: hex in, TDES or two AES decryptions). */
#include "bench.h"

static void pack(const char *s, size_t n, unsigned char *out, size_t len) {
  size_t i;
  memset(out, 0, len);
  for (i = 0; i < n; i++) {
    unsigned v = (unsigned)(s[i] <= '9' ? s[i] - '0' : s[i] - 'A' + 10);
    out[i / 2] = (unsigned char)(out[i / 2] | (i % 2 ? v : v << 4));
  }
}

static void decimalize(const unsigned char *r, char *out, size_t want) {
  size_t i, n = 0;
  int pass;
  for (pass = 0; pass < 2 && n < want; pass++)
    for (i = 0; i < 16 && n < want; i++) {
      unsigned d = i % 2 ? r[i / 2] & 15u : r[i / 2] >> 4;
      if (pass == 0 && d < 10) out[n++] = (char)('0' + d);
      else if (pass == 1 && d >= 10) out[n++] = (char)('0' + d - 10);
    }
}

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

static void pvv_of(EVP_CIPHER_CTX *e, const char *pan, const char *pin, char out[4]) {
  char d[16];
  unsigned char tsp[8], r[8];
  int outl;
  size_t n = strlen(pan);
  memcpy(d, pan + n - 12, 11);
  d[11] = '1';
  memcpy(d + 12, pin, 4);
  pack(d, 16, tsp, 8);
  EVP_CipherUpdate(e, r, &outl, tsp, 8);
  decimalize(r, out, 4);
}

static void offset_of(EVP_CIPHER_CTX *e, const unsigned char vdata[8], const char *table, const char *pin,
                      size_t n, char *out) {
  unsigned char r[8];
  int outl;
  size_t i;
  EVP_CipherUpdate(e, r, &outl, vdata, 8);
  for (i = 0; i < n; i++) {
    unsigned nat = (unsigned)(table[i % 2 ? r[i / 2] & 15u : r[i / 2] >> 4] - '0');
    out[i] = (char)('0' + (pin[i] - '0' + 10 - (int)nat) % 10);
  }
}

int main(void) {
  unsigned char k[24], t[24], a[16], data[16], h[8], r[8], blk[16], clear[16], pf[16], vdata[8];
  char cvv[3], mine[4], pvv[4], off[4], pin[12], hex0[17], hex4[33];
  const char *pan = "4123456789012345", *table = "0123456789012345";
  EVP_CIPHER_CTX *k1, *ek, *dt, *da, *ea, *et;
  int outl;
  volatile int ok = 0;
  size_t i, len;
  bench_unhex("0123456789ABCDEFFEDCBA98765432100123456789ABCDEF", k);
  bench_unhex("89E88CF7931444F334BD7547FC3F380C89E88CF7931444F3", t);
  bench_unhex("00112233445566778899AABBCCDDEEFF", a);
  {
    unsigned char k1k[24];
    memcpy(k1k, k, 8); memcpy(k1k + 8, k, 8); memcpy(k1k + 16, k, 8);
    k1 = ctx("DES-EDE3-CBC", k1k);
  }
  ek = ctx("DES-EDE3-ECB", k);
  et = ctx("DES-EDE3-ECB", t);
  dt = ctx("DES-EDE3-ECB", t);
  EVP_CipherInit_ex2(dt, NULL, NULL, NULL, 0, NULL);
  ea = ctx("AES-128-ECB", a);
  da = ctx("AES-128-ECB", a);
  EVP_CipherInit_ex2(da, NULL, NULL, NULL, 0, NULL);
#define CVV()                                                        \
  pack("41234567890123458701101", 23, data, 16);                     \
  chain(k1, data, 8, 8, h);                                          \
  for (i = 0; i < 8; i++) h[i] ^= data[8 + i];                       \
  EVP_CipherUpdate(ek, r, &outl, h, 8);                              \
  decimalize(r, cvv, 3)
  CVV();
  memcpy(mine, cvv, 3);
  BENCH("card_verify_cvv", 2000000, { CVV(); ok += CRYPTO_memcmp(cvv, mine, 3) == 0; });
  pvv_of(ek, pan, "1234", pvv);
  BENCH("pin_pvv_verify_clear", 2000000, { pvv_of(ek, pan, "1234", mine); ok += CRYPTO_memcmp(mine, pvv, 4) == 0; });
  pack("56789012345FFFFF", 16, vdata, 8);
  offset_of(ek, vdata, table, "1234", 4, off);
  BENCH("pin_ibm3624_verify_clear", 2000000, {
    pack("56789012345FFFFF", 16, vdata, 8);
    offset_of(ek, vdata, table, "1234", 4, mine);
    ok += CRYPTO_memcmp(mine, off, 4) == 0;
  });
  /* the blocks: format 0 under the TPK, format 4 (fixed fill) under the AES key */
  {
    unsigned char f[8] = {0x04, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, f4[16], p4[16];
    pan_f0(pan, pf);
    for (i = 0; i < 8; i++) f[i] ^= pf[i];
    EVP_CipherUpdate(et, blk, &outl, f, 8);
    bench_hex(blk, 8, hex0);
    memset(f4, 0xAA, 16);
    f4[0] = 0x44; f4[1] = 0x12; f4[2] = 0x34;
    EVP_CipherUpdate(ea, blk, &outl, f4, 16);
    pan_f4(pan, p4);
    for (i = 0; i < 16; i++) blk[i] ^= p4[i];
    EVP_CipherUpdate(ea, blk, &outl, blk, 16);
    bench_hex(blk, 16, hex4);
  }
#define PARSE(c)                                                                        \
  len = (c)[0] & 15;                                                                    \
  for (i = 0; i < len; i++) pin[i] = (char)('0' + (((c)[1 + (i + 1) / 2] >> ((i % 2) ? 4 : 0)) & 15))
  BENCH("pin_verify_block_f0_pvv", 2000000, {
    bench_unhex_fast(hex0, 16, blk);
    EVP_CipherUpdate(dt, clear, &outl, blk, 8);
    pan_f0(pan, pf);
    for (i = 0; i < 8; i++) clear[i] ^= pf[i];
    PARSE(clear);
    pvv_of(ek, pan, pin, mine);
    ok += CRYPTO_memcmp(mine, pvv, 4) == 0;
  });
  BENCH("pin_verify_block_f4_pvv", 2000000, {
    bench_unhex_fast(hex4, 32, blk);
    EVP_CipherUpdate(da, clear, &outl, blk, 16);
    pan_f4(pan, pf);
    for (i = 0; i < 16; i++) clear[i] ^= pf[i];
    EVP_CipherUpdate(da, clear, &outl, clear, 16);
    PARSE(clear);
    pvv_of(ek, pan, pin, mine);
    ok += CRYPTO_memcmp(mine, pvv, 4) == 0;
  });
  BENCH("pin_verify_block_f0_ibm3624", 2000000, {
    bench_unhex_fast(hex0, 16, blk);
    EVP_CipherUpdate(dt, clear, &outl, blk, 8);
    pan_f0(pan, pf);
    for (i = 0; i < 8; i++) clear[i] ^= pf[i];
    PARSE(clear);
    pack("56789012345FFFFF", 16, vdata, 8);
    offset_of(ek, vdata, table, pin, 4, mine);
    ok += CRYPTO_memcmp(mine, off, 4) == 0;
  });
  return ok > 0 ? 0 : 1;
}

/*
 * tr31_binding.c - the keys of the TR-31 / ANSI X9.143 binding methods (Annex A): the key
 * block encryption and MAC keys (KBEK, KBMK) derived from the KBPK by variant (versions A
 * and C) or by CMAC in counter mode (B and D), cached on the KBPK object and wiped with
 * it, and the block MAC each version uses. Shared by unwrap (tr31.c) and wrap
 * (tr31_wrap.c).
 */
#include <string.h>

#include <openssl/crypto.h>

#include "tr31.h"

/* ---- key-block keys, cached on the KBPK ------------------------------ */

typedef struct { key_pair variant, derived; } tr31_cache;

static void cache_free(void *p) {
  tr31_cache *c = p;
  payhsm_key_clear(&c->variant.enc); payhsm_key_clear(&c->variant.mac);
  payhsm_key_clear(&c->derived.enc); payhsm_key_clear(&c->derived.mac);
  OPENSSL_clear_free(c, sizeof *c);
}

/* KBEK and KBMK for the binding method of version v under kbpk; NULL on failure. */
key_pair *payhsm_tr31_block_keys(lua_State *L, payhsm_key *kbpk, char v) {
  tr31_cache *c = kbpk->tr31_cache;
  key_pair *p;
  unsigned char enc[32], mac[32];
  size_t i;
  int ok;
  if (!c) {
    if (!(c = OPENSSL_zalloc(sizeof *c))) return NULL;
    kbpk->tr31_cache = c;
    kbpk->tr31_cache_free = cache_free;
  }
  p = (v == 'A' || v == 'C') ? &c->variant : &c->derived;
  if (p->ready) return p;
  if (v == 'A' || v == 'C') {
    for (i = 0; i < kbpk->len; i++) {
      enc[i] = (unsigned char)(kbpk->bytes[i] ^ 0x45);
      mac[i] = (unsigned char)(kbpk->bytes[i] ^ 0x4D);
    }
  } else {
    size_t bs = payhsm_key_blocksize(kbpk), n = (kbpk->len + bs - 1) / bs;
    unsigned char d[8], out[16];
    unsigned alg_ind;
    switch (kbpk->alg) {
      case PAYHSM_ALG_TDES_2KEY: alg_ind = 0; break;
      case PAYHSM_ALG_TDES_3KEY: alg_ind = 1; break;
      case PAYHSM_ALG_AES_128: alg_ind = 2; break;
      case PAYHSM_ALG_AES_192: alg_ind = 3; break;
      default: alg_ind = 4; break;
    }
    for (i = 0; i < n; i++) {
      d[0] = (unsigned char)(i + 1);
      d[1] = 0; d[2] = 0; d[3] = 0; d[4] = 0;
      d[5] = (unsigned char)alg_ind;
      d[6] = (unsigned char)((kbpk->len * 8) >> 8);
      d[7] = (unsigned char)((kbpk->len * 8) & 0xFF);
      if (!payhsm_key_cmac(L, kbpk, d, 8, out)) return NULL;
      memcpy(enc + i * bs, out, kbpk->len - i * bs < bs ? kbpk->len - i * bs : bs);
      d[2] = 1;
      if (!payhsm_key_cmac(L, kbpk, d, 8, out)) return NULL;
      memcpy(mac + i * bs, out, kbpk->len - i * bs < bs ? kbpk->len - i * bs : bs);
    }
    OPENSSL_cleanse(out, sizeof out);
  }
  ok = payhsm_key_init(&p->enc, kbpk->alg, enc, kbpk->len) &&
       payhsm_key_init(&p->mac, kbpk->alg, mac, kbpk->len);
  OPENSSL_cleanse(enc, sizeof enc);
  OPENSSL_cleanse(mac, sizeof mac);
  if (!ok) {
    payhsm_key_clear(&p->enc);
    payhsm_key_clear(&p->mac);
    return NULL;
  }
  p->ready = 1;
  return p;
}


/* MAC of a block: buf holds header || key field (clear for B/D, enciphered for A/C). */
int payhsm_tr31_block_mac(lua_State *L, key_pair *p, char v, const unsigned char *buf, size_t n,
                     unsigned char out[16]) {
  if (v == 'A' || v == 'C') return payhsm_mac_alg1(L, &p->mac, buf, n, out);
  return payhsm_key_cmac(L, &p->mac, buf, n, out);
}

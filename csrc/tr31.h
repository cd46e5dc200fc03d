/*
 * tr31.h - private header of the TR-31 / ANSI X9.143 key block files: tr31_header.c
 * (reading a header), tr31_binding.c (the binding methods' keys and MAC), tr31.c (unwrap,
 * parse, the Lua table) and tr31_wrap.c (wrap).
 */
#ifndef PAYHSM_TR31_H
#define PAYHSM_TR31_H

#include <stddef.h>

#include "payhsm.h"

#define MAX_BLOCKS 99
#define MAX_BLOCK_LEN 9999

typedef struct {
  char version;
  unsigned length; /* from the length field */
  char usage[3];
  char alg;
  char mode;
  char kv[3];
  char exp;
  char context;
  int nblocks;
  struct { char id[3]; size_t off, len; } blocks[MAX_BLOCKS]; /* data offsets into the text */
  size_t hlen; /* header length with the optional blocks */
} tr31_hdr;

/* A failure found while reading a block: code and message (no key bytes ever). */
typedef struct { const char *code; char msg[160]; } tr31_err;

/* The KBEK and KBMK of one binding method, derived once per KBPK. */
typedef struct { payhsm_key enc, mac; int ready; } key_pair;

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }
static inline int is_upper_alnum(char c) { return is_digit(c) || (c >= 'A' && c <= 'Z'); }
static inline int is_print(char c) { return c >= 0x20 && c <= 0x7E; }

static inline size_t cipher_block(char version) { return version == 'D' ? 16 : 8; }
static inline size_t mac_len(char version) { return version == 'D' ? 16 : version == 'B' ? 8 : 4; }

/* Security strength in bits (SP 800-57 Part 1 Table 2; HMAC keys by length). */
static inline unsigned strength(const payhsm_key *k) {
  switch (k->alg) {
    case PAYHSM_ALG_DES: return 56;
    case PAYHSM_ALG_TDES_2KEY: return 80;
    case PAYHSM_ALG_TDES_3KEY: return 112;
    default: return k->len * 8 > 256 ? 256 : (unsigned)(k->len * 8);
  }
}

static inline int kbpk_fits(const payhsm_key *kbpk, char v) {
  if (v == 'D') return payhsm_alg_family(kbpk->alg) == PAYHSM_FAM_AES;
  return kbpk->alg == PAYHSM_ALG_TDES_2KEY || kbpk->alg == PAYHSM_ALG_TDES_3KEY;
}

static inline char alg_letter(payhsm_alg a) {
  switch (payhsm_alg_family(a)) {
    case PAYHSM_FAM_AES: return 'A';
    case PAYHSM_FAM_HMAC: return 'H';
    default: return a == PAYHSM_ALG_DES ? 'D' : 'T';
  }
}

/* HM optional block value (X9.143 Table 13) for an HMAC key algorithm. */
static inline const char *hm_code(payhsm_alg a) {
  return a == PAYHSM_ALG_HMAC_SHA256 ? "21" : a == PAYHSM_ALG_HMAC_SHA384 ? "22"
         : a == PAYHSM_ALG_HMAC_SHA224 ? "20" : "23";
}

/* Parses and validates the header at s (n characters); with whole set, s is the complete
 * block (tr31_header.c). Returns 1, or 0 with e filled. */
int payhsm_tr31_parse_header(const char *s, size_t n, int whole, tr31_hdr *h, tr31_err *e);
/* KBEK and KBMK for the binding method of version v under kbpk, cached on it; NULL on failure. */
key_pair *payhsm_tr31_block_keys(lua_State *L, payhsm_key *kbpk, char v);
/* MAC of a block: buf holds header || key field (clear for B/D, enciphered for A/C). */
int payhsm_tr31_block_mac(lua_State *L, key_pair *p, char v, const unsigned char *buf, size_t n,
                          unsigned char out[16]);
/* core.tr31.wrap (tr31_wrap.c). */
int payhsm_tr31_wrap(lua_State *L);

#endif

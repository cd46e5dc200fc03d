/*
 * tr31.c - TR-31 / ANSI X9.143-2022 key blocks.
 *
 * A key block is ASCII: a 16-character header, optional blocks, the encrypted
 * key field in hex and the MAC in hex.
 *
 *   0     version ID      A, B, C or D                      (X9.143 6.3.1)
 *   1-4   block length    4 decimal digits, whole block     (6.3.2)
 *   5-6   key usage       Table 6                           (6.3.3)
 *   7     algorithm       A D E H R S T                      (6.3.4)
 *   8     mode of use     Table 8                           (6.3.5)
 *   9-10  key version     "00", two alphanumerics, or "c" + component number (6.3.6)
 *   11    exportability   E, N or S                         (6.3.7)
 *   12-13 optional blocks 2 decimal digits                  (6.3.8)
 *   14    key context     0, 1 or 2 (X9.143-2022; "0" in TR-31:2018)
 *   15    reserved        "0"
 *
 * Optional block: 2-character ID, 2 hex digits of length counting the whole
 * block, data. Length "00" is the extended form: 2 hex digits giving how many hex
 * bytes of length follow, then the length in hex ("0002" + 4 hex digits) (6.3.9). The header (with optional
 * blocks) is a multiple of the cipher block; the PB block pads it.
 *
 * Binding methods (X9.143 Annex A and TR-31:2018):
 *   A, C  TDES key variant: KBEK = KBPK xor 45.., KBMK = KBPK xor 4D..; key field
 *         TDES-CBC with the first 8 header bytes as IV; MAC = CBC-MAC (ISO 9797-1
 *         algorithm 1) over header || encrypted field, leftmost 4 bytes.
 *   B     TDES, KBEK/KBMK derived by CMAC (SP 800-108 counter mode); MAC = TDES
 *         CMAC over header || clear field, 8 bytes; field TDES-CBC with IV = MAC.
 *   D     the same with AES; 16-byte MAC.
 * Derivation data (8 bytes): counter, key usage indicator (0000 encryption,
 * 0001 MAC), 00, algorithm (0000 TDES-2, 0001 TDES-3, 0002 AES-128, 0003 AES-192,
 * 0004 AES-256), length in bits (0080, 00C0, 0100).
 * The clear key field: key length in bits (2 bytes), the key, padding.
 *
 * Lua: core.tr31.wrap(kbpk, key, header [, opts]) -> block | nil, msg, code
 *      core.tr31.unwrap(kbpk, block) -> key, header | nil, msg, code
 *      core.tr31.parse(block) -> header | nil, msg, code
 * The derived KBEK/KBMK are cached on the KBPK object (k->tr31_cache).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

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

static int err(tr31_err *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int err(tr31_err *e, const char *code, const char *fmt, ...) {
  va_list ap;
  e->code = code;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_upper_alnum(char c) { return is_digit(c) || (c >= 'A' && c <= 'Z'); }
static int is_print(char c) { return c >= 0x20 && c <= 0x7E; }

static size_t cipher_block(char version) { return version == 'D' ? 16 : 8; }
static size_t mac_len(char version) { return version == 'D' ? 16 : version == 'B' ? 8 : 4; }

/* Parses and validates the header at s (n characters). With whole set, s is the
 * complete block: the length field must match and the rest must hold the key
 * field and MAC. Returns 1, or 0 with e filled. */
static int parse_header(const char *s, size_t n, int whole, tr31_hdr *h, tr31_err *e) {
  size_t i, pos;
  const char *modes;
  if (n < 16) return err(e, "TR31_LENGTH", "a key block needs at least a 16-character header, got %u",
                         (unsigned)n);
  for (i = 0; i < 16; i++)
    if (!is_print(s[i])) return err(e, "TR31_FORMAT", "header character %u is not printable ASCII",
                                    (unsigned)(i + 1));
  h->version = s[0];
  if (!strchr("ABCD", h->version) || !h->version)
    return err(e, "TR31_VERSION", "unknown key block version '%c' (A, B, C or D)", s[0]);
  for (i = 1; i < 5; i++)
    if (!is_digit(s[i])) return err(e, "TR31_LENGTH", "key block length '%.4s' is not 4 digits", s + 1);
  h->length = (unsigned)((s[1] - '0') * 1000 + (s[2] - '0') * 100 + (s[3] - '0') * 10 + (s[4] - '0'));
  if (whole && h->length != n)
    return err(e, "TR31_LENGTH", "key block length field says %u characters, the block has %u",
               h->length, (unsigned)n);
  h->usage[0] = s[5]; h->usage[1] = s[6]; h->usage[2] = 0;
  if (!(modes = payhsm_usage_modes(h->usage)))
    return err(e, "TR31_USAGE", "unknown key usage '%s'", h->usage);
  h->alg = s[7];
  if (!strchr("ADEHRST", h->alg) || !h->alg)
    return err(e, "TR31_ALGORITHM", "unknown algorithm '%c'", h->alg);
  h->mode = s[8];
  if (!payhsm_mode_known(h->mode)) return err(e, "TR31_MODE", "unknown mode of use '%c'", h->mode);
  if (modes[0] && !strchr(modes, h->mode))
    return err(e, "TR31_MODE", "mode of use '%c' does not fit key usage %s (allowed: %s)", h->mode,
               h->usage, modes);
  h->kv[0] = s[9]; h->kv[1] = s[10]; h->kv[2] = 0;
  if (!((is_upper_alnum(s[9]) || s[9] == 'c') && is_upper_alnum(s[10])))
    return err(e, "TR31_KEY_VERSION", "key version '%s' is not two alphanumeric characters", h->kv);
  h->exp = s[11];
  if (!strchr("ENS", h->exp) || !h->exp)
    return err(e, "TR31_EXPORTABILITY", "exportability '%c' is not E, N or S", h->exp);
  if (!is_digit(s[12]) || !is_digit(s[13]))
    return err(e, "TR31_FORMAT", "number of optional blocks '%.2s' is not 2 digits", s + 12);
  h->nblocks = (s[12] - '0') * 10 + (s[13] - '0');
  h->context = s[14];
  if (!strchr("012", h->context) || !h->context || s[15] != '0')
    return err(e, "TR31_FORMAT", "header bytes 15-16 must be 00, 10 or 20, got '%.2s'", s + 14);

  pos = 16;
  for (i = 0; i < (size_t)h->nblocks; i++) {
    size_t blen, start = pos, j;
    int a, b;
    if (pos + 4 > n)
      return err(e, "TR31_OPT_BLOCK", "optional block %u runs past the end", (unsigned)(i + 1));
    if (!is_print(s[pos]) || !is_print(s[pos + 1]))
      return err(e, "TR31_OPT_BLOCK", "optional block %u has an unprintable ID", (unsigned)(i + 1));
    h->blocks[i].id[0] = s[pos]; h->blocks[i].id[1] = s[pos + 1]; h->blocks[i].id[2] = 0;
    a = payhsm_hex_digit(s[pos + 2]); b = payhsm_hex_digit(s[pos + 3]);
    if (a < 0 || b < 0)
      return err(e, "TR31_OPT_BLOCK", "optional block %s: length is not hex", h->blocks[i].id);
    blen = (size_t)(a * 16 + b);
    pos += 4;
    if (blen == 0) { /* extended length: count of hex digits, then the length */
      size_t nd;
      if (pos + 2 > n) return err(e, "TR31_OPT_BLOCK", "optional block %s: extended length truncated",
                                  h->blocks[i].id);
      a = payhsm_hex_digit(s[pos]); b = payhsm_hex_digit(s[pos + 1]);
      /* length of length counts bytes: "02" is followed by 4 hex digits */
      if (a < 0 || b < 0 || (nd = 2 * (size_t)(a * 16 + b)) == 0 || nd > 4 || pos + 2 + nd > n)
        return err(e, "TR31_OPT_BLOCK", "optional block %s: malformed extended length",
                   h->blocks[i].id);
      pos += 2;
      for (j = 0; j < nd; j++) {
        int v = payhsm_hex_digit(s[pos + j]);
        if (v < 0) return err(e, "TR31_OPT_BLOCK", "optional block %s: extended length is not hex",
                              h->blocks[i].id);
        blen = blen * 16 + (size_t)v;
      }
      pos += nd;
    } else if (blen < 4) {
      return err(e, "TR31_OPT_BLOCK", "optional block %s: length %u is too short", h->blocks[i].id,
                 (unsigned)blen);
    }
    if (blen < pos - start || start + blen > n)
      return err(e, "TR31_OPT_BLOCK", "optional block %s: length %u does not fit the block",
                 h->blocks[i].id, (unsigned)blen);
    h->blocks[i].off = pos;
    h->blocks[i].len = start + blen - pos;
    for (j = pos; j < start + blen; j++)
      if (!is_print(s[j]))
        return err(e, "TR31_OPT_BLOCK", "optional block %s: data is not printable ASCII",
                   h->blocks[i].id);
    if (h->blocks[i].id[0] == 'P' && h->blocks[i].id[1] == 'B' && i + 1 != (size_t)h->nblocks)
      return err(e, "TR31_OPT_BLOCK", "the PB padding block must be the last optional block");
    if (h->blocks[i].id[0] == 'H' && h->blocks[i].id[1] == 'M' &&
        (h->blocks[i].len != 2 || payhsm_hex_digit(s[pos]) < 0 || payhsm_hex_digit(s[pos + 1]) < 0))
      return err(e, "TR31_OPT_BLOCK", "optional block HM must hold 2 hex digits");
    pos = start + blen;
  }
  h->hlen = pos;
  if (whole) {
    size_t bs = cipher_block(h->version), rest, ml = 2 * mac_len(h->version);
    if (h->hlen % bs)
      return err(e, "TR31_OPT_BLOCK", "header with optional blocks is %u characters, not a multiple "
                 "of %u", (unsigned)h->hlen, (unsigned)bs);
    rest = n - h->hlen;
    if (rest < ml + 2 * bs || (rest - ml) % (2 * bs))
      return err(e, "TR31_LENGTH", "key field and MAC take %u characters: not a whole number of "
                 "%u-byte blocks plus a %u-byte MAC", (unsigned)rest, (unsigned)bs,
                 (unsigned)(ml / 2));
  }
  return 1;
}

/* Pushes the header table of a parsed block. */
static void push_header(lua_State *L, const char *s, const tr31_hdr *h) {
  int i;
  lua_createtable(L, 0, 13);
  lua_pushlstring(L, &h->version, 1); lua_setfield(L, -2, "version");
  lua_pushinteger(L, h->length); lua_setfield(L, -2, "length");
  lua_pushstring(L, h->usage); lua_setfield(L, -2, "usage");
  lua_pushlstring(L, &h->alg, 1); lua_setfield(L, -2, "algorithm");
  lua_pushlstring(L, &h->mode, 1); lua_setfield(L, -2, "mode");
  lua_pushstring(L, h->kv); lua_setfield(L, -2, "key_version");
  lua_pushlstring(L, &h->exp, 1); lua_setfield(L, -2, "exportability");
  lua_pushlstring(L, &h->context, 1); lua_setfield(L, -2, "context");
  lua_pushlstring(L, s, 16); lua_setfield(L, -2, "header");
  if (h->version == 'A' || h->version == 'C') {
    lua_pushboolean(L, 1); lua_setfield(L, -2, "legacy");
  }
  lua_createtable(L, h->nblocks, 0);
  for (i = 0; i < h->nblocks; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, h->blocks[i].id); lua_setfield(L, -2, "id");
    lua_pushlstring(L, s + h->blocks[i].off, h->blocks[i].len); lua_setfield(L, -2, "data");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "blocks");
}

/* ---- key-block keys, cached on the KBPK ------------------------------ */

typedef struct { payhsm_key enc, mac; int ready; } key_pair;
typedef struct { key_pair variant, derived; } tr31_cache;

static void cache_free(void *p) {
  tr31_cache *c = p;
  payhsm_key_clear(&c->variant.enc); payhsm_key_clear(&c->variant.mac);
  payhsm_key_clear(&c->derived.enc); payhsm_key_clear(&c->derived.mac);
  OPENSSL_clear_free(c, sizeof *c);
}

/* KBEK and KBMK for the binding method of version v under kbpk; NULL on failure. */
static key_pair *block_keys(lua_State *L, payhsm_key *kbpk, char v) {
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

/* Security strength in bits (SP 800-57 Part 1 Table 2; HMAC keys by length). */
static unsigned strength(const payhsm_key *k) {
  switch (k->alg) {
    case PAYHSM_ALG_DES: return 56;
    case PAYHSM_ALG_TDES_2KEY: return 80;
    case PAYHSM_ALG_TDES_3KEY: return 112;
    default: return k->len * 8 > 256 ? 256 : (unsigned)(k->len * 8);
  }
}

static int kbpk_fits(const payhsm_key *kbpk, char v) {
  if (v == 'D') return payhsm_alg_family(kbpk->alg) == PAYHSM_FAM_AES;
  return kbpk->alg == PAYHSM_ALG_TDES_2KEY || kbpk->alg == PAYHSM_ALG_TDES_3KEY;
}

static char alg_letter(payhsm_alg a) {
  switch (payhsm_alg_family(a)) {
    case PAYHSM_FAM_AES: return 'A';
    case PAYHSM_FAM_HMAC: return 'H';
    default: return a == PAYHSM_ALG_DES ? 'D' : 'T';
  }
}

/* HM optional block value (X9.143 Table 13) for an HMAC key algorithm. */
static const char *hm_code(payhsm_alg a) {
  return a == PAYHSM_ALG_HMAC_SHA256 ? "21" : a == PAYHSM_ALG_HMAC_SHA384 ? "22" : "23";
}

/* MAC of a block: buf holds header || key field (clear for B/D, enciphered for A/C). */
static int block_mac(lua_State *L, key_pair *p, char v, const unsigned char *buf, size_t n,
                     unsigned char out[16]) {
  if (v == 'A' || v == 'C') return payhsm_mac_alg1(L, &p->mac, buf, n, out);
  return payhsm_key_cmac(L, &p->mac, buf, n, out);
}

/* ---- unwrap ----------------------------------------------------------- */

/*
 * core.tr31.unwrap(kbpk, block) -> key, header | nil, msg, code
 * The MAC is verified (CRYPTO_memcmp) before anything else is read from the
 * key field. header also has legacy=true for versions A/C and weaker_kbpk=true
 * when the KBPK is weaker than the key it protects (accepted, as such blocks
 * exist in the field; wrap refuses to make them). A single-length (8-byte) key
 * under algorithm 'T', which older TR-31 producers emit for single DES, comes
 * back as a DES key with single_length=true in the header (wrap refuses to make
 * such blocks: it writes 'D' for DES keys).
 * Codes: TR31_LENGTH, TR31_FORMAT, TR31_VERSION, TR31_USAGE, TR31_ALGORITHM,
 * TR31_MODE, TR31_KEY_VERSION, TR31_EXPORTABILITY, TR31_OPT_BLOCK, BAD_HEX,
 * TR31_KBPK_MISMATCH, TR31_MAC_MISMATCH, TR31_KEY_LENGTH, KEY_USAGE, KEY_TYPE.
 */
static int tr31_unwrap(lua_State *L) {
  static const char fn[] = "tr31.unwrap";
  payhsm_key *kbpk = payhsm_checkkey(L, 1), *out;
  size_t n, bs, ml, plen, klen, bits, i;
  const char *s = luaL_checklstring(L, 2, &n);
  tr31_hdr h;
  tr31_err e;
  key_pair *p;
  unsigned char stackbuf[1024], *buf, mac[16], got[16];
  int r, ok, weaker, single = 0;
  payhsm_alg alg;
  if ((r = payhsm_key_usage(L, kbpk, fn, "K0 K1", "BDN"))) return r;
  if (payhsm_alg_family(kbpk->alg) == PAYHSM_FAM_HMAC)
    return payhsm_fail(L, fn, "KEY_TYPE", "a %s key cannot be a KBPK", payhsm_alg_name(kbpk->alg));
  if (!parse_header(s, n, 1, &h, &e)) return payhsm_fail(L, fn, e.code, "%s", e.msg);
  if (!kbpk_fits(kbpk, h.version))
    return payhsm_fail(L, fn, "TR31_KBPK_MISMATCH", "version %c blocks need a%s KBPK, got %s",
                       h.version, h.version == 'D' ? "n AES" : " TDES_2KEY or TDES_3KEY",
                       payhsm_alg_name(kbpk->alg));
  bs = cipher_block(h.version);
  ml = mac_len(h.version);
  plen = (n - h.hlen - 2 * ml) / 2;
  if (h.hlen + plen > sizeof stackbuf) {
    buf = lua_newuserdatauv(L, h.hlen + plen, 0);
  } else {
    buf = stackbuf;
  }
  memcpy(buf, s, h.hlen);
  if (payhsm_hex_decode(s + h.hlen, 2 * plen, buf + h.hlen, plen) != plen ||
      payhsm_hex_decode(s + h.hlen + 2 * plen, 2 * ml, got, sizeof got) != ml)
    return payhsm_fail(L, fn, "BAD_HEX", "key field or MAC is not valid hex");
  if (!(p = block_keys(L, kbpk, h.version))) return payhsm_raise_ossl(L, fn);
  if (h.version == 'A' || h.version == 'C') {
    ok = block_mac(L, p, h.version, buf, h.hlen + plen, mac) &&
         payhsm_key_crypt(L, &p->enc, 0, buf, buf + h.hlen, buf + h.hlen, plen);
  } else {
    ok = payhsm_key_crypt(L, &p->enc, 0, got, buf + h.hlen, buf + h.hlen, plen) &&
         block_mac(L, p, h.version, buf, h.hlen + plen, mac);
  }
  if (!ok) {
    OPENSSL_cleanse(buf + h.hlen, plen);
    return payhsm_raise_ossl(L, fn);
  }
  if (CRYPTO_memcmp(mac, got, ml) != 0) {
    OPENSSL_cleanse(buf + h.hlen, plen);
    return payhsm_fail(L, fn, "TR31_MAC_MISMATCH", "key block MAC does not verify (wrong KBPK or "
                       "altered block)");
  }
  (void)bs;
  bits = ((size_t)buf[h.hlen] << 8) | buf[h.hlen + 1];
  klen = bits / 8;
  alg = PAYHSM_ALG_COUNT;
  switch (h.alg) {
    case 'T': alg = klen == 16 ? PAYHSM_ALG_TDES_2KEY : klen == 24 ? PAYHSM_ALG_TDES_3KEY
                    : klen == 8 ? PAYHSM_ALG_DES : PAYHSM_ALG_COUNT;
      single = klen == 8;
      break;
    case 'D': alg = klen == 8 ? PAYHSM_ALG_DES : PAYHSM_ALG_COUNT; break;
    case 'A': alg = klen == 16 ? PAYHSM_ALG_AES_128 : klen == 24 ? PAYHSM_ALG_AES_192
                    : klen == 32 ? PAYHSM_ALG_AES_256 : PAYHSM_ALG_COUNT; break;
    case 'H': {
      const char *hm = "21";
      for (i = 0; i < (size_t)h.nblocks; i++)
        if (h.blocks[i].id[0] == 'H' && h.blocks[i].id[1] == 'M') hm = s + h.blocks[i].off;
      alg = hm[0] == '2' && hm[1] == '1' ? PAYHSM_ALG_HMAC_SHA256
            : hm[0] == '2' && hm[1] == '2' ? PAYHSM_ALG_HMAC_SHA384
            : hm[0] == '2' && hm[1] == '3' ? PAYHSM_ALG_HMAC_SHA512 : PAYHSM_ALG_COUNT;
      if (alg == PAYHSM_ALG_COUNT) {
        OPENSSL_cleanse(buf + h.hlen, plen);
        return payhsm_fail(L, fn, "TR31_ALGORITHM", "HMAC hash '%.2s' is not SHA-256/384/512", hm);
      }
      if (klen == 0 || klen > PAYHSM_MAX_KEY) alg = PAYHSM_ALG_COUNT;
      break;
    }
    default:
      OPENSSL_cleanse(buf + h.hlen, plen);
      return payhsm_fail(L, fn, "TR31_ALGORITHM", "algorithm '%c' keys cannot be loaded as key "
                         "objects", h.alg);
  }
  if (bits % 8 || klen + 2 > plen || alg == PAYHSM_ALG_COUNT) {
    OPENSSL_cleanse(buf + h.hlen, plen);
    return payhsm_fail(L, fn, "TR31_KEY_LENGTH", "key length of %u bits does not fit algorithm '%c' "
                       "and the %u-byte key field", (unsigned)bits, h.alg, (unsigned)plen);
  }
  out = payhsm_pushkey(L, alg, buf + h.hlen + 2, klen);
  OPENSSL_cleanse(buf + h.hlen, plen);
  memcpy(out->usage, h.usage, 3);
  out->mode = h.mode;
  memcpy(out->version, h.kv, 2);
  out->exportability = h.exp;
  weaker = strength(kbpk) < strength(out);
  push_header(L, s, &h);
  if (weaker) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "weaker_kbpk");
  }
  if (single) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "single_length");
  }
  return 2;
}

/* core.tr31.parse(block) -> header | nil, msg, code (no key needed; MAC not checked). */
static int tr31_parse(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  tr31_hdr h;
  tr31_err e;
  size_t ml;
  if (!parse_header(s, n, 1, &h, &e)) return payhsm_fail(L, "tr31.parse", e.code, "%s", e.msg);
  ml = 2 * mac_len(h.version);
  push_header(L, s, &h);
  lua_pushlstring(L, s + n - ml, ml);
  lua_setfield(L, -2, "mac");
  lua_pushinteger(L, (lua_Integer)h.hlen);
  lua_setfield(L, -2, "header_length");
  return 1;
}

/* ---- wrap ------------------------------------------------------------- */

/* Reads one single-character or two-character header field from the table at idx. */
static const char *tfield(lua_State *L, int idx, const char *name, size_t want) {
  size_t n;
  const char *v = payhsm_optfield_str(L, idx, name, &n);
  if (v && n != want) luaL_error(L, "header.%s must be %d character(s), got '%s'", name, (int)want, v);
  return v;
}

/* The header a wrap writes: the 16 fixed characters, then the optional blocks. */
typedef struct {
  char text[MAX_BLOCK_LEN + 1];
  size_t hlen, nb;
  char version, usage[3], alg, mode, kv[3], exp, context;
  int has_hm;
} wrap_hdr;

/* Writes v as n decimal digits at p (the length and block-count fields). */
static void put_digits(char *p, size_t v, int n) {
  while (n-- > 0) {
    p[n] = (char)('0' + v % 10);
    v /= 10;
  }
}

/* Appends one optional block (X9.143 6.3.9: the extended length form past 255). */
static void add_block(wrap_hdr *w, const char *id, const char *data, size_t dn) {
  size_t room = sizeof w->text - w->hlen;
  if (dn + 4 <= 255)
    w->hlen += (size_t)snprintf(w->text + w->hlen, room, "%.2s%02X%.*s", id, (unsigned)(dn + 4),
                                (int)dn, data);
  else
    w->hlen += (size_t)snprintf(w->text + w->hlen, room, "%.2s0002%04X%.*s", id,
                                (unsigned)(dn + 10), (int)dn, data);
  w->nb++;
}

/* Header fields and optional blocks from a header string (arg 3); its PB block is dropped. */
static int header_from_string(lua_State *L, const char *fn, wrap_hdr *w) {
  size_t vn, i;
  const char *hs = lua_tolstring(L, 3, &vn);
  tr31_hdr h;
  tr31_err e;
  if (vn > MAX_BLOCK_LEN) return payhsm_fail(L, fn, "TR31_LENGTH", "header is too long");
  if (!parse_header(hs, vn, 0, &h, &e)) return payhsm_fail(L, fn, e.code, "%s", e.msg);
  if (h.hlen != vn)
    return payhsm_fail(L, fn, "TR31_FORMAT", "header string has %u characters after its optional "
                       "blocks", (unsigned)(vn - h.hlen));
  w->version = h.version; memcpy(w->usage, h.usage, 3); w->alg = h.alg; w->mode = h.mode;
  memcpy(w->kv, h.kv, 3); w->exp = h.exp; w->context = h.context;
  for (i = 0; i < (size_t)h.nblocks; i++) {
    if (h.blocks[i].id[0] == 'P' && h.blocks[i].id[1] == 'B') continue;
    if (h.blocks[i].id[0] == 'H' && h.blocks[i].id[1] == 'M') w->has_hm = 1;
    add_block(w, h.blocks[i].id, hs + h.blocks[i].off, h.blocks[i].len);
  }
  return 0;
}

/* Header fields and optional blocks from a header table (arg 3). */
static int header_from_table(lua_State *L, const char *fn, wrap_hdr *w) {
  static const char *const hdr_fields[] = {"version", "usage", "algorithm", "mode", "key_version",
    "exportability", "context", "blocks", NULL};
  static const char *const blk_fields[] = {"id", "data", NULL};
  const char *v;
  luaL_checktype(L, 3, LUA_TTABLE);
  payhsm_checkfields(L, 3, "tr31.wrap: header", hdr_fields);
  if ((v = tfield(L, 3, "version", 1))) w->version = v[0];
  if ((v = tfield(L, 3, "usage", 2))) memcpy(w->usage, v, 3);
  if ((v = tfield(L, 3, "algorithm", 1))) w->alg = v[0];
  if ((v = tfield(L, 3, "mode", 1))) w->mode = v[0];
  if ((v = tfield(L, 3, "key_version", 2))) memcpy(w->kv, v, 3);
  if ((v = tfield(L, 3, "exportability", 1))) w->exp = v[0];
  if ((v = tfield(L, 3, "context", 1))) w->context = v[0];
  if (lua_getfield(L, 3, "blocks") != LUA_TNIL) {
    lua_Integer j, nblk;
    luaL_checktype(L, -1, LUA_TTABLE);
    nblk = luaL_len(L, -1);
    for (j = 1; j <= nblk; j++) {
      size_t idn, dn, k2;
      const char *id, *data;
      lua_rawgeti(L, -1, j);
      luaL_checktype(L, -1, LUA_TTABLE);
      payhsm_checkfields(L, -1, "tr31.wrap: header.blocks entry", blk_fields);
      lua_getfield(L, -1, "id");
      lua_getfield(L, -2, "data");
      id = luaL_checklstring(L, -2, &idn);
      data = luaL_checklstring(L, -1, &dn);
      if (idn != 2 || !is_print(id[0]) || !is_print(id[1]))
        return payhsm_fail(L, fn, "TR31_OPT_BLOCK", "optional block ID must be 2 printable "
                           "characters");
      for (k2 = 0; k2 < dn; k2++)
        if (!is_print(data[k2]))
          return payhsm_fail(L, fn, "TR31_OPT_BLOCK", "optional block %s: data is not printable "
                             "ASCII", id);
      if (w->hlen + dn + 10 + 64 > MAX_BLOCK_LEN)
        return payhsm_fail(L, fn, "TR31_LENGTH", "optional blocks make the key block too long");
      if (!(id[0] == 'P' && id[1] == 'B')) {
        if (id[0] == 'H' && id[1] == 'M') {
          if (dn != 2 || payhsm_hex_digit(data[0]) < 0 || payhsm_hex_digit(data[1]) < 0)
            return payhsm_fail(L, fn, "TR31_OPT_BLOCK", "optional block HM must hold 2 hex digits");
          w->has_hm = 1;
        }
        add_block(w, id, data, dn);
      }
      lua_pop(L, 3);
    }
  }
  lua_pop(L, 1);
  return 0;
}

/* Builds the header for wrapping key under kbpk: fields from arg 3 over the key's
 * attributes, checked against X9.143 and the key's own binding, then the HM block
 * an HMAC key needs and the PB block. Returns 0, or 3 with nil, msg, code pushed. */
static int wrap_header(lua_State *L, const char *fn, const payhsm_key *kbpk,
                       const payhsm_key *key, int legacy, int local, wrap_hdr *w) {
  tr31_hdr h;
  tr31_err e;
  size_t bs, i;
  int r;
  w->version = payhsm_alg_family(kbpk->alg) == PAYHSM_FAM_AES ? 'D' : 'B';
  memcpy(w->usage, key->usage, 3);
  w->alg = alg_letter(key->alg);
  w->mode = key->mode;
  memcpy(w->kv, key->version, 2); w->kv[2] = 0;
  w->exp = key->exportability ? key->exportability : 'E';
  w->context = '0';
  w->hlen = 16;
  w->nb = 0;
  w->has_hm = 0;
  r = lua_type(L, 3) == LUA_TSTRING ? header_from_string(L, fn, w) : header_from_table(L, fn, w);
  if (r) return r;
  if (!w->usage[0]) luaL_error(L, "%s: header.usage is required when the key has no usage", fn);
  if (!w->mode) luaL_error(L, "%s: header.mode is required when the key has no mode of use", fn);

  /* What X9.143 forbids, and what this HSM's key binding forbids. */
  if (!strchr("ABCD", w->version) || !w->version)
    return payhsm_fail(L, fn, "TR31_VERSION", "unknown key block version '%c'", w->version);
  if ((w->version == 'A' || w->version == 'C') && !legacy)
    return payhsm_fail(L, fn, "TR31_LEGACY", "version %c (variant binding) is legacy; pass "
                       "opts.legacy = true to make one", w->version);
  if (!kbpk_fits(kbpk, w->version))
    return payhsm_fail(L, fn, "TR31_KBPK_MISMATCH", "version %c blocks need a%s KBPK, got %s",
                       w->version, w->version == 'D' ? "n AES" : " TDES_2KEY or TDES_3KEY",
                       payhsm_alg_name(kbpk->alg));
  if (w->alg != alg_letter(key->alg))
    return payhsm_fail(L, fn, "TR31_ALGORITHM", "header algorithm '%c' does not match the %s key",
                       w->alg, payhsm_alg_name(key->alg));
  memcpy(w->text, (char[]){w->version, '0', '0', '0', '0', w->usage[0], w->usage[1], w->alg,
                           w->mode, w->kv[0], w->kv[1], w->exp, '0', '0', w->context, '0'}, 16);
  if (!parse_header(w->text, 16, 0, &h, &e)) return payhsm_fail(L, fn, e.code, "%s", e.msg);
  if (key->usage[0] && strcmp(key->usage, w->usage) != 0)
    return payhsm_fail(L, fn, "TR31_ATTRIBUTES", "header usage %s contradicts the key's usage %s",
                       w->usage, key->usage);
  if (key->mode && key->mode != w->mode)
    return payhsm_fail(L, fn, "TR31_ATTRIBUTES", "header mode of use %c contradicts the key's %c",
                       w->mode, key->mode);
  if (key->exportability == 'N' && !local)
    return payhsm_fail(L, fn, "TR31_NOT_EXPORTABLE", "the key is marked non-exportable (N)");
  if (key->exportability && key->exportability != 'N' && w->exp != key->exportability &&
      w->exp != 'N')
    return payhsm_fail(L, fn, "TR31_ATTRIBUTES", "header exportability %c contradicts the key's %c",
                       w->exp, key->exportability);
  if (strength(kbpk) < strength(key))
    return payhsm_fail(L, fn, "TR31_WEAK_KBPK", "a %s KBPK (%u bits) may not protect a %s key "
                       "(%u bits)", payhsm_alg_name(kbpk->alg), strength(kbpk),
                       payhsm_alg_name(key->alg), strength(key));
  if (w->alg == 'H' && !w->has_hm) add_block(w, "HM", hm_code(key->alg), 2);
  bs = cipher_block(w->version);
  if (w->hlen % bs) { /* PB block, at least 4 characters, random printable padding */
    size_t need = bs - w->hlen % bs;
    unsigned char rnd[32];
    if (need < 4) need += bs;
    if (!payhsm_random(rnd, need)) return payhsm_raise_ossl(L, fn);
    w->hlen += (size_t)snprintf(w->text + w->hlen, sizeof w->text - w->hlen, "PB%02X", (unsigned)need);
    for (i = 0; i < need - 4; i++) w->text[w->hlen++] = "0123456789ABCDEFGHIJKLMNOPQRSTUV"[rnd[i] & 31];
    w->nb++;
  }
  if (w->nb > MAX_BLOCKS) return payhsm_fail(L, fn, "TR31_OPT_BLOCK", "more than 99 optional blocks");
  put_digits(w->text + 12, w->nb, 2);
  return 0;
}

/* Seals key under kbpk behind the header w: the key field (key length in bits, key,
 * padding; X9.143 6.4), enciphered and MACed by the binding method of w->version.
 * Pushes the block (1) or nil, msg, code (3). Every copy of the clear key field is
 * cleansed on every path. */
static int wrap_seal(lua_State *L, const char *fn, payhsm_key *kbpk, const payhsm_key *key,
                     int obfuscate, wrap_hdr *w) {
  unsigned char payload[2 + PAYHSM_MAX_KEY + 64], mac[16], buf[MAX_BLOCK_LEN];
  size_t hlen = w->hlen, bs = cipher_block(w->version), ml = mac_len(w->version);
  size_t plen, padlen, target = key->len;
  key_pair *p;
  int ok;
  if (obfuscate && payhsm_alg_family(key->alg) == PAYHSM_FAM_DES) target = 24;
  if (obfuscate && payhsm_alg_family(key->alg) == PAYHSM_FAM_AES) target = 32;
  plen = (2 + target + bs - 1) / bs * bs;
  padlen = plen - 2 - key->len;
  if (!lua_isnoneornil(L, 4) && lua_getfield(L, 4, "padding") != LUA_TNIL) {
    unsigned char pad[64];
    size_t pn = payhsm_hex_decode(lua_tostring(L, -1), lua_rawlen(L, -1), pad, sizeof pad);
    if (pn == (size_t)-1 || (2 + key->len + pn) % bs)
      luaL_error(L, "%s: opts.padding must be hex making the key field a multiple of %d bytes", fn,
                 (int)bs);
    padlen = pn;
    plen = 2 + key->len + pn;
    memcpy(payload + 2 + key->len, pad, pn);
  } else if (padlen && !payhsm_random(payload + 2 + key->len, padlen)) {
    return payhsm_raise_ossl(L, fn);
  }
  if (hlen + 2 * plen + 2 * ml > MAX_BLOCK_LEN)
    return payhsm_fail(L, fn, "TR31_LENGTH", "the key block would exceed 9999 characters");
  put_digits(w->text + 1, hlen + 2 * plen + 2 * ml, 4);
  if (!(p = block_keys(L, kbpk, w->version))) return payhsm_raise_ossl(L, fn);
  payload[0] = (unsigned char)((key->len * 8) >> 8);
  payload[1] = (unsigned char)((key->len * 8) & 0xFF);
  memcpy(payload + 2, key->bytes, key->len);
  memcpy(buf, w->text, hlen);
  if (w->version == 'A' || w->version == 'C') {
    ok = payhsm_key_crypt(L, &p->enc, 1, buf, payload, buf + hlen, plen) &&
         block_mac(L, p, w->version, buf, hlen + plen, mac);
  } else {
    memcpy(buf + hlen, payload, plen);
    ok = block_mac(L, p, w->version, buf, hlen + plen, mac) &&
         payhsm_key_crypt(L, &p->enc, 1, mac, payload, buf + hlen, plen);
  }
  OPENSSL_cleanse(payload, sizeof payload);
  if (ok) {
    payhsm_hex_encode(buf + hlen, plen, w->text + hlen);
    payhsm_hex_encode(mac, ml, w->text + hlen + 2 * plen);
  }
  OPENSSL_cleanse(buf + hlen, plen);
  if (!ok) return payhsm_raise_ossl(L, fn);
  lua_pushlstring(L, w->text, hlen + 2 * plen + 2 * ml);
  return 1;
}

/*
 * core.tr31.wrap(kbpk, key, header [, opts]) -> block | nil, msg, code
 * header: a table {version=, usage=, algorithm=, mode=, key_version=,
 * exportability=, context=, blocks={{id=, data=}, ...}} (absent fields come from the
 * key's attributes; version defaults to D for an AES KBPK, B for TDES) or a header
 * string of at least 16 characters (its length field and PB block are recomputed).
 * opts: obfuscate (default true: pad TDES keys as 24 bytes, AES keys as 32; HMAC
 * keys are not obfuscated), padding (hex: fixed padding, a test hook for published
 * vectors), legacy (true to allow versions A and C), local (true to wrap a key
 * marked non-exportable for the store: only under a KBPK made with local_master = true,
 * else TR31_NOT_LOCAL).
 * Codes: as unwrap, plus TR31_LEGACY, TR31_WEAK_KBPK, TR31_NOT_EXPORTABLE, TR31_NOT_LOCAL,
 * TR31_ATTRIBUTES (header contradicts the key's own attributes), TR31_PADDING.
 */
static int tr31_wrap(lua_State *L) {
  static const char fn[] = "tr31.wrap";
  static const char *const opt_fields[] = {"obfuscate", "padding", "legacy", "local", NULL};
  payhsm_key *kbpk = payhsm_checkkey(L, 1), *key = payhsm_checkkey(L, 2);
  wrap_hdr w;
  int r, obfuscate = 1, legacy = 0, local = 0;
  if ((r = payhsm_key_usage(L, kbpk, fn, "K0 K1", "BEN"))) return r;
  if (payhsm_alg_family(kbpk->alg) == PAYHSM_FAM_HMAC)
    return payhsm_fail(L, fn, "KEY_TYPE", "a %s key cannot be a KBPK", payhsm_alg_name(kbpk->alg));
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    payhsm_checkfields(L, 4, fn, opt_fields);
    if (lua_getfield(L, 4, "obfuscate") != LUA_TNIL) obfuscate = lua_toboolean(L, -1);
    if (lua_getfield(L, 4, "legacy") != LUA_TNIL) legacy = lua_toboolean(L, -1);
    if (lua_getfield(L, 4, "local") != LUA_TNIL) local = lua_toboolean(L, -1);
    lua_pop(L, 3);
  }
  if (local && !kbpk->local_master)
    return payhsm_fail(L, fn, "TR31_NOT_LOCAL",
                       "local = true needs a KBPK marked as the local master key (local_master)");
  if ((r = wrap_header(L, fn, kbpk, key, legacy, local, &w))) return r;
  return wrap_seal(L, fn, kbpk, key, obfuscate, &w);
}

void payhsm_tr31_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"wrap", tr31_wrap}, {"unwrap", tr31_unwrap}, {"parse", tr31_parse}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "tr31");
}

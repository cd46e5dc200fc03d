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

#include "tr31.h"


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
  size_t n, ml, plen, klen, bits, i;
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
  if (!payhsm_tr31_parse_header(s, n, 1, &h, &e)) return payhsm_fail(L, fn, e.code, "%s", e.msg);
  if (!kbpk_fits(kbpk, h.version))
    return payhsm_fail(L, fn, "TR31_KBPK_MISMATCH", "version %c blocks need a%s KBPK, got %s",
                       h.version, h.version == 'D' ? "n AES" : " TDES_2KEY or TDES_3KEY",
                       payhsm_alg_name(kbpk->alg));
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
  if (!(p = payhsm_tr31_block_keys(L, kbpk, h.version))) return payhsm_raise_ossl(L, fn);
  if (h.version == 'A' || h.version == 'C') {
    ok = payhsm_tr31_block_mac(L, p, h.version, buf, h.hlen + plen, mac) &&
         payhsm_key_crypt(L, &p->enc, 0, buf, buf + h.hlen, buf + h.hlen, plen);
  } else {
    ok = payhsm_key_crypt(L, &p->enc, 0, got, buf + h.hlen, buf + h.hlen, plen) &&
         payhsm_tr31_block_mac(L, p, h.version, buf, h.hlen + plen, mac);
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
            : hm[0] == '2' && hm[1] == '3' ? PAYHSM_ALG_HMAC_SHA512
            : hm[0] == '2' && hm[1] == '0' ? PAYHSM_ALG_HMAC_SHA224 : PAYHSM_ALG_COUNT;
      if (alg == PAYHSM_ALG_COUNT) {
        OPENSSL_cleanse(buf + h.hlen, plen);
        return payhsm_fail(L, fn, "TR31_ALGORITHM", "HMAC hash '%.2s' is not SHA-224/256/384/512", hm);
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
  if (!payhsm_tr31_parse_header(s, n, 1, &h, &e)) return payhsm_fail(L, "tr31.parse", e.code, "%s", e.msg);
  ml = 2 * mac_len(h.version);
  push_header(L, s, &h);
  lua_pushlstring(L, s + n - ml, ml);
  lua_setfield(L, -2, "mac");
  lua_pushinteger(L, (lua_Integer)h.hlen);
  lua_setfield(L, -2, "header_length");
  return 1;
}

void payhsm_tr31_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"wrap", payhsm_tr31_wrap}, {"unwrap", tr31_unwrap}, {"parse", tr31_parse}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "tr31");
}

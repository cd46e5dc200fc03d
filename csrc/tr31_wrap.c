/*
 * tr31_wrap.c - making TR-31 / ANSI X9.143 key blocks: the header a wrap writes (the
 * key's attributes under the caller's fields, checked against X9.143 and the key's own
 * binding, the HM and PB blocks) and the sealing of the key field by the version's
 * binding method. The layout and binding methods are described in tr31.c.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "tr31.h"

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
  if (!payhsm_tr31_parse_header(hs, vn, 0, &h, &e)) return payhsm_fail(L, fn, e.code, "%s", e.msg);
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
  if (!payhsm_tr31_parse_header(w->text, 16, 0, &h, &e)) return payhsm_fail(L, fn, e.code, "%s", e.msg);
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
  if (!(p = payhsm_tr31_block_keys(L, kbpk, w->version))) return payhsm_raise_ossl(L, fn);
  payload[0] = (unsigned char)((key->len * 8) >> 8);
  payload[1] = (unsigned char)((key->len * 8) & 0xFF);
  memcpy(payload + 2, key->bytes, key->len);
  memcpy(buf, w->text, hlen);
  if (w->version == 'A' || w->version == 'C') {
    ok = payhsm_key_crypt(L, &p->enc, 1, buf, payload, buf + hlen, plen) &&
         payhsm_tr31_block_mac(L, p, w->version, buf, hlen + plen, mac);
  } else {
    memcpy(buf + hlen, payload, plen);
    ok = payhsm_tr31_block_mac(L, p, w->version, buf, hlen + plen, mac) &&
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
int payhsm_tr31_wrap(lua_State *L) {
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


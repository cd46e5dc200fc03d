/*
 * envelope.c - MSK envelopes (viopay's POS key guide, "MSK-protected API payloads");
 * the HMAC that signs them is core.hmac (mac.c).
 *
 * An envelope carries a JSON body encrypted under the device's Master Session Key:
 *   {"format": "TR31-DATA", "ciphertext": "<hex>", "initialization_vector": "<hex>",
 *    "mode": "CBC"}
 * AES-256-CBC (NIST SP 800-38A) with a fresh random 16-byte IV and PKCS#7 padding
 * (RFC 5652 section 6.3); IV and ciphertext in upper-case hex.
 *
 * TR31-DATA-CHUNKED (payhsm's layout; viopay's guide names the format without defining
 * it): for large bodies such as gzip'ed terminal parameters. The plaintext is cut
 * into chunks of chunk_size bytes (a multiple of 16; default 16384), the CBC chain
 * runs on across chunks from the one IV, only the last chunk is padded, and
 * "ciphertext" lists the chunks' hex separated by "."; the envelope also carries
 * "chunk_size". A receiver can decrypt chunk by chunk as they arrive (each chunk's
 * IV is the last ciphertext block before it), and the chunks joined without the
 * dots are exactly the TR31-DATA ciphertext of the same plaintext and IV.
 *
 * Lua: core.envelope.seal(msk, plaintext [, {chunked=, iv=, chunk_size=}]) -> table
 *      core.envelope.open(msk, envelope_table_or_json [, {mac_key=, hmac=}])
 *        -> plaintext | nil, msg, code    (with mac_key, the HMAC over the JSON text
 *           is verified in constant time before anything is decrypted)
 *      core.envelope.encode(envelope_table) -> JSON text (fixed field order)
 * Keys: the MSK is an AES_256 key, usage D0 (or none), mode E/B/N to seal and
 * D/B/N to open; the MAC key an HMAC key, usage M7 (or none).
 * Codes: BAD_HEX, IV_LENGTH, BAD_LENGTH, ENVELOPE_FORMAT, ENVELOPE_PADDING (the
 * padding does not check: a wrong key or an altered body), MAC_MISMATCH,
 * MAC_LENGTH, KEY_TYPE, KEY_USAGE.
 * Without a signature an altered envelope is detected only through its padding
 * (about 255 times in 256); the protocol signs envelopes with HMAC for that reason.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "payhsm.h"

#define DEFAULT_CHUNK 16384

static int msk_check(lua_State *L, payhsm_key *k, const char *fn, int seal) {
  int r;
  if ((r = payhsm_key_usage(L, k, fn, "D0", seal ? "EBN" : "DBN"))) return r;
  if (k->alg != PAYHSM_ALG_AES_256)
    return payhsm_fail(L, fn, "KEY_TYPE", "the MSK must be an AES_256 key, got %s",
                       payhsm_alg_name(k->alg));
  return 0;
}

/* ---- seal ---------------------------------------------------------------- */

/* core.envelope.seal(msk, plaintext [, opts]) -> {format, ciphertext, initialization_vector, mode[, chunk_size]} */
static int envelope_seal(lua_State *L) {
  static const char fn[] = "envelope.seal";
  payhsm_key *k = payhsm_checkkey(L, 1);
  size_t n, padded, nchunks, hexlen, i, chunk = DEFAULT_CHUNK;
  const char *pt = luaL_checklstring(L, 2, &n);
  unsigned char iv[16], stackbuf[4096 + 16], *buf;
  char *hex, hexstack[8192 + 32];
  int chunked = 0, r;
  luaL_Buffer b;
#if LUA_VERSION_NUM < 502
  memset(&b, 0, sizeof b); /* set up on one branch only (compat.h's sized buffer) */
#endif
  if ((r = msk_check(L, k, fn, 1))) return r;
  if (!lua_isnoneornil(L, 3)) {
    static const char *const fields[] = {"chunked", "iv", "chunk_size", NULL};
    luaL_checktype(L, 3, LUA_TTABLE);
    payhsm_checkfields(L, 3, fn, fields);
    if (lua_getfield(L, 3, "chunked") != LUA_TNIL) chunked = lua_toboolean(L, -1);
    lua_pop(L, 1);
    size_t ivn;
    if (payhsm_optfield_str(L, 3, "iv", &ivn)) {
      lua_getfield(L, 3, "iv");
      ivn = payhsm_hexarg(L, -1, fn, "IV", iv, sizeof iv);
      if (ivn == (size_t)-1) return 3;
      if (ivn != 16) return payhsm_fail(L, fn, "IV_LENGTH", "IV must be 16 bytes, got %d", (int)ivn);
      lua_pop(L, 1);
    } else if (!payhsm_random(iv, 16)) {
      return payhsm_raise_ossl(L, fn);
    }
    chunk = (size_t)payhsm_optfield_int(L, 3, "chunk_size", DEFAULT_CHUNK);
    if (chunk == 0 || chunk % 16 || chunk > ((size_t)1 << 30))
      return luaL_error(L, "%s: chunk_size must be a positive multiple of 16", fn);
  } else if (!payhsm_random(iv, 16)) {
    return payhsm_raise_ossl(L, fn);
  }
  padded = (n / 16 + 1) * 16;
  if (padded <= sizeof stackbuf) buf = stackbuf;
  else buf = lua_newuserdatauv(L, padded, 0);
  memcpy(buf, pt, n);
  memset(buf + n, (int)(padded - n), padded - n); /* PKCS#7 */
  if (!payhsm_key_crypt(L, k, 1, iv, buf, buf, padded)) {
    OPENSSL_cleanse(buf, padded);
    return payhsm_raise_ossl(L, fn);
  }
  lua_createtable(L, 0, 5);
  lua_pushstring(L, chunked ? "TR31-DATA-CHUNKED" : "TR31-DATA");
  lua_setfield(L, -2, "format");
  nchunks = chunked ? (padded + chunk - 1) / chunk : 1;
  hexlen = 2 * padded + (nchunks - 1);
  if (hexlen <= sizeof hexstack) hex = hexstack; /* one copy into the Lua string, no box */
  else hex = luaL_buffinitsize(L, &b, hexlen);
  if (!chunked) {
    payhsm_hex_encode(buf, padded, hex);
  } else {
    char *o = hex;
    for (i = 0; i < padded; i += chunk) {
      size_t m = padded - i < chunk ? padded - i : chunk;
      if (i) *o++ = '.';
      payhsm_hex_encode(buf + i, m, o);
      o += 2 * m;
    }
  }
  if (hex == hexstack) lua_pushlstring(L, hex, hexlen);
  else luaL_pushresultsize(&b, hexlen);
  lua_setfield(L, -2, "ciphertext");
  payhsm_pushhex(L, iv, 16);
  lua_setfield(L, -2, "initialization_vector");
  lua_pushliteral(L, "CBC");
  lua_setfield(L, -2, "mode");
  if (chunked) {
    lua_pushinteger(L, (lua_Integer)chunk);
    lua_setfield(L, -2, "chunk_size");
  }
  OPENSSL_cleanse(buf, n < padded ? n : padded); /* the plaintext copy */
  return 1;
}

/* ---- a small strict JSON reader for the envelope object ------------------
 * The signature covers the JSON text exactly as received, so open() takes that text,
 * verifies its HMAC and only then reads it, in one C call. The reader is here rather
 * than in Lua because payhsm.core links libcrypto alone and must run where no JSON
 * module is loaded (nginx and lighttpd workers, the fuzz harness); and it reads only
 * the four plain-string fields and chunk_size, refusing escapes instead of decoding
 * them, so an envelope cannot mean one thing to the HMAC and another to the decoder.
 * Hosts with lua-cjson may decode themselves and pass the table. */

typedef struct {
  const char *fmt, *ct, *iv, *mode;
  size_t fmtn, ctn, ivn, moden;
  long long chunk; /* -1 when absent */
} env_fields;

static const char *skip_ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* Reads a JSON string at p (at the opening quote). The envelope's values are hex or
 * plain ASCII names, so escapes are refused rather than decoded: s and n point into
 * the text. Returns the position after the closing quote or NULL. */
static const char *read_string(const char *p, const char *e, const char **s, size_t *n) {
  const char *q;
  if (p >= e || *p != '"') return NULL;
  for (q = p + 1; q < e && *q != '"'; q++)
    if (*q == '\\' || (unsigned char)*q < 0x20) return NULL;
  if (q >= e) return NULL;
  *s = p + 1;
  *n = (size_t)(q - p - 1);
  return q + 1;
}

/* Skips any JSON value (for fields the envelope does not use). */
static const char *skip_value(const char *p, const char *e, int depth) {
  p = skip_ws(p, e);
  if (p >= e || depth > 16) return NULL;
  if (*p == '"') {
    for (p++; p < e && *p != '"'; p++)
      if (*p == '\\') p++;
    return p < e ? p + 1 : NULL;
  }
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    p = skip_ws(p + 1, e);
    if (p < e && *p == close) return p + 1;
    for (;;) {
      if (close == '}') {
        const char *s;
        size_t n;
        if (!(p = read_string(skip_ws(p, e), e, &s, &n))) return NULL;
        p = skip_ws(p, e);
        if (p >= e || *p != ':') return NULL;
        p++;
      }
      if (!(p = skip_value(p, e, depth + 1))) return NULL;
      p = skip_ws(p, e);
      if (p < e && *p == ',') { p++; continue; }
      if (p < e && *p == close) return p + 1;
      return NULL;
    }
  }
  if (p < e && (*p == '-' || (*p >= '0' && *p <= '9'))) {
    while (p < e && strchr("+-0123456789.eE", *p)) p++;
    return p;
  }
  if (e - p >= 4 && (memcmp(p, "true", 4) == 0 || memcmp(p, "null", 4) == 0)) return p + 4;
  if (e - p >= 5 && memcmp(p, "false", 5) == 0) return p + 5;
  return NULL;
}

/* Parses the envelope object; returns NULL on success or a message. */
static const char *parse_json(const char *p, size_t len, env_fields *f) {
  const char *e = p + len;
  p = skip_ws(p, e);
  if (p >= e || *p != '{') return "envelope is not a JSON object";
  p = skip_ws(p + 1, e);
  if (p < e && *p == '}') { p++; goto done; }
  for (;;) {
    const char *key, *v;
    size_t kn, vn;
    if (!(p = read_string(skip_ws(p, e), e, &key, &kn))) return "malformed JSON key";
    p = skip_ws(p, e);
    if (p >= e || *p != ':') return "malformed JSON: ':' expected";
    p = skip_ws(p + 1, e);
#define IS(name) (kn == sizeof(name) - 1 && memcmp(key, name, kn) == 0)
    if (IS("format") || IS("ciphertext") || IS("initialization_vector") || IS("mode")) {
      if (!(p = read_string(p, e, &v, &vn))) return "envelope fields must be plain strings";
      if (IS("format")) { f->fmt = v; f->fmtn = vn; }
      else if (IS("ciphertext")) { f->ct = v; f->ctn = vn; }
      else if (IS("initialization_vector")) { f->iv = v; f->ivn = vn; }
      else { f->mode = v; f->moden = vn; }
    } else if (IS("chunk_size")) {
      long long c = 0;
      if (p >= e || *p < '0' || *p > '9') return "chunk_size must be a number";
      while (p < e && *p >= '0' && *p <= '9' && c < (1LL << 40)) c = c * 10 + (*p++ - '0');
      f->chunk = c;
    } else if (!(p = skip_value(p, e, 0))) {
      return "malformed JSON value";
    }
#undef IS
    p = skip_ws(p, e);
    if (p < e && *p == ',') { p++; continue; }
    if (p < e && *p == '}') { p++; break; }
    return "malformed JSON: ',' or '}' expected";
  }
done:
  if (skip_ws(p, e) != e) return "trailing data after the JSON object";
  return NULL;
}

static void table_fields(lua_State *L, int idx, env_fields *f) {
  static const char *const fields[] = {"format", "ciphertext", "initialization_vector", "mode", "chunk_size", NULL};
  payhsm_checkfields(L, idx, "envelope", fields);
  f->fmt = payhsm_optfield_str(L, idx, "format", &f->fmtn);
  f->ct = payhsm_optfield_str(L, idx, "ciphertext", &f->ctn);
  f->iv = payhsm_optfield_str(L, idx, "initialization_vector", &f->ivn);
  f->mode = payhsm_optfield_str(L, idx, "mode", &f->moden);
  f->chunk = payhsm_optfield_int(L, idx, "chunk_size", -1);
}

/* ---- open ---------------------------------------------------------------- */

/* core.envelope.open(msk, envelope [, {mac_key=, hmac=}]) -> plaintext | nil, msg, code */
static int envelope_open(lua_State *L) {
  static const char fn[] = "envelope.open";
  payhsm_key *k = payhsm_checkkey(L, 1);
  env_fields f;
  unsigned char iv[16], stackbuf[4096], *buf;
  size_t n, i, o, ctbytes, nchunks = 1;
  int chunked, r;
  unsigned pad, bad;
  memset(&f, 0, sizeof f);
  f.chunk = -1;
  if ((r = msk_check(L, k, fn, 0))) return r;
  if (!lua_isnoneornil(L, 3)) { /* signed body: verify first */
    payhsm_key *mk;
    const char *body, *given;
    size_t bn, gn, ml;
    unsigned char mac[64], want[64];
    static const char *const fields[] = {"mac_key", "hmac", NULL};
    luaL_checktype(L, 3, LUA_TTABLE);
    payhsm_checkfields(L, 3, fn, fields);
    if (lua_type(L, 2) != LUA_TSTRING)
      return luaL_error(L, "%s: a signature covers the JSON text; pass the body as received", fn);
    lua_getfield(L, 3, "mac_key");
    mk = payhsm_checkkey(L, -1);
    if ((r = payhsm_hmac_key_check(L, mk, fn, "CVN"))) return r;
    if (!(given = payhsm_optfield_str(L, 3, "hmac", &gn)))
      return luaL_error(L, "%s: opts.hmac is required with opts.mac_key", fn);
    body = lua_tolstring(L, 2, &bn);
    if (!payhsm_key_hmac(L, mk, (const unsigned char *)body, bn, mac, &ml)) return payhsm_raise_ossl(L, fn);
    if (payhsm_hex_decode(given, gn, want, sizeof want) == (size_t)-1)
      return payhsm_fail(L, fn, "BAD_HEX", "HMAC is not valid hex");
    if (gn / 2 != ml)
      return payhsm_fail(L, fn, "MAC_LENGTH", "HMAC must be %d bytes, got %d", (int)ml, (int)(gn / 2));
    if (CRYPTO_memcmp(mac, want, ml) != 0)
      return payhsm_fail(L, fn, "MAC_MISMATCH", "envelope HMAC does not verify");
  }
  if (lua_type(L, 2) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, 2, &len);
    const char *why = parse_json(s, len, &f);
    if (why) return payhsm_fail(L, fn, "ENVELOPE_FORMAT", "%s", why);
  } else {
    luaL_checktype(L, 2, LUA_TTABLE);
    table_fields(L, 2, &f);
  }
  if (!f.fmt || !f.ct || !f.iv || !f.mode)
    return payhsm_fail(L, fn, "ENVELOPE_FORMAT", "envelope needs format, ciphertext, "
                       "initialization_vector and mode");
  if (f.moden != 3 || memcmp(f.mode, "CBC", 3) != 0)
    return payhsm_fail(L, fn, "ENVELOPE_FORMAT", "mode must be CBC");
  if (f.fmtn == 9 && memcmp(f.fmt, "TR31-DATA", 9) == 0) chunked = 0;
  else if (f.fmtn == 17 && memcmp(f.fmt, "TR31-DATA-CHUNKED", 17) == 0) chunked = 1;
  else return payhsm_fail(L, fn, "ENVELOPE_FORMAT", "format must be TR31-DATA or TR31-DATA-CHUNKED");
  if (payhsm_hex_decode(f.iv, f.ivn, iv, sizeof iv) == (size_t)-1) {
    if (f.ivn % 2 == 0 && f.ivn > 32) return payhsm_fail(L, fn, "IV_LENGTH", "IV must be 16 bytes");
    return payhsm_fail(L, fn, "BAD_HEX", "initialization_vector is not valid hex");
  }
  if (f.ivn != 32) return payhsm_fail(L, fn, "IV_LENGTH", "IV must be 16 bytes, got %d", (int)(f.ivn / 2));
  if (chunked) {
    if (f.chunk <= 0 || f.chunk % 16)
      return payhsm_fail(L, fn, "ENVELOPE_FORMAT", "chunked envelope needs a chunk_size, a positive "
                         "multiple of 16");
    for (i = 0; i < f.ctn; i++) nchunks += f.ct[i] == '.';
  } else if (f.chunk != -1) {
    return payhsm_fail(L, fn, "ENVELOPE_FORMAT", "chunk_size belongs to chunked envelopes only");
  }
  ctbytes = (f.ctn - (nchunks - 1)) / 2;
  if (ctbytes <= sizeof stackbuf) buf = stackbuf;
  else buf = lua_newuserdatauv(L, ctbytes + 1, 0);
  /* decode, checking the chunk layout: every chunk but the last is chunk_size bytes */
  for (i = 0, o = 0; i <= f.ctn;) {
    const char *dot = chunked ? memchr(f.ct + i, '.', f.ctn - i) : NULL;
    size_t end = dot ? (size_t)(dot - f.ct) : f.ctn, m;
    m = payhsm_hex_decode(f.ct + i, end - i, buf + o, ctbytes - o);
    if (m == (size_t)-1) return payhsm_fail(L, fn, "BAD_HEX", "ciphertext is not valid hex");
    if (chunked && ((dot && m != (size_t)f.chunk) || (!dot && (m == 0 || m > (size_t)f.chunk))))
      return payhsm_fail(L, fn, "ENVELOPE_FORMAT", "chunk %d is %d bytes, chunk_size is %lld",
                         (int)(o / (size_t)(f.chunk > 0 ? f.chunk : 1) + 1), (int)m, f.chunk);
    o += m;
    i = end + 1;
  }
  n = o;
  if (n == 0 || n % 16)
    return payhsm_fail(L, fn, "BAD_LENGTH", "ciphertext must be a non-empty multiple of 16 bytes, got %d",
                       (int)n);
  if (!payhsm_key_crypt(L, k, 0, iv, buf, buf, n)) return payhsm_raise_ossl(L, fn);
  /* PKCS#7 check in constant time over the last block */
  pad = buf[n - 1];
  bad = ((unsigned)((int)pad - 1) >> 31) | ((unsigned)(16 - (int)pad) >> 31); /* 0 or > 16 */
  for (i = 0; i < 16; i++) {
    unsigned mask = 0u - ((unsigned)(15 - (int)i - (int)pad) >> 31); /* i >= 16 - pad */
    bad |= mask & (unsigned)(buf[n - 16 + i] ^ pad);
  }
  if (bad) {
    OPENSSL_cleanse(buf, n);
    return payhsm_fail(L, fn, "ENVELOPE_PADDING", "padding does not check: wrong key or altered envelope");
  }
  lua_pushlstring(L, (const char *)buf, n - pad);
  OPENSSL_cleanse(buf, n);
  return 1;
}

/* core.envelope.encode(envelope) -> JSON text, fields in the order of viopay's guide. */
static int envelope_encode(lua_State *L) {
  env_fields f;
  luaL_Buffer b;
  luaL_checktype(L, 1, LUA_TTABLE);
  table_fields(L, 1, &f);
  if (!f.fmt || !f.ct || !f.iv || !f.mode) return luaL_error(L, "envelope.encode: missing fields");
  luaL_buffinit(L, &b);
#define ADD(name, v, vn, last)                     \
  luaL_addstring(&b, "\"" name "\":\"");           \
  luaL_addlstring(&b, v, vn);                      \
  luaL_addstring(&b, last ? "\"" : "\",");
  luaL_addchar(&b, '{');
  ADD("format", f.fmt, f.fmtn, 0)
  ADD("ciphertext", f.ct, f.ctn, 0)
  ADD("initialization_vector", f.iv, f.ivn, 0)
  ADD("mode", f.mode, f.moden, 1)
#undef ADD
  if (f.chunk >= 0) {
    lua_pushfstring(L, ",\"chunk_size\":%d", (int)f.chunk);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '}');
  luaL_pushresult(&b);
  {
    /* the values go into JSON unescaped: refuse anything that would need escaping */
    size_t n, i;
    const char *s = lua_tolstring(L, -1, &n);
    int q = 0;
    for (i = 0; i < n; i++) {
      if (s[i] == '\\' || (unsigned char)s[i] < 0x20) return luaL_error(L, "envelope.encode: bad field");
      q += s[i] == '"';
    }
    if (q != (f.chunk >= 0 ? 18 : 16)) return luaL_error(L, "envelope.encode: bad field");
  }
  return 1;
}

void payhsm_envelope_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"seal", envelope_seal}, {"open", envelope_open}, {"encode", envelope_encode}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "envelope");
}

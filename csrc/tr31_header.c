/*
 * tr31_header.c - reading a TR-31 / ANSI X9.143 key block header: the 16 fixed
 * characters, the optional blocks (with the extended length form) and, for a whole block,
 * the length field against the key field and MAC the version needs (X9.143 6.2 and 6.3;
 * the layout is described in tr31.c). Shared by unwrap and parse (tr31.c) and by wrap
 * (tr31_wrap.c), which checks a header string and the header it builds with it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tr31.h"

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


/* Parses and validates the header at s (n characters). With whole set, s is the
 * complete block: the length field must match and the rest must hold the key
 * field and MAC. Returns 1, or 0 with e filled. */
int payhsm_tr31_parse_header(const char *s, size_t n, int whole, tr31_hdr *h, tr31_err *e) {
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


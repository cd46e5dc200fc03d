/*
 * emvsm.c - EMV secure messaging for issuer scripts and the offline PIN change script.
 *
 * EMV 4.4 Book 2 section 9 and Annex A1.1 / A1.2: an issuer script command is
 * authenticated with a MAC under the session key SK-SMI (ISO 9797-1 MAC algorithm 3,
 * padding method 2, 4 to 8 bytes) and its data may be enciphered under SK-SMC
 * (two-key TDES). Three ways of formatting the enciphered data are in use:
 *   EMV         padding method 2 always, TDES-CBC from a zero IV (EMV CCD);
 *   VISA        a byte holding the data length first, then padding method 2,
 *               TDES-CBC from a zero IV like the others (payhsm's documented
 *               contract); Visa VIS issuers and pyemv's sm.encrypt_command_data
 *               encipher this format in ECB: pass mode = "ECB" for them;
 *   MASTERCARD  padding method 2 only when the data is not whole blocks, TDES-CBC
 *               from a zero IV (M/Chip).
 * opts.mode ("CBC" or "ECB") overrides the chaining of the type.
 * Session keys for secure messaging (derive_sm_session_key):
 *   EMV_COMMON, MASTERCARD  EMV Book 2 A1.3.1 common session key derivation with
 *               R = the application cryptogram (ARQC) of the transaction;
 *   VISA        Visa VIS: SK = MK xor (00..00 || ATC) || MK_R xor (00..00 || ATC xor FFFF).
 * Keys: session keys TDES_2KEY; SK-SMI usage E2, SK-SMC usage E1 (E0, what keys derived
 * from a key without usage carry, is accepted for both); issuer master keys for the PIN
 * change likewise (IMK-SMC E1, IMK-SMI E2, IMK-AC E0; or none); the PEK usage P0.
 * Codes: BAD_HEX, BAD_LENGTH, SM_PADDING, EMV_ARQC, EMV_ATC, PAN_LENGTH, PAN_DIGITS,
 * EMV_PSN, PIN_FORMAT, KEY_TYPE, KEY_USAGE.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "payhsm.h"

static const char *const types[] = {"EMV", "VISA", "MASTERCARD", NULL};
enum { T_EMV, T_VISA, T_MASTERCARD };
static const char *const chainings[] = {"CBC", "ECB", NULL};
static const char *const sm_derivations[] = {"EMV_COMMON", "MASTERCARD", "VISA", NULL};
enum { SD_COMMON, SD_MASTERCARD, SD_VISA };
static const char *const icc_modes[] = {"EMV_OPTION_A", "EMV_OPTION_B", NULL};

#define SM_MAX 1024 /* bytes of script data enciphered or MACed in one call */

static int check_sm_key(lua_State *L, const payhsm_key *k, const char *fn, const char *usages,
                        const char *modes) {
  int r;
  if ((r = payhsm_key_usage(L, k, fn, usages, modes))) return r;
  if (k->alg != PAYHSM_ALG_TDES_2KEY)
    return payhsm_fail(L, fn, "KEY_TYPE", "EMV secure messaging keys are TDES_2KEY, got %s",
                       payhsm_alg_name(k->alg));
  return 0;
}

/* The option at idx.name among names, or def when absent. */
static int opt_name(lua_State *L, int idx, const char *name, const char *what,
                    const char *const names[], int def) {
  int v = def;
  if (lua_type(L, idx) != LUA_TTABLE) return def;
  if (lua_getfield(L, idx, name) != LUA_TNIL) v = payhsm_checkname(L, -1, what, names);
  lua_pop(L, 1);
  return v;
}

/* Formats data (n bytes, in buf with room for n + 16) for the type; returns the new length. */
static size_t sm_format(unsigned char *buf, size_t n, int type) {
  if (type == T_VISA) {
    memmove(buf + 1, buf, n);
    buf[0] = (unsigned char)n;
    return payhsm_iso9797_pad(buf, n + 1, 8, 2, buf);
  }
  if (type == T_MASTERCARD && n % 8 == 0) return n;
  return payhsm_iso9797_pad(buf, n, 8, 2, buf);
}

/* Enciphers (enc = 1) or deciphers whole blocks under key k with the chaining. */
static int sm_crypt(lua_State *L, payhsm_key *k, int enc, int chaining, unsigned char *buf, size_t n) {
  static const unsigned char zero_iv[8] = {0};
  return payhsm_key_crypt(L, k, enc, chaining == 0 ? zero_iv : NULL, buf, buf, n);
}

/* MAC algorithm 3, padding 2 over data (n bytes, room for n + 8 in buf). */
static int sm_mac_compute(lua_State *L, payhsm_key *k, unsigned char *buf, size_t n, unsigned char out[8]) {
  n = payhsm_iso9797_pad(buf, n, 8, 2, buf);
  return payhsm_mac_alg3(L, k, buf, n, out);
}

static size_t mac_length(lua_State *L, int idx, const char *field) {
  lua_Integer len = payhsm_optfield_int(L, idx, field, 8);
  if (len < 4 || len > 8) luaL_error(L, "emv: %s must be 4 to 8 bytes", field);
  return (size_t)len;
}

/*
 * core.emv.sm_mac(sk_smi, command_hex [, {length = 4..8}]) -> mac_hex
 * The issuer script MAC (EMV 4.4 Book 2 9.2.3, A1.2): ISO 9797-1 MAC algorithm 3 with
 * padding method 2 over the command (header, and whatever the issuer binds in, such
 * as ATC || ARQC, then the command data), under SK-SMI; 8 bytes unless length says.
 * Codes: BAD_HEX, BAD_LENGTH (over 1024 bytes), KEY_TYPE, KEY_USAGE.
 */
static int emv_sm_mac(lua_State *L) {
  static const char fn[] = "emv.sm_mac";
  static const char *const fields[] = {"length", NULL};
  payhsm_key *k = payhsm_checkkey(L, 1);
  unsigned char buf[SM_MAX + 8], mac[8];
  size_t n, len;
  int r;
  payhsm_checkfields(L, 3, fn, fields);
  len = mac_length(L, 3, "length");
  if ((r = check_sm_key(L, k, fn, "E2 E0", "XNCG"))) return r;
  luaL_checkstring(L, 2);
  if (lua_rawlen(L, 2) > 2 * SM_MAX)
    return payhsm_fail(L, fn, "BAD_LENGTH", "command is over %d bytes", SM_MAX);
  if ((n = payhsm_hexarg(L, 2, fn, "command", buf, SM_MAX)) == (size_t)-1) return 3;
  r = sm_mac_compute(L, k, buf, n, mac);
  OPENSSL_cleanse(buf, sizeof buf);
  if (!r) return payhsm_raise_ossl(L, fn);
  payhsm_pushhex(L, mac, len);
  return 1;
}

/* Reads {type=, mode=} at idx: the type (default EMV) and the chaining (0 CBC, 1 ECB). */
static int sm_opts(lua_State *L, int idx, const char *fn, int *chaining) {
  static const char *const fields[] = {"type", "mode", NULL};
  int type;
  payhsm_checkfields(L, idx, fn, fields);
  type = opt_name(L, idx, "type", "secure messaging type", types, T_EMV);
  *chaining = opt_name(L, idx, "mode", "secure messaging mode", chainings, 0);
  return type;
}

/*
 * core.emv.sm_encrypt(sk_smc, data_hex [, {type = "EMV" | "VISA" | "MASTERCARD", mode =}]) -> hex
 * Issuer script data encipherment (EMV 4.4 Book 2 9.3, A1.1) under SK-SMC. type EMV
 * (default): padding method 2, TDES-CBC zero IV; VISA: the data length as one byte, the
 * data, padding method 2, TDES-CBC zero IV (Visa VIS enciphers it in ECB: mode = "ECB");
 * MASTERCARD: padding method 2 only when the data is not whole blocks, TDES-CBC zero IV.
 * mode "CBC" (default) or "ECB" sets the chaining.
 * Codes: BAD_HEX, BAD_LENGTH (empty MASTERCARD data, VISA data over 255 bytes, over
 * 1024 bytes), KEY_TYPE, KEY_USAGE.
 */
static int emv_sm_encrypt(lua_State *L) {
  static const char fn[] = "emv.sm_encrypt";
  payhsm_key *k = payhsm_checkkey(L, 1);
  unsigned char buf[SM_MAX + 16];
  size_t n;
  int r, chaining, type = sm_opts(L, 3, fn, &chaining);
  if ((r = check_sm_key(L, k, fn, "E1 E0", "XNEB"))) return r;
  luaL_checkstring(L, 2);
  if (lua_rawlen(L, 2) > 2 * SM_MAX)
    return payhsm_fail(L, fn, "BAD_LENGTH", "data is over %d bytes", SM_MAX);
  if ((n = payhsm_hexarg(L, 2, fn, "data", buf, SM_MAX)) == (size_t)-1) return 3;
  if ((type == T_VISA && n > 255) || (type == T_MASTERCARD && n == 0)) {
    OPENSSL_cleanse(buf, sizeof buf);
    return payhsm_fail(L, fn, "BAD_LENGTH", type == T_VISA ? "VISA data is at most 255 bytes"
                                                           : "MASTERCARD data is empty");
  }
  n = sm_format(buf, n, type);
  r = sm_crypt(L, k, 1, chaining, buf, n);
  if (r) payhsm_pushhex(L, buf, n);
  OPENSSL_cleanse(buf, sizeof buf);
  return r ? 1 : payhsm_raise_ossl(L, fn);
}

/*
 * core.emv.sm_decrypt(sk_smc, data_hex [, {type=, mode=}]) -> hex | nil, msg, code
 * The reverse of sm_encrypt: deciphers and removes the formatting of the type. EMV
 * and VISA padding (and the VISA length byte) are checked; MASTERCARD data comes back as
 * whole deciphered blocks, since the format cannot tell padding from data.
 * Codes: BAD_HEX, BAD_LENGTH (not whole blocks, empty), SM_PADDING, KEY_TYPE, KEY_USAGE.
 */
static int emv_sm_decrypt(lua_State *L) {
  static const char fn[] = "emv.sm_decrypt";
  payhsm_key *k = payhsm_checkkey(L, 1);
  unsigned char buf[SM_MAX + 16];
  size_t n, end, start = 0;
  int r, chaining, type = sm_opts(L, 3, fn, &chaining);
  if ((r = check_sm_key(L, k, fn, "E1 E0", "XNDB"))) return r;
  luaL_checkstring(L, 2);
  if (lua_rawlen(L, 2) > 2 * SM_MAX)
    return payhsm_fail(L, fn, "BAD_LENGTH", "data is over %d bytes", SM_MAX);
  if ((n = payhsm_hexarg(L, 2, fn, "data", buf, SM_MAX)) == (size_t)-1) return 3;
  if (n == 0 || n % 8) return payhsm_fail(L, fn, "BAD_LENGTH", "enciphered data must be whole 8-byte blocks");
  if (!sm_crypt(L, k, 0, chaining, buf, n)) {
    OPENSSL_cleanse(buf, sizeof buf);
    return payhsm_raise_ossl(L, fn);
  }
  end = n;
  if (type != T_MASTERCARD) {
    while (end > 0 && buf[end - 1] == 0 && n - end < 8) end--;
    r = end > 0 && buf[end - 1] == 0x80 && n - end < 8;
    end--;
    if (r && type == T_VISA) {
      r = end >= 1 && (size_t)buf[0] == end - 1;
      start = 1;
    }
    if (!r) {
      OPENSSL_cleanse(buf, sizeof buf);
      return payhsm_fail(L, fn, "SM_PADDING", "deciphered data does not end in ISO 9797-1 padding "
                         "method 2%s (wrong key or type?)", type == T_VISA ? " or breaks its length byte" : "");
    }
  }
  payhsm_pushhex(L, buf + start, end - start);
  OPENSSL_cleanse(buf, sizeof buf);
  return 1;
}

/* Secure messaging session key from the ICC master key mk: R (8 bytes) for the common
 * derivation, or the ATC (2 bytes, in r) for VISA. */
static int sm_session_key(lua_State *L, int deriv, const unsigned char mk[16], const unsigned char r[8],
                          unsigned char sk[16]) {
  payhsm_key t;
  unsigned char in[16];
  int ok;
  if (deriv == SD_VISA) {
    memcpy(sk, mk, 16);
    sk[6] ^= r[0];
    sk[7] ^= r[1];
    sk[14] ^= (unsigned char)~r[0];
    sk[15] ^= (unsigned char)~r[1];
    payhsm_des_parity(sk, 16);
    return 1;
  }
  memcpy(in, r, 8);
  memcpy(in + 8, r, 8);
  in[2] = 0xF0;
  in[10] = 0x0F;
  ok = payhsm_key_init(&t, PAYHSM_ALG_TDES_2KEY, mk, 16) && payhsm_key_crypt(L, &t, 1, NULL, in, sk, 16);
  payhsm_key_clear(&t);
  payhsm_des_parity(sk, 16);
  return ok;
}

/* Reads the derivation data of p (table at idx) for deriv into r: ARQC or ATC. */
static int sm_derivation_data(lua_State *L, const char *fn, int idx, int deriv, unsigned char r[8]) {
  size_t len;
  const char *s = payhsm_optfield_str(L, idx, deriv == SD_VISA ? "atc" : "arqc", &len);
  size_t want = deriv == SD_VISA ? 2 : 8;
  if (!s) luaL_error(L, "%s: p.%s is required for this derivation", fn, deriv == SD_VISA ? "atc" : "arqc");
  if (len != 2 * want || payhsm_hex_decode(s, len, r, 8) != want)
    return payhsm_fail(L, fn, deriv == SD_VISA ? "EMV_ATC" : "EMV_ARQC", "p.%s must be %d hex digits",
                       deriv == SD_VISA ? "atc" : "arqc", (int)(2 * want));
  return 0;
}

/*
 * core.emv.derive_sm_session_key(icc_mk, derivation, p) -> key | nil, msg, code
 * Secure messaging session key from an ICC master key for SMI or SMC (derive it with
 * derive_icc_master_key from IMK-SMI / IMK-SMC). derivation EMV_COMMON or MASTERCARD:
 * EMV 4.4 Book 2 A1.3.1 with R = p.arqc (the transaction's application cryptogram,
 * 16 hex digits); VISA: Visa VIS, p.atc (4 hex digits). The key keeps the ICC master
 * key's usage (E1 or E2; E0 when it has none), mode N.
 * Codes: EMV_ARQC, EMV_ATC, KEY_TYPE, KEY_USAGE.
 */
static int emv_derive_sm_sk(lua_State *L) {
  static const char fn[] = "emv.derive_sm_session_key";
  static const char *const fields[] = {"arqc", "atc", NULL};
  payhsm_key *mk = payhsm_checkkey(L, 1), *out;
  int deriv = payhsm_checkname(L, 2, "secure messaging session key derivation", sm_derivations), r;
  unsigned char rr[8] = {0}, sk[16];
  luaL_checktype(L, 3, LUA_TTABLE);
  payhsm_checkfields(L, 3, fn, fields);
  if ((r = check_sm_key(L, mk, fn, "E0 E1 E2", "XN"))) return r;
  if ((r = sm_derivation_data(L, fn, 3, deriv, rr))) return r;
  if (!sm_session_key(L, deriv, mk->bytes, rr, sk)) {
    OPENSSL_cleanse(sk, sizeof sk);
    return payhsm_raise_ossl(L, fn);
  }
  out = payhsm_pushkey(L, PAYHSM_ALG_TDES_2KEY, sk, 16);
  OPENSSL_cleanse(sk, sizeof sk);
  memcpy(out->usage, mk->usage[0] == 'E' ? mk->usage : "E0", 3);
  out->mode = 'N';
  return 1;
}

/* ---- PIN change ---------------------------------------------------------------- */

typedef struct {
  int deriv, mode, type, chaining;
  const char *pan, *psn;
  size_t pn, sn, maclen;
  unsigned char r[8];
} pc_params;

/* Deciphers the PIN block p[blk] (format p[fmt], default ISO_FORMAT_0) under the key p[pek]
 * (or p.pek) into pin; 0 or 3 with the failure pushed. Fields are left on the stack. */
static int pc_pin(lua_State *L, const char *fn, const pc_params *q, const char *blk, const char *fmt,
                  const char *pek_field, char pin[12], size_t *pn) {
  payhsm_key *pek;
  int top;
  if (lua_getfield(L, 3, pek_field) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_getfield(L, 3, "pek");
  }
  pek = payhsm_checkkey(L, -1);
  top = lua_gettop(L);
  if (lua_getfield(L, 3, fmt) == LUA_TNIL) {
    lua_pop(L, 1);
    if (lua_getfield(L, 3, "format") == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushliteral(L, "ISO_FORMAT_0");
    }
  }
  if (lua_getfield(L, 3, blk) != LUA_TSTRING) luaL_error(L, "%s: p.%s (hex) is required", fn, blk);
  return payhsm_pin_decrypt_block(L, fn, pek, payhsm_pin_checkformat(L, top + 1), top + 2, q->pan,
                                  q->pn, pin, pn);
}

/* The plaintext the card gets: VIS PIN block (VISA) or ISO 9564-1 format 2 block. */
static void pc_block(const pc_params *q, const char *pin, size_t pn, const char *cur, size_t cn,
                     const unsigned char mk_ac[16], unsigned char b[8]) {
  size_t i;
  memset(b, 0xFF, 8);
  b[0] = (unsigned char)(q->deriv == SD_VISA ? pn : 0x20 + pn);
  for (i = 0; i < pn; i++) {
    unsigned v = (unsigned)(pin[i] - '0');
    size_t at = 2 + i;
    b[at / 2] = (unsigned char)(at % 2 ? (b[at / 2] & 0xF0) | v : (b[at / 2] & 0x0F) | (v << 4));
  }
  if (q->deriv != SD_VISA) return;
  for (i = 0; i < 4; i++) b[4 + i] ^= mk_ac[4 + i];
  for (i = 0; i < cn; i++) b[i / 2] ^= (unsigned char)((unsigned)(cur[i] - '0') << (i % 2 ? 0 : 4));
}

/* Reads the derivation and formatting fields of p (at 3). */
static int pc_read(lua_State *L, const char *fn, pc_params *q) {
  static const char *const fields[] = {
    "derivation", "pan", "psn", "mode", "arqc", "atc", "pek", "pin_block", "format", "current_pek",
    "current_pin_block", "current_format", "imk_ac", "message_data", "type", "encryption_mode",
    "mac_length", NULL};
  int r;
  payhsm_checkfields(L, 3, fn, fields);
  lua_getfield(L, 3, "derivation");
  q->deriv = lua_isnil(L, -1) ? SD_COMMON : payhsm_checkname(L, -1, "PIN change derivation", sm_derivations);
  lua_pop(L, 1);
  q->mode = opt_name(L, 3, "mode", "ICC master key derivation mode", icc_modes, 0);
  q->type = opt_name(L, 3, "type", "secure messaging type", types,
                     q->deriv == SD_VISA ? T_VISA : q->deriv == SD_MASTERCARD ? T_MASTERCARD : T_EMV);
  q->chaining = opt_name(L, 3, "encryption_mode", "secure messaging mode", chainings, q->type == T_VISA);
  q->maclen = mac_length(L, 3, "mac_length");
  if (!(q->pan = payhsm_optfield_str(L, 3, "pan", &q->pn))) luaL_error(L, "%s: p.pan is required", fn);
  if (!(q->psn = payhsm_optfield_str(L, 3, "psn", &q->sn))) { q->psn = "00"; q->sn = 2; }
  if (q->deriv == SD_VISA && lua_getfield(L, 3, "imk_ac") == LUA_TNIL)
    luaL_error(L, "%s: VISA needs p.imk_ac (the VIS PIN block is bound to the ICC's AC key)", fn);
  if (q->deriv != SD_VISA && lua_getfield(L, 3, "current_pin_block") != LUA_TNIL)
    luaL_error(L, "%s: p.current_pin_block is for the VISA derivation (the VIS PIN block) only", fn);
  lua_pop(L, lua_gettop(L) - 3);
  if ((r = sm_derivation_data(L, fn, 3, q->deriv, q->r))) return r;
  return 0;
}

/* ICC master key from the IMK at idx (checked for usages), then the SM session key. */
static int pc_key(lua_State *L, const char *fn, int idx, const char *usages, const pc_params *q,
                  int session, unsigned char out[16]) {
  payhsm_key *imk = payhsm_checkkey(L, idx);
  unsigned char mk[16];
  int r;
  if ((r = check_sm_key(L, imk, fn, usages, "XN"))) return r;
  if ((r = payhsm_emv_icc_mk(L, fn, imk, q->mode, q->pan, q->pn, q->psn, q->sn, mk))) return r;
  if (!session) {
    memcpy(out, mk, 16);
  } else if (!sm_session_key(L, q->deriv, mk, q->r, out)) {
    OPENSSL_cleanse(mk, sizeof mk);
    return payhsm_raise_ossl(L, fn);
  }
  OPENSSL_cleanse(mk, sizeof mk);
  return 0;
}

/*
 * core.emv.pin_change(imk_smc, imk_smi, p) -> {encrypted_pin_block=, mac=} | nil, msg, code
 * The offline PIN change issuer script, as AWS Payment Cryptography's
 * GenerateMacEmvPinChange makes it (EMV 4.4 Book 2 A1.1-A1.3, Visa VIS and M/Chip PIN
 * change): the new PIN, received as p.pin_block under p.pek (ISO format p.format 0, 1 or 3,
 * PAN p.pan), is put in the block the card expects and enciphered under SK-SMC; the MAC
 * under SK-SMI covers p.message_data (the command header, e.g. 8424000210, with any data
 * the issuer binds in) || the enciphered block. The session keys come from ICC master
 * keys (p.mode EMV_OPTION_A or _B, p.pan, p.psn) of imk_smc and imk_smi:
 *   p.derivation EMV_COMMON (default) or MASTERCARD: R = p.arqc; the block is ISO 9564-1
 *     format 2; p.type EMV (default for EMV_COMMON) or MASTERCARD;
 *   VISA: p.atc; the block is the VIS PIN block, bound to the ICC master key derived from
 *     p.imk_ac, xor the current PIN when p.current_pin_block (under p.current_pek, default
 *     p.pek; format p.current_format) is given; p.type VISA.
 * p.encryption_mode CBC or ECB (default: the type's), p.mac_length 4 to 8 (default 8).
 * The PINs stay in C. Codes: those of sm_encrypt, pin.decrypt and derive_icc_master_key,
 * EMV_ARQC, EMV_ATC.
 */
static int emv_pin_change(lua_State *L) {
  static const char fn[] = "emv.pin_change";
  pc_params q;
  char pin[12], cur[12];
  size_t pn = 0, cn = 0, n, mn;
  unsigned char smc[16], smi[16], mk_ac[16], block[8], enc[24], buf[SM_MAX + 32], mac[8];
  payhsm_key t;
  int r, ok;
  payhsm_checkkey(L, 1);
  payhsm_checkkey(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  memset(mk_ac, 0, sizeof mk_ac);
  if ((r = pc_read(L, fn, &q))) return r;
  if (lua_getfield(L, 3, "message_data") != LUA_TSTRING) luaL_error(L, "%s: p.message_data (hex) is required", fn);
  if (lua_rawlen(L, -1) > 2 * SM_MAX) return payhsm_fail(L, fn, "BAD_LENGTH", "message data is over %d bytes", SM_MAX);
  if ((mn = payhsm_hexarg(L, -1, fn, "message data", buf, SM_MAX)) == (size_t)-1) return 3;
  lua_settop(L, 3);
  if (q.deriv == SD_VISA) {
    lua_getfield(L, 3, "imk_ac");
    if ((r = pc_key(L, fn, 4, "E0", &q, 0, mk_ac))) return r;
    lua_settop(L, 3);
  }
  if ((r = pc_pin(L, fn, &q, "pin_block", "format", "pek", pin, &pn))) goto done;
  lua_settop(L, 3);
  if (q.deriv == SD_VISA && lua_getfield(L, 3, "current_pin_block") != LUA_TNIL) {
    lua_settop(L, 3);
    if ((r = pc_pin(L, fn, &q, "current_pin_block", "current_format", "current_pek", cur, &cn))) goto done;
  }
  lua_settop(L, 3);
  if ((r = pc_key(L, fn, 1, "E1 E0", &q, 1, smc)) || (r = pc_key(L, fn, 2, "E2 E0", &q, 1, smi))) goto done;
  pc_block(&q, pin, pn, cur, cn, mk_ac, block);
  memcpy(enc, block, 8);
  n = sm_format(enc, 8, q.type);
  ok = payhsm_key_init(&t, PAYHSM_ALG_TDES_2KEY, smc, 16) && sm_crypt(L, &t, 1, q.chaining, enc, n);
  payhsm_key_clear(&t);
  memcpy(buf + mn, enc, n);
  ok = ok && payhsm_key_init(&t, PAYHSM_ALG_TDES_2KEY, smi, 16) && sm_mac_compute(L, &t, buf, mn + n, mac);
  payhsm_key_clear(&t);
  if (!ok) {
    r = -1;
    goto done;
  }
  lua_createtable(L, 0, 2);
  payhsm_pushhex(L, enc, n);
  lua_setfield(L, -2, "encrypted_pin_block");
  payhsm_pushhex(L, mac, q.maclen);
  lua_setfield(L, -2, "mac");
  r = 1;
done:
  OPENSSL_cleanse(pin, sizeof pin);
  OPENSSL_cleanse(cur, sizeof cur);
  OPENSSL_cleanse(smc, sizeof smc);
  OPENSSL_cleanse(smi, sizeof smi);
  OPENSSL_cleanse(mk_ac, sizeof mk_ac);
  OPENSSL_cleanse(block, sizeof block);
  OPENSSL_cleanse(buf, sizeof buf);
  if (r < 0) return payhsm_raise_ossl(L, fn);
  return r;
}

void payhsm_emvsm_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"sm_mac", emv_sm_mac}, {"sm_encrypt", emv_sm_encrypt}, {"sm_decrypt", emv_sm_decrypt},
    {"derive_sm_session_key", emv_derive_sm_sk}, {"pin_change", emv_pin_change}, {NULL, NULL}};
  lua_getfield(L, -1, "emv");
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}

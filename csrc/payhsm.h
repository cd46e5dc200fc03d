/*
 * payhsm.h - private header of the payhsm.core C module.
 *
 * Type names, the key object, check/push helpers and the error helper shared by
 * every csrc/<area>.c file. Everything declared here carries the payhsm_ prefix;
 * everything else in the .c files is static.
 */
#ifndef PAYHSM_H
#define PAYHSM_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>

#include "compat.h" /* Lua 5.1 (and LuaJIT) to 5.4 */

#include <openssl/evp.h>

#define PAYHSM_KEY_MT "payhsm.Key"

/* Largest key the module holds (HMAC keys may be long). */
#define PAYHSM_MAX_KEY 256

/* Key algorithms, named as AWS Payment Cryptography names them. */
typedef enum {
  PAYHSM_ALG_DES = 0,
  PAYHSM_ALG_TDES_2KEY,
  PAYHSM_ALG_TDES_3KEY,
  PAYHSM_ALG_AES_128,
  PAYHSM_ALG_AES_192,
  PAYHSM_ALG_AES_256,
  PAYHSM_ALG_HMAC_SHA256,
  PAYHSM_ALG_HMAC_SHA384,
  PAYHSM_ALG_HMAC_SHA512,
  PAYHSM_ALG_HMAC_SHA224, /* after the others: mac.c and sigv4.c index HMAC_SHA256..512 */
  PAYHSM_ALG_COUNT
} payhsm_alg;

/* Family of an algorithm: what kind of primitive the key drives. */
typedef enum { PAYHSM_FAM_DES, PAYHSM_FAM_AES, PAYHSM_FAM_HMAC } payhsm_family;

/*
 * A key object. Clear bytes live in memory owned by the userdata (secure heap
 * when one is configured) and are cleansed on close. Cipher contexts are built
 * lazily, once per key, and reused by every operation.
 */
typedef struct payhsm_key {
  unsigned char *bytes; /* clear key, len bytes; NULL once closed */
  size_t len;
  payhsm_alg alg;
  char usage[3];        /* TR-31 key usage, "" = any use */
  char mode;            /* TR-31 mode of use, 0 = any */
  char version[3];      /* TR-31 key version number, "00" = none */
  char exportability;   /* TR-31 exportability, 0 = any */
  char local_master;    /* 1: the store's local master key (may wrap N keys, local = true) */
  EVP_CIPHER_CTX *ecb_enc; /* block ciphers: ECB contexts, no padding */
  EVP_CIPHER_CTX *ecb_dec;
  EVP_CIPHER_CTX *cbc_enc; /* CBC contexts; the IV is reset per call */
  EVP_CIPHER_CTX *cbc_dec;
  EVP_MAC_CTX *hmac;       /* HMAC keys: keyed context, re-initialised per call */
  EVP_CIPHER_CTX *des_k1;  /* TDES keys: single DES under the left half (retail MAC) */
  unsigned char cmac_k1[16]; /* CMAC subkeys (SP 800-38B 6.1), valid if cmac_ready */
  unsigned char cmac_k2[16];
  int cmac_ready;
  void *tr31_cache;     /* derived key-block keys (tr31.c), freed by tr31 hook */
  void (*tr31_cache_free)(void *);
} payhsm_key;

/* ---- algorithm table (util.c) --------------------------------------- */
const char *payhsm_alg_name(payhsm_alg alg);
int payhsm_alg_from_name(const char *name); /* -1 if unknown */
payhsm_family payhsm_alg_family(payhsm_alg alg);
size_t payhsm_alg_keylen(payhsm_alg alg);   /* 0 for HMAC (variable) */
size_t payhsm_key_blocksize(const payhsm_key *k); /* 8, 16, or 0 for HMAC */

/* ---- key arguments (util.c) ----------------------------------------- */
/* Checks argument idx is an open key; raises otherwise. */
payhsm_key *payhsm_checkkey(lua_State *L, int idx);
/* Tests argument idx: the key, or NULL if it is not a key userdata. */
payhsm_key *payhsm_testkey(lua_State *L, int idx);

/* ---- key objects (key.c) -------------------------------------------- */
/* Pushes a new key holding a copy of bytes; attributes unset. Raises on bad length. */
payhsm_key *payhsm_pushkey(lua_State *L, payhsm_alg alg, const unsigned char *bytes, size_t len);
/* Fills a key struct that C owns (not a Lua object), e.g. keys derived and cached
 * inside another key; attributes unset. Returns 0 on bad length or no memory. */
int payhsm_key_init(payhsm_key *k, payhsm_alg alg, const unsigned char *bytes, size_t len);
/* Frees the contexts and cleanses the bytes of a key (what close and __gc do). */
void payhsm_key_clear(payhsm_key *k);
/* ---- block primitives on a key's cached contexts (block.c) ------------ */
/* Builds (once) and returns the key's ECB/CBC contexts. Raise on failure. */
EVP_CIPHER_CTX *payhsm_key_ecb(lua_State *L, payhsm_key *k, int enc);
EVP_CIPHER_CTX *payhsm_key_cbc(lua_State *L, payhsm_key *k, int enc);
/* Enciphers/deciphers whole blocks with the key's cached contexts (len % bs == 0).
 * iv NULL means ECB. in and out may alias. Returns 1 on success. */
int payhsm_key_crypt(lua_State *L, payhsm_key *k, int enc, const unsigned char *iv,
                     const unsigned char *in, unsigned char *out, size_t len);
/* CMAC (NIST SP 800-38B) of msg under a DES-family or AES key; out gets blocksize bytes. */
int payhsm_key_cmac(lua_State *L, payhsm_key *k, const unsigned char *msg, size_t len,
                    unsigned char *out);
/* NIST SP 800-108r1 KBKDF in counter mode: n bytes into out under an AES (CMAC PRF)
 * or HMAC key-derivation key. Returns 1 on success, 0 for another family or failure. */
int payhsm_kbkdf(const payhsm_key *kdk, const unsigned char *label, size_t llen,
                 const unsigned char *context, size_t clen, unsigned char *out, size_t n);
/*
 * Usage check. usages is a space separated list of TR-31 key usages ("M1 M0"), or
 * NULL for any; modes the TR-31 modes of use acceptable for the operation ("CG"),
 * or NULL for any. A key without usage or mode is fit for any use. On refusal
 * pushes nil, message, "KEY_USAGE" and returns 3 (the caller returns that);
 * returns 0 when the key may be used.
 */
int payhsm_key_usage(lua_State *L, const payhsm_key *k, const char *fn,
                     const char *usages, const char *modes);
/* HMAC (FIPS 198-1) of msg under an HMAC key; out gets the digest (up to 64 bytes),
 * *outlen its length. Returns 1 on success. */
int payhsm_key_hmac(lua_State *L, payhsm_key *k, const unsigned char *msg, size_t len,
                    unsigned char *out, size_t *outlen);
/* Modes of use that fit a TR-31 usage: "" for proprietary (numeric) usages, NULL if unknown. */
const char *payhsm_usage_modes(const char *usage);
/* Whether m is a TR-31 mode of use (X9.143 Table 8). */
int payhsm_mode_known(char m);
/* Whether the key's family is one of the given families (bit mask of 1<<family). */
int payhsm_key_family_ok(const payhsm_key *k, unsigned mask);
/* Sets the TR-31 attributes from a Lua table at idx (raises on malformed codes). */
void payhsm_key_setattrs(lua_State *L, payhsm_key *k, int idx);
/* Whether the host allows key:export() in this Lua state (hsm.policy{clear_export=}). */
int payhsm_clear_export_allowed(lua_State *L);
/* Sets odd parity on every byte (DES keys). */
void payhsm_des_parity(unsigned char *b, size_t len);

/* ---- hex and errors (util.c) ---------------------------------------- */
/*
 * Decodes the hex string at idx into buf (capacity cap). Accepts either case.
 * Returns the byte count, or (size_t)-1 on bad hex / odd length / too long, after
 * pushing nil, "<fn>: <what> is not valid hex", "BAD_HEX" (caller returns 3).
 * Raises if the argument is not a string.
 */
size_t payhsm_hexarg(lua_State *L, int idx, const char *fn, const char *what,
                     unsigned char *buf, size_t cap);
/* Same as payhsm_hexarg but decodes into a buffer allocated as a Lua userdata
 * scratch (left on the stack on success) with extra bytes of headroom; *out receives
 * its address. On bad hex nothing is left but the three failure values. */
size_t payhsm_hexarg_alloc(lua_State *L, int idx, const char *fn, const char *what,
                           size_t extra, unsigned char **out);
/* Like payhsm_hexarg_alloc, but decodes into the caller's stack buffer (capacity
 * cap) when the data plus extra fits, and only otherwise into a userdata left on
 * the stack. Hot paths use it to avoid an allocation per call. */
size_t payhsm_hexarg_scratch(lua_State *L, int idx, const char *fn, const char *what,
                             size_t extra, unsigned char *stackbuf, size_t cap,
                             unsigned char **out);
/* Value of one hex digit (either case), or -1. */
int payhsm_hex_digit(char c);
/* Decodes hex (len chars) into out; returns byte count or (size_t)-1. */
size_t payhsm_hex_decode(const char *restrict hex, size_t len, unsigned char *restrict out, size_t cap);
/* Encodes len bytes as upper-case hex into out (2*len chars, no NUL). */
void payhsm_hex_encode(const unsigned char *in, size_t len, char *out);
/* Public random bytes (IVs, padding, fill) from RAND_bytes through a per-thread pool,
 * fork safe. Not for key material. Returns 1 on success. */
int payhsm_random(unsigned char *out, size_t n);
/* Pushes upper-case hex of len bytes. */
void payhsm_pushhex(lua_State *L, const unsigned char *in, size_t len);
/* Pushes nil, "<fn>: <formatted message>", code and returns 3. Drains OpenSSL's error queue. */
int payhsm_fail(lua_State *L, const char *fn, const char *code, const char *fmt, ...);
/* Pushes false, message, code and returns 3 (verification mismatch). */
int payhsm_false(lua_State *L, const char *fn, const char *code, const char *fmt, ...);
/* Raises a Lua error after draining OpenSSL's error queue. */
int payhsm_raise_ossl(lua_State *L, const char *fn);
/* Looks up a string option s in names[], raising a clear error when it is unknown. */
int payhsm_checkname(lua_State *L, int idx, const char *what, const char *const names[]);
/* Raises "<fn>: unknown option 'x' (expected one of: a, b)" when the table at idx
 * has a key not in allowed[] (NULL-terminated). Does nothing when idx is not a table.
 * Every function that takes an options table calls it first: a misspelt option must
 * never silently change a result. */
int payhsm_checkfields(lua_State *L, int idx, const char *fn, const char *const allowed[]);
/* Reads an optional integer field of the table at idx (def when absent). */
lua_Integer payhsm_optfield_int(lua_State *L, int idx, const char *field, lua_Integer def);
/* Reads an optional string field of the table at idx (NULL when absent). */
const char *payhsm_optfield_str(lua_State *L, int idx, const char *field, size_t *len);
/* Fetches the cached algorithm objects once per process (pthread_once); 1 when all
 * are there. luaopen_payhsm_core calls it before any area runs. */
int payhsm_algorithms_load(void);
/* Cached EVP_CIPHER objects, fetched once per process. */
const EVP_CIPHER *payhsm_cipher_for(payhsm_alg alg, int cbc);
/* Cached EVP_MD objects for HMAC keys. */
const EVP_MD *payhsm_md_for(payhsm_alg alg);

/* ---- area openers: each adds its functions to the table on top --------- */
void payhsm_key_open(lua_State *L);
void payhsm_cipher_open(lua_State *L);
void payhsm_mac_open(lua_State *L);
void payhsm_kcv_open(lua_State *L);
void payhsm_tr31_open(lua_State *L);
void payhsm_pinblock_open(lua_State *L);
void payhsm_emv_open(lua_State *L);
void payhsm_emvsm_open(lua_State *L); /* adds secure messaging to the emv table */
void payhsm_as2805_open(lua_State *L);
void payhsm_zka_open(lua_State *L);
void payhsm_envelope_open(lua_State *L);
void payhsm_hmac_open(lua_State *L); /* core.hmac, core.hmac_verify (mac.c) */
void payhsm_rotation_open(lua_State *L);
void payhsm_rsa_open(lua_State *L);
void payhsm_components_open(lua_State *L); /* adds to the key table: after key */
void payhsm_card_open(lua_State *L);
void payhsm_pinverify_open(lua_State *L);
void payhsm_dukpt_open(lua_State *L);
void payhsm_tr34_open(lua_State *L);
void payhsm_file_open(lua_State *L);
void payhsm_signal_open(lua_State *L);
void payhsm_sigv4_open(lua_State *L);
void payhsm_pki_open(lua_State *L);
void payhsm_ec_open(lua_State *L);

/* ---- shared primitives other areas build on ------------------------- */
/* KCV (kcv.c): kcv_alg 0 = ANSI_X9_24, 1 = CMAC; out gets 3 bytes. Returns 1 on success. */
int payhsm_kcv_compute(lua_State *L, payhsm_key *k, int kcv_alg, unsigned char out[3]);
/* core.kcv(key [, kcv_algorithm]) (kcv.c), also the key:kcv() method. */
int payhsm_kcv(lua_State *L);
/* ISO 9797-1 padding (mac.c): method 1, 2 or 3 of len bytes of in into out (which may
 * alias in); out has room for len + 2 * bs bytes. Returns the padded length. */
size_t payhsm_iso9797_pad(const unsigned char *in, size_t len, size_t bs, int method,
                          unsigned char *out);
/* TDES keys: the CBC context of single DES under the left half K1 (retail MAC). */
EVP_CIPHER_CTX *payhsm_key_k1cbc(lua_State *L, payhsm_key *k);
/* Runs CBC from a zero IV over len bytes (len % bs == 0, len > 0) with ctx and
 * writes the last ciphertext block to last. Returns 1 on success. */
int payhsm_cbc_chain(EVP_CIPHER_CTX *ctx, const unsigned char *in, size_t len, size_t bs,
                     unsigned char *last);
/* ISO 9797-1 MAC algorithm 1 (CBC-MAC) and 3 (retail) on already padded data; out gets bs bytes. */
int payhsm_mac_alg1(lua_State *L, payhsm_key *k, const unsigned char *padded, size_t len,
                    unsigned char *out);
int payhsm_mac_alg3(lua_State *L, payhsm_key *k, const unsigned char *padded, size_t len,
                    unsigned char *out);
/* EMV ICC master key (emv.c, EMV Book 2 A1.4; mode 0 option A, 1 option B) from the
 * IMK into mk. Returns 0, or 3 after pushing nil, message, code on bad PAN/PSN. */
int payhsm_emv_icc_mk(lua_State *L, const char *fn, payhsm_key *imk, int mode, const char *pan,
                      size_t pn, const char *psn, size_t sn, unsigned char mk[16]);

/* ---- PIN blocks for PIN verification (pinblock.c) -------------------- */
/* The ISO 9564-1 format named at idx ("ISO_FORMAT_0".."ISO_FORMAT_4") as 0..4; raises if unknown. */
int payhsm_pin_checkformat(lua_State *L, int idx);
/*
 * Deciphers the hex PIN block at stack index block_idx under pek (usage P0, mode D/B/N;
 * TDES for formats 0-3, AES for format 4) and parses it with its PAN (formats 0, 3, 4)
 * into pin (up to 12 digits, *pinlen of them), so the PIN stays in C. Returns 0 on
 * success; otherwise pushes nil, "<fn>: message", code (KEY_USAGE, KEY_TYPE, BAD_HEX,
 * BAD_LENGTH, PAN_LENGTH, PAN_DIGITS, PIN_FORMAT) and returns 3. The caller cleanses pin.
 */
int payhsm_pin_decrypt_block(lua_State *L, const char *fn, payhsm_key *pek, int fmt, int block_idx,
                             const char *pan, size_t panlen, char pin[12], size_t *pinlen);

/* RSA keys (rsa.c): the EVP_PKEY of the open payhsm.RsaKey at idx, NULL if idx is not
 * one (raises if it is closed). The key stays owned by the userdata. */
EVP_PKEY *payhsm_rsa_pkey(lua_State *L, int idx);
/* Elliptic-curve keys (ec.c): the EVP_PKEY of the open payhsm.EcKey (or, unless
 * need_private, payhsm.EcPublicKey) at idx, NULL if idx is not one. push_public makes an
 * EcPublicKey owning pkey; supported: pkey is an EC key on P-256, P-384 or P-521. */
EVP_PKEY *payhsm_ec_pkey(lua_State *L, int idx, int need_private);
void payhsm_ec_push_public(lua_State *L, EVP_PKEY *pkey);
int payhsm_ec_supported(EVP_PKEY *pkey);
/* Asymmetric key objects (pkey.c), shared by rsa.c and ec.c: a userdata holding one EVP_PKEY
 * pointer. spki_der leaves a scratch userdata with the DER SubjectPublicKeyInfo on the stack;
 * fingerprint writes the hex of the first 8 bytes of its SHA-256 (stack unchanged);
 * pkey_push pushes an empty object of metatable mt; public_copy pushes a public object of
 * pub_mt with pkey's public half; types registers the two metatables (meta on both). */
unsigned char *payhsm_spki_der(lua_State *L, EVP_PKEY *pkey, size_t *n, const char *fn);
void payhsm_pkey_fingerprint(lua_State *L, EVP_PKEY *pkey, const char *fn, char hex[17]);
EVP_PKEY **payhsm_pkey_push(lua_State *L, const char *mt);
void payhsm_pkey_public_copy(lua_State *L, EVP_PKEY *pkey, const char *pub_mt, const char *fn);
void payhsm_pkey_types(lua_State *L, const char *priv_mt, const char *pub_mt, const luaL_Reg *meta,
                       const luaL_Reg *priv_methods, const luaL_Reg *pub_methods);
/* Private keys under an AES KEK (kwp.c, RFC 5649 over PKCS#8): pkcs8_wrap pushes the
 * hex; pkcs8_unwrap pushes the key that shell() makes (or nil, msg, code) and returns
 * the count. kwp_wrap / kwp_verify are Lua functions (core.rsa.kwp_wrap, kwp_verify). */
int payhsm_pkcs8_wrap(lua_State *L, EVP_PKEY *pkey, payhsm_key *kek, const char *fn);
int payhsm_pkcs8_unwrap(lua_State *L, int kek_idx, int hex_idx, const char *fn, const char *code, int base_id,
                        const char *kind, EVP_PKEY **(*shell)(lua_State *L));
int payhsm_kwp_wrap(lua_State *L);
int payhsm_kwp_verify(lua_State *L);
/* HMAC signing key check (mac.c): usage M7 with one of modes, HMAC family; on refusal
 * pushes nil, message, KEY_USAGE or KEY_TYPE and returns 3, else 0. */
int payhsm_hmac_key_check(lua_State *L, const payhsm_key *mk, const char *fn, const char *modes);

#endif

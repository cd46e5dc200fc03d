/*
 * fuzz/harness.c - libFuzzer harness for the parsers and decoders of payhsm.core.
 *
 * The core is linked in (built with -fsanitize=fuzzer,address,undefined) and driven
 * through its real Lua entry points: each target is a Lua function taking the fuzz
 * input as a string. Errors the API raises on misuse are caught (lua_pcall); what the
 * fuzzer looks for is what must never happen: crashes, out-of-bounds accesses,
 * undefined behaviour, leaks in C.
 * Build and run: make fuzz (FUZZ_TIME seconds per target), make fuzz-ci.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_payhsm_core(lua_State *L);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STR2(x) #x
#define STR(x) STR2(x)

static const struct { const char *name, *code; } targets[] = {
  {"tr31_parse", "return function(d) core.tr31.parse(d) end"},
  {"tr31_unwrap",
   "local a = core.key.import('AES_256', ('88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6'))\n"
   "local t = core.key.import('TDES_2KEY', 'DD7515F2BFC17F85CE48F3CA25CB21F6')\n"
   "return function(d) core.tr31.unwrap(#d % 2 == 0 and a or t, d) end"},
  /* Blocks whose MAC is valid under a fixed KBPK, built from the input (ANSI X9.143
   * key derivation binding: KBEK/KBMK by CMAC over counter || usage || 00 || algorithm
   * || length; MAC = CMAC(KBMK, header || clear payload), the payload enciphered in CBC
   * with the MAC as IV), so the header, length and padding checks behind the MAC run. */
  {"tr31_unwrap_valid",
   "local kd = core.key.import('AES_256', '88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6')\n"
   "local kb = core.key.import('TDES_2KEY', 'DD7515F2BFC17F85CE48F3CA25CB21F6')\n"
   "local function hex(s) return (s:gsub('.', function(c) return ('%02X'):format(c:byte()) end)) end\n"
   "local function derive(k, alg, usage)\n"
   "  return core.mac.generate(k, 'CMAC', '01' .. usage .. '00' .. alg) .. core.mac.generate(k, 'CMAC', '02' .. usage .. '00' .. alg)\n"
   "end\n"
   "local keys = {\n"
   "  B = {core.key.import('TDES_2KEY', derive(kb, '00000080', '0000')), core.key.import('TDES_2KEY', derive(kb, '00000080', '0001')), 8, kb},\n"
   "  D = {core.key.import('AES_256', derive(kd, '00040100', '0000')), core.key.import('AES_256', derive(kd, '00040100', '0001')), 16, kd}}\n"
   "return function(d) if #d < 2 then return end\n"
   "  local v = d:byte(1) % 2 == 0 and 'B' or 'D'\n"
   "  local kbek, kbmk, bs, kbpk = keys[v][1], keys[v][2], keys[v][3], keys[v][4]\n"
   "  local hlen = 16 + d:byte(2) % 96\n"
   "  local header = d:sub(3, 2 + hlen)\n"
   "  header = header .. ('0'):rep(hlen - #header)\n"
   "  local payload = d:sub(3 + hlen)\n"
   "  payload = payload .. ('\\0'):rep((bs - #payload % bs) % bs)\n"
   "  if #payload == 0 then payload = ('\\0'):rep(bs) end\n"
   "  local total = hlen + 2 * #payload + 2 * bs\n"
   "  if total > 9999 then return end\n"
   "  header = v .. ('%04d'):format(total) .. header:sub(6)\n"
   "  local mac = core.mac.generate(kbmk, 'CMAC', hex(header) .. hex(payload))\n"
   "  local k = core.tr31.unwrap(kbpk, header .. core.cipher.encrypt(kbek, 'CBC', hex(payload), mac) .. mac)\n"
   "  if k then tostring(k) k:close() end\n"
   "end"},
  /* PIN blocks whose encryption is valid: the input is the clear block, so the
   * format checks after decryption see chosen bytes, not random ones. */
  {"pin_block_valid",
   "local f = {'ISO_FORMAT_0', 'ISO_FORMAT_1', 'ISO_FORMAT_2', 'ISO_FORMAT_3', 'ISO_FORMAT_4'}\n"
   "local t = core.key.import('TDES_2KEY', '0123456789ABCDEFFEDCBA9876543210')\n"
   "local a = core.key.import('AES_128', '00112233445566778899AABBCCDDEEFF')\n"
   "local function hex(s) return (s:gsub('.', function(c) return ('%02X'):format(c:byte()) end)) end\n"
   "return function(d) if #d < 2 then return end\n"
   "  local n = d:byte(1) % 5 + 1\n"
   "  local bs = n == 5 and 16 or 8\n"
   "  local plen = d:byte(2) % 24\n"
   "  local pan = d:sub(3, 2 + plen)\n"
   "  local clear = d:sub(3 + plen, 2 + plen + bs)\n"
   "  clear = clear .. ('\\0'):rep(bs - #clear)\n"
   "  local blk = core.cipher.encrypt(n == 5 and a or t, 'ECB', hex(clear))\n"
   "  local pin = core.pin.decrypt(n == 5 and a or t, f[n], blk, pan)\n"
   "  if pin then core.pin.translate(n == 5 and a or t, f[n], blk, t, 'ISO_FORMAT_0', pan) end\n"
   "end"},
  /* Envelopes whose HMAC is valid and whose ciphertext deciphers to chosen bytes, so
   * the JSON, padding and chunk checks behind the HMAC run. */
  {"envelope_open_valid",
   "local k = core.key.import('AES_256', ('11'):rep(32))\n"
   "local m = core.key.import('HMAC_SHA256', ('22'):rep(32))\n"
   "local iv = ('00'):rep(16)\n"
   "local function hex(s) return (s:gsub('.', function(c) return ('%02X'):format(c:byte()) end)) end\n"
   "return function(d) if #d < 1 then return end\n"
   "  local fmt = d:byte(1) % 2 == 0 and 'TR31-DATA' or 'TR31-DATA-CHUNKED'\n"
   "  local clear = d:sub(2)\n"
   "  clear = clear .. ('\\0'):rep((16 - #clear % 16) % 16)\n"
   "  if #clear == 0 then clear = ('\\0'):rep(16) end\n"
   "  local c = core.cipher.encrypt(k, 'CBC', hex(clear), iv)\n"
   "  local json = '{\"format\":\"' .. fmt .. '\",\"mode\":\"CBC\",\"initialization_vector\":\"' .. iv .. '\",\"ciphertext\":\"' .. c .. '\"}'\n"
   "  core.envelope.open(k, json, {mac_key = m, hmac = core.hmac(m, json)})\n"
   "  core.envelope.open(k, d, {mac_key = m, hmac = core.hmac(m, d)})\n"
   "end"},
  {"pin_parse",
   "local f = {'ISO_FORMAT_0', 'ISO_FORMAT_1', 'ISO_FORMAT_2', 'ISO_FORMAT_3', 'ISO_FORMAT_4'}\n"
   "local t = core.key.import('TDES_2KEY', '0123456789ABCDEFFEDCBA9876543210')\n"
   "local a = core.key.import('AES_128', '00112233445566778899AABBCCDDEEFF')\n"
   "return function(d) if #d < 1 then return end\n"
   "  local n = d:byte(1) % 5 + 1\n"
   "  local pan = d:sub(2, 1 + d:byte(1) % 24)\n"
   "  local blk = d:sub(2 + d:byte(1) % 24)\n"
   "  pcall(core.pin.parse, f[n], blk, pan)\n"
   "  pcall(core.pin.decrypt, n == 5 and a or t, f[n], blk, pan)\n"
   "  pcall(core.pin.format, f[n], pan, blk)\n"
   "end"},
  {"envelope_open",
   "local k = core.key.import('AES_256', ('11'):rep(32))\n"
   "local m = core.key.import('HMAC_SHA256', ('22'):rep(32))\n"
   "return function(d) core.envelope.open(k, d)\n"
   "  pcall(core.envelope.open, k, d, {mac_key = m, hmac = d:sub(1, 64)}) end"},
  {"rsa_public",
   "local kek = core.key.import('AES_256', ('33'):rep(32))\n"
   "return function(d) local h = d:gsub('.', function(c) return ('%02X'):format(c:byte()) end)\n"
   "  local p = core.rsa.public(h) if p then core.rsa.seal(p, 'x') end\n"
   "  core.rsa.unwrap(kek, h) core.rsa.kwp_verify(kek, h, h:sub(1, 32)) end"},
  {"ec_public",
   "local kek = core.key.import('AES_256', ('33'):rep(32))\n"
   "local mine = {['P-256'] = core.ec.generate('P-256'), ['P-384'] = core.ec.generate('P-384'),\n"
   "  ['P-521'] = core.ec.generate('P-521')}\n"
   "local opts = {kdf = 'ANSI_X963', hash = 'SHA_256', algorithm = 'AES_128', shared_info = '00'}\n"
   "return function(d) local h = d:gsub('.', function(c) return ('%02X'):format(c:byte()) end)\n"
   "  local p = core.ec.public(h) if p then core.ec.derive(mine[p:curve()], p, opts) end\n"
   "  core.ec.unwrap(kek, h)\n"
   "  local c = core.pki.parse(d) if c then core.pki.verify(d, c.public_key) end end"},
  {"rsa_open",
   "local priv = core.rsa.generate(2048)\n"
   "local good = core.rsa.seal(priv, 'card data', 'aad')\n"
   "return function(d) local h = d:gsub('.', function(c) return ('%02X'):format(c:byte()) end)\n"
   "  local n = #d > 0 and d:byte(1) % 4 or 0\n"
   "  local t = {encrypted_key = good.encrypted_key, iv = good.iv, ciphertext = good.ciphertext, tag = good.tag}\n"
   "  t[({'encrypted_key', 'iv', 'ciphertext', 'tag'})[n + 1]] = h:sub(3)\n"
   "  core.rsa.open(priv, t, 'aad') end"},
  {"rotation_restore", "return function(d) local s = core.rotation.restore(d) if s then s:snapshot() s:list() end end"},
  {"hex",
   "local k = core.key.import('AES_128', ('00'):rep(16))\n"
   "return function(d) core.cipher.decrypt(k, 'CBC', d) core.mac.generate(k, 'CMAC', d)\n"
   "  core.key.import('AES_128', d) end"},
};

static lua_State *L;
static int fn_ref;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  size_t i;
  const char *want = STR(FUZZ_TARGET);
  (void)argc; (void)argv;
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "payhsm.core", luaopen_payhsm_core, 0);
  lua_setglobal(L, "core");
  for (i = 0; i < sizeof targets / sizeof targets[0]; i++)
    if (strcmp(targets[i].name, want) == 0) break;
  if (i == sizeof targets / sizeof targets[0]) { fprintf(stderr, "unknown target %s\n", want); exit(2); }
  if (luaL_dostring(L, targets[i].code)) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); exit(2); }
  fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned n;
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
  if (++n % 1000 == 0) lua_gc(L, LUA_GCCOLLECT);
  return 0;
}

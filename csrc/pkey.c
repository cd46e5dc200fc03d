/*
 * pkey.c - what the asymmetric key objects of rsa.c (payhsm.RsaKey, payhsm.RsaPublicKey) and
 * ec.c (payhsm.EcKey, payhsm.EcPublicKey) share: a userdata holding one EVP_PKEY pointer
 * (NULL once closed), its DER SubjectPublicKeyInfo (RFC 5280 4.1.2.7), the fingerprint
 * tostring shows, a public copy, and the registration of a private and a public type.
 */
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "payhsm.h"

unsigned char *payhsm_spki_der(lua_State *L, EVP_PKEY *pkey, size_t *n, const char *fn) {
  unsigned char *buf, *p;
  int len = i2d_PUBKEY(pkey, NULL);
  if (len <= 0) { payhsm_raise_ossl(L, fn); return NULL; }
  buf = p = lua_newuserdatauv(L, (size_t)len, 0);
  if (i2d_PUBKEY(pkey, &p) != len) { payhsm_raise_ossl(L, fn); return NULL; }
  *n = (size_t)len;
  return buf;
}

void payhsm_pkey_fingerprint(lua_State *L, EVP_PKEY *pkey, const char *fn, char hex[17]) {
  unsigned char md[32];
  unsigned int mdn = 0;
  size_t n;
  unsigned char *der = payhsm_spki_der(L, pkey, &n, fn);
  if (!EVP_Digest(der, n, md, &mdn, EVP_sha256(), NULL)) payhsm_raise_ossl(L, fn);
  lua_pop(L, 1);
  payhsm_hex_encode(md, 8, hex);
  hex[16] = 0;
}

EVP_PKEY **payhsm_pkey_push(lua_State *L, const char *mt) {
  EVP_PKEY **slot = lua_newuserdatauv(L, sizeof *slot, 0);
  *slot = NULL;
  luaL_setmetatable(L, mt);
  return slot;
}

void payhsm_pkey_public_copy(lua_State *L, EVP_PKEY *pkey, const char *pub_mt, const char *fn) {
  size_t n;
  const unsigned char *p = payhsm_spki_der(L, pkey, &n, fn);
  EVP_PKEY **pub = payhsm_pkey_push(L, pub_mt);
  if (!(*pub = d2i_PUBKEY(NULL, &p, (long)n))) payhsm_raise_ossl(L, fn);
  lua_remove(L, -2);
}

void payhsm_pkey_types(lua_State *L, const char *priv_mt, const char *pub_mt, const luaL_Reg *meta,
                       const luaL_Reg *priv_methods, const luaL_Reg *pub_methods) {
  const char *const mts[2] = {priv_mt, pub_mt};
  const luaL_Reg *const methods[2] = {priv_methods, pub_methods};
  int i;
  for (i = 0; i < 2; i++) {
    luaL_newmetatable(L, mts[i]);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods[i], 0);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
  }
}

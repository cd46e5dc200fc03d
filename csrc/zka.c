/* zka.c - placeholder opener; the area is filled in by its own change. */
#include "payhsm.h"

void payhsm_zka_open(lua_State *L) { (void)L; }

/* as2805.c - placeholder opener; the area is filled in by its own change. */
#include "payhsm.h"

void payhsm_as2805_open(lua_State *L) { (void)L; }

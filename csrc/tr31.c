/* tr31.c - placeholder opener; the area is filled in by its own change. */
#include "payhsm.h"

void payhsm_tr31_open(lua_State *L) { (void)L; }

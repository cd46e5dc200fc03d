# payhsm - build, test and demo. `make demo` and `make test` are all a fresh Debian 12
# machine needs: missing Debian packages are installed first (as root), or the exact
# apt-get line is printed.
LUA      ?= lua5.4
CC       ?= cc
PKGS     := lua5.4 liblua5.4-dev libssl-dev lua-busted lua-cjson make gcc pkg-config \
            libmicrohttpd-dev libgnutls28-dev libhiredis-dev redis-server lua-sql-sqlite3 lua-sec curl wrk
WARN     := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wcast-qual -Wstrict-prototypes \
            -Wmissing-prototypes -Wconversion -Wno-sign-conversion
CFLAGS   ?= -O2 -g
CFLAGS   += -fPIC -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) -I/usr/include/lua5.4 -Icsrc
LDLIBS   := -lcrypto
# payhsm.core is every csrc/*.c but the two modules that link other libraries:
# payhsm.http (csrc/http.c, GNU libmicrohttpd) and payhsm.redis (csrc/redis.c, hiredis).
SRCS     := $(filter-out csrc/http.c csrc/redis.c,$(wildcard csrc/*.c))
OBJS     := $(patsubst csrc/%.c,build/obj/%.o,$(SRCS))
CORE     := build/payhsm/core.so
MODULES  := $(if $(wildcard csrc/http.c),build/payhsm/http.so) $(if $(wildcard csrc/redis.c),build/payhsm/redis.so)
BUSTED   := $(LUA) /usr/bin/busted

.PHONY: all deps core test demo bench clean
all: deps
	@$(MAKE) --no-print-directory core

core: $(CORE) $(MODULES)

deps:
	@sh tools/deps.sh $(PKGS)

build/obj/%.o: csrc/%.c csrc/payhsm.h | build/obj
	$(CC) $(CFLAGS) -c $< -o $@

build/obj:
	@mkdir -p build/obj build/payhsm

$(CORE): $(OBJS)
	@mkdir -p build/payhsm
	$(CC) -shared -o $@ $(OBJS) $(LDLIBS)

build/payhsm/http.so: csrc/http.c csrc/payhsm.h | build/obj
	$(CC) $(CFLAGS) -shared -o $@ $< -lmicrohttpd -lgnutls

build/payhsm/redis.so: csrc/redis.c csrc/payhsm.h | build/obj
	$(CC) $(CFLAGS) -I/usr/include/hiredis -shared -o $@ $< -lhiredis

test: all
	@$(BUSTED) -o tools/summary.lua

demo: all
	@$(LUA) tools/demo.lua

bench: all
	@$(MAKE) -s -C bench

clean:
	rm -rf build

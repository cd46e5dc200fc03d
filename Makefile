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

.PHONY: all deps core test demo bench clean fuzz test-asan
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

# ---- fuzzing (libFuzzer + AddressSanitizer + UBSan, clang from Debian) -------------
FUZZ_TARGETS := tr31_parse tr31_unwrap pin_parse envelope_open rotation_restore hex
FUZZ_TIME    ?= 60
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -I/usr/include/lua5.4 -Icsrc

build/fuzz/%: fuzz/harness.c $(SRCS) csrc/payhsm.h
	@mkdir -p build/fuzz
	clang $(FUZZ_CFLAGS) -DFUZZ_TARGET=$* -o $@ fuzz/harness.c $(SRCS) -llua5.4 -lcrypto -lpthread

# Runs every target for FUZZ_TIME seconds on the seed corpus in fuzz/corpus/<target>;
# stops at the first finding (the crashing input is written to build/fuzz/).
fuzz: all
	@sh tools/deps.sh clang
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=build/fuzz/%)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus-$$t; \
	  echo "fuzz $$t for $(FUZZ_TIME)s"; \
	  build/fuzz/$$t -max_total_time=$(FUZZ_TIME) -max_len=4096 -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/$$t- build/fuzz/corpus-$$t fuzz/corpus/$$t 2>build/fuzz/$$t.log \
	    || { tail -40 build/fuzz/$$t.log; echo "fuzz: finding in $$t"; exit 1; }; \
	  grep -E "stat::number_of_executed_units" build/fuzz/$$t.log; \
	done

clean:
	rm -rf build

# payhsm - build, test and demo. `make demo` and `make test` are all a fresh Debian 12
# machine needs: missing Debian packages are installed first (as root), or the exact
# apt-get line is printed.
LUA      ?= lua5.4
CC       ?= cc
PKGS     := lua5.4 liblua5.4-dev libssl-dev lua-busted lua-cjson make gcc pkg-config \
            libmicrohttpd-dev libgnutls28-dev libhiredis-dev redis-server lua-sql-sqlite3 lua-sec lua-socket curl wrk luarocks rlwrap tmux procps \
            lighttpd lighttpd-modules-lua valgrind \
            nginx libnginx-mod-http-lua lua-resty-core lua-resty-lrucache luajit2 libluajit2-5.1-dev \
            nodejs npm
WARN     := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wcast-qual -Wstrict-prototypes \
            -Wmissing-prototypes -Wconversion -Wno-sign-conversion
CFLAGS   ?= -O2 -g
LUA_INC  ?= /usr/include/lua5.4
ALL_CFLAGS = $(CFLAGS) -fPIC -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) -I$(LUA_INC) -Icsrc
LDLIBS   := -lcrypto -pthread
# payhsm.core is every csrc/*.c but the two modules that link other libraries:
# payhsm.http (csrc/http.c and csrc/http_*.c, GNU libmicrohttpd) and payhsm.redis (csrc/redis.c, hiredis).
SRCS     := $(filter-out csrc/http.c csrc/http_%.c csrc/redis.c,$(wildcard csrc/*.c))
HTTP_SRCS := csrc/http.c $(wildcard csrc/http_*.c)
B        ?= build
OBJS     := $(patsubst csrc/%.c,$(B)/obj/%.o,$(SRCS))
CORE     := $(B)/payhsm/core.so
MODULES  := $(if $(wildcard csrc/http.c),$(B)/payhsm/http.so) $(if $(wildcard csrc/redis.c),$(B)/payhsm/redis.so)
BUSTED   := $(LUA) /usr/bin/busted

.PHONY: all deps core test demo bench bench-http load docs clean fuzz fuzz-long test-asan test-valgrind test-compat
all: deps
	@$(MAKE) --no-print-directory core

core: $(CORE) $(MODULES)

# tools/node: the official AWS SDKs for JavaScript (aws-sdk v2 and
# @aws-sdk/client-payment-cryptography v3) at the versions package-lock.json pins, for
# spec/aws_sdk_spec.lua (from npm's registry, at install time only). Node is told to trust
# the system's certificate store too (a registry reached through a TLS-inspecting proxy has
# its CA there). When the registry cannot be reached, everything else still builds and runs:
# the SDK specs then fail, saying the SDKs are missing.
deps:
	@sh tools/deps.sh $(PKGS)
	@[ -d tools/node/node_modules/aws-sdk ] && [ -d tools/node/node_modules/@aws-sdk/client-payment-cryptography ] \
	  || (cd tools/node && NODE_EXTRA_CA_CERTS=$${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt} \
	      npm ci --no-audit --no-fund --loglevel=error) \
	  || echo "make deps: npm ci in tools/node failed: the AWS SDK specs will fail until it succeeds" >&2

$(B)/obj/%.o: csrc/%.c $(wildcard csrc/*.h) | $(B)/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/obj:
	@mkdir -p $(B)/obj $(B)/payhsm

$(CORE): $(OBJS)
	@mkdir -p $(B)/payhsm
	$(CC) $(ALL_CFLAGS) -shared -o $@ $(OBJS) $(LDLIBS)

$(B)/payhsm/http.so: $(HTTP_SRCS) csrc/http.h csrc/compat.h | $(B)/obj
	$(CC) $(ALL_CFLAGS) -shared -o $@ $(HTTP_SRCS) -lmicrohttpd -lgnutls

$(B)/payhsm/redis.so: csrc/redis.c csrc/payhsm.h | $(B)/obj
	$(CC) $(ALL_CFLAGS) -I/usr/include/hiredis -shared -o $@ $< -lhiredis

test: all
	@$(BUSTED) -o tools/summary.lua

demo: all
	@$(LUA) tools/demo.lua

bench: all
	@$(MAKE) -s -C bench

# The simulators over HTTP(S) (their own server process, wrk and the Lua client): gateway and
# POS over TLS, AWS Payment Cryptography over plain HTTP with SigV4.
bench-http: all
	@$(LUA) bench/gateway_http.lua
	@$(LUA) bench/pos_http.lua
	@$(LUA) bench/aws_http.lua

# The API reference generated from the source comments.
docs:
	@$(LUA) tools/apidoc.lua > docs/API-reference.md
	@$(LUA) tools/apidoc.lua lua > lua/payhsm/apidoc.lua
	@$(LUA) tools/bad_input_table.lua > docs/bad-input.md

# Load: the gateway under 64 concurrent keep-alive TLS connections and the POS server under
# 16 device processes, 4 rounds each; fails on any error response or on server memory
# growth after the warm-up round. Then hostile clients (bench/load_hostile.lua): 1,000 hung TLS
# handshakes while a mutual-TLS client must be served within a second, and 400 bodies of
# 1 MiB before authentication that must move the server's memory by less than 20 MB.
load: all
	@$(LUA) bench/load.lua
	@$(LUA) bench/load_pos.lua
	@$(LUA) bench/load_hostile.lua

# ---- the whole spec suite under AddressSanitizer + UBSan -------------------------
# The modules are built into build-asan/ with the sanitizers; lua5.4 itself is not, so
# the ASan runtime is preloaded. The servers (bin/payhsm serve), workers and CLI runs the
# specs start run the same build with the runtime preloaded too (spec/support/interp.lua).
# Leak detection is off (the interpreter's own exit).
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

test-asan: all
	@$(MAKE) --no-print-directory B=build-asan CFLAGS="$(ASAN_FLAGS)" core
	@LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(BUSTED) --cpath="./build-asan/?.so" -o tools/summary.lua

# ---- other Luas a host might embed ------------------------------------------------
# The C modules build with the same strict warnings against Lua 5.1, 5.2, 5.3 and LuaJIT
# 2.1 (csrc/compat.h holds the C API differences, lua/payhsm/compat.lua the Lua ones),
# into build-5.1, build-5.2, build-5.3 and build-jit; then the whole spec suite runs
# under each interpreter, with the servers and scripts the specs start run by that same
# interpreter and build (spec/support/interp.lua; spec/support/compat.lua lets the specs'
# own 5.3 idioms run on 5.1/5.2). The last line sums the four runs.
# LuaJIT is OpenResty's luajit2 (same /usr/bin/luajit and headers): Debian's luajit
# conflicts with the lua-resty-core that nginx's Lua module needs (PKGS).
COMPAT_PKGS := lua5.1 lua5.2 lua5.3 luajit2 liblua5.1-0-dev liblua5.2-dev liblua5.3-dev libluajit2-5.1-dev
COMPAT_LUAS := 5.1 5.2 5.3 jit

test-compat: all
	@sh tools/deps.sh $(COMPAT_PKGS)
	@set -e; for v in $(COMPAT_LUAS); do \
	  inc=/usr/include/lua$$v; [ $$v = jit ] && inc=/usr/include/luajit-2.1; \
	  $(MAKE) --no-print-directory -s B=build-$$v LUA_INC=$$inc core >/dev/null; done
	@pass=0; fail=0; for v in $(COMPAT_LUAS); do \
	  lua=lua$$v; [ $$v = jit ] && lua=luajit; \
	  echo "== the spec suite under $$($$lua -v 2>&1 | head -1)"; \
	  out=$$($$lua /usr/bin/busted --cpath="./build-$$v/?.so" -o tools/summary.lua 2>&1); rc=$$?; \
	  echo "$$out" | tail -n 40; \
	  line=$$(echo "$$out" | grep -E '^tests: [0-9]+ passed, [0-9]+ failed' | tail -1); \
	  p=$$(echo "$$line" | sed -nE 's/^tests: ([0-9]+) passed.*/\1/p'); f=$$(echo "$$line" | sed -nE 's/.* ([0-9]+) failed.*/\1/p'); \
	  [ -n "$$p" ] || { p=0; f=1; }; [ $$rc = 0 ] || [ "$$f" != 0 ] || f=1; \
	  echo "Lua $$v: tests: $$p passed, $$f failed"; \
	  pass=$$((pass + p)); fail=$$((fail + f)); done; \
	echo "tests: $$pass passed, $$fail failed"; [ $$fail = 0 ]

# ---- the whole spec suite under valgrind memcheck ----------------------------------
# The busted process (Lua, payhsm.core/http/redis, OpenSSL, GnuTLS, libmicrohttpd) runs
# under memcheck; the processes the specs spawn (curl, redis-server, openssl, bin/payhsm
# serve) do not (no --trace-children; forked children are silent until they exec).
# Leaks are not checked (the interpreter's own exit). Any memcheck error fails the run.
# VALGRIND_SPECS narrows the run to some spec files. Default: every spec but
# spec/mupk_spec.lua, whose dozens of RSA-2048 key generations take over 5 minutes under
# memcheck; the C it reaches (csrc/rsa.c) runs under memcheck in spec/rsa_spec.lua.
VALGRIND_SPECS ?= $(filter-out spec/mupk_spec.lua,$(wildcard spec/*_spec.lua))
VALGRIND := valgrind --tool=memcheck --error-exitcode=1 --leak-check=no --errors-for-leak-kinds=none \
            --trace-children=no --child-silent-after-fork=yes --num-callers=30 \
            --suppressions=tools/valgrind.supp

test-valgrind: all
	@$(VALGRIND) $(BUSTED) -o tools/summary.lua $(VALGRIND_SPECS)

# ---- fuzzing (libFuzzer + AddressSanitizer + UBSan, clang from Debian) -------------
FUZZ_TARGETS := tr31_parse tr31_unwrap tr31_unwrap_valid pin_parse pin_block_valid envelope_open envelope_open_valid \
                rotation_restore hex rsa_public rsa_open ec_public
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

# Long runs: FUZZ_TIME seconds per target (default 600), then the inputs that add
# coverage are merged back into the committed corpus (fuzz/corpus/<target>, minimised by
# libFuzzer's -merge=1). Record each run in fuzz/RESULTS.md.
fuzz-long: all
	@sh tools/deps.sh clang
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=build/fuzz/%)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus-$$t; \
	  echo "fuzz $$t for $(or $(FUZZ_LONG_TIME),600)s"; \
	  build/fuzz/$$t -max_total_time=$(or $(FUZZ_LONG_TIME),600) -max_len=4096 -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/$$t- build/fuzz/corpus-$$t fuzz/corpus/$$t 2>build/fuzz/$$t.log \
	    || { tail -40 build/fuzz/$$t.log; echo "fuzz: finding in $$t"; exit 1; }; \
	  grep -E "DONE" build/fuzz/$$t.log | tail -1; \
	  build/fuzz/$$t -merge=1 fuzz/corpus/$$t build/fuzz/corpus-$$t 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new files" || true; \
	done

clean:
	rm -rf build

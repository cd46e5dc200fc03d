/*
 * http.c - payhsm.http: an embedded HTTP(S) server on GNU libmicrohttpd (TLS by GnuTLS)
 * with request handlers in Lua.
 *
 * The daemon has no thread of its own: Lua drives it from its main thread with
 * server:run_once(ms) (MHD_run_wait, external event loop), and every callback that
 * enters Lua runs on that thread, inside run_once. Keep-alive, chunked bodies and TLS
 * are libmicrohttpd's.
 *
 * Lua: local http = require "payhsm.http"
 *   srv = http.new{host = "127.0.0.1", port = 8443 (0: any free port), handler = function(req) return resp end,
 *     tls = {cert = PEM, key = PEM, client_ca = PEM} (texts, optional), max_body = bytes (default 1 MiB),
 *     connections = open connections at most (default 4000, within the open-file limit, raised to fit),
 *     per_address = open connections per client address (default 64),
 *     header_timeout = seconds from a connection's start, or its previous answer, to the end of a
 *                      request's headers, TLS handshake included (default 10),
 *     idle_timeout = seconds without traffic (default 30; alias timeout),
 *     single_headers = {"x-device-id", ...} (headers that must not repeat, besides authorization,
 *                      host, content-length, content-type),
 *     authorize = function(method, path, headers) -> true | status, body [, headers],
 *     refusal = function(status, reason, headers) -> body [, headers],
 *     quiet = true (no libmicrohttpd diagnostics), on_refused = function(method, path, status, reason),
 *     listen_fd = fd (a listening socket to serve instead of binding host:port: the workers of one port),
 *     on_error = function(message), bodies = {[400] =, [403] =, [413] =, [500] = json}}
 *   srv:port() -> the bound port;  srv:run_once([ms]) -> true;  srv:close()
 *   http.clock() -> seconds (a float) on a monotonic wall clock (CLOCK_MONOTONIC)
 *   req  = {method=, path=, query=, headers = {lower-case name = value}, body=,
 *           client_cert = {verified = true, subject = "..."} (mutual TLS only)}
 *   resp = {status = 200, headers = {name = value}, body = string}
 * Before any byte of a body is read (the first call of the access handler, on the headers
 * alone) the C layer answers a request whose path or query decodes to a control byte, or
 * that repeats a header that must be single (400); without a verified client certificate
 * under mutual TLS (403, see http_conn.c); whose Content-Length is over max_body (413); that
 * authorize refuses (its status and body). A chunked body outgrowing max_body is dropped as it
 * comes and answered 413; a handler that raises or returns no table gets 500 (the error to
 * on_error). Each such answer goes to on_refused(method, path, status, reason) (one log line)
 * and has the body refusal(status, reason, headers) gives (the system's error shape with the
 * request's ids), else bodies[status], else a generic {"error":{"code":"<status>","message":...}}.
 * TLS: 1.2 and 1.3 only, ECDHE key exchange and AEAD ciphers only (GnuTLS priorities).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <lauxlib.h>

#include "compat.h"
#include "http.h"

#define SERVER_MT "payhsm.http.Server"

/* TLS 1.2 and 1.3; on 1.2 only ECDHE with AES-GCM or ChaCha20-Poly1305 (a PCI scan's
 * expectation: no RSA key transport, no CBC). */
#define PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:" \
                   "-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD"

/* The statuses the C layer answers by itself, and their generic bodies. */
static const unsigned own_status[HTTP_OWN] = {400, 403, 413, 500};
static const char *const own_body[HTTP_OWN] = {
  "{\"error\":{\"code\":\"400\",\"message\":\"Bad Request\"}}",
  "{\"error\":{\"code\":\"403\",\"message\":\"client certificate required\"}}",
  "{\"error\":{\"code\":\"413\",\"message\":\"body too large\"}}",
  "{\"error\":{\"code\":\"500\",\"message\":\"Internal Server Error\"}}"};
enum { OWN_400, OWN_403, OWN_413, OWN_500 };
static const char *const default_single[] = {"authorization", "host", "content-length", "content-type"};

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  lua_State *L = cls;
  size_t i, n = strlen(key);
  char low[256];
  (void)kind;
  if (n >= sizeof low || !value) return MHD_YES;
  for (i = 0; i < n; i++) low[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] + 32 : key[i]);
  low[n] = 0;
  lua_pushstring(L, value);
  lua_setfield(L, -2, low);
  return MHD_YES;
}

static enum MHD_Result add_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  lua_State *L = cls;
  (void)kind;
  lua_pushstring(L, value ? value : "");
  lua_setfield(L, -2, key);
  return MHD_YES;
}

static void push_headers(lua_State *L, struct MHD_Connection *c) {
  lua_newtable(L);
  MHD_get_connection_values(c, MHD_HEADER_KIND, add_header, L);
}

/* Queues status with body (blen bytes) and the string pairs of the table at hidx (0: none). */
static enum MHD_Result queue(lua_State *L, struct MHD_Connection *c, unsigned status, const char *body, size_t blen,
                             int hidx) {
  struct MHD_Response *r = MHD_create_response_from_buffer(blen, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
  enum MHD_Result ret;
  if (!r) return MHD_NO;
  if (hidx && lua_istable(L, hidx)) {
    lua_pushnil(L);
    while (lua_next(L, hidx)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING)
        MHD_add_response_header(r, lua_tostring(L, -2), lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  if (!MHD_get_response_header(r, "Content-Type")) MHD_add_response_header(r, "Content-Type", "application/json");
  ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

/* Tells opts.on_refused about an answer the C layer gives itself (errors inside it are
 * dropped: a logger must not stop the answer). */
static void report_refusal(http_server *sv, const char *method, const char *url, unsigned status, const char *reason) {
  lua_State *L = sv->L;
  int top;
  if (!L || sv->on_refused_ref == LUA_NOREF) return;
  top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, sv->on_refused_ref);
  lua_pushstring(L, method ? method : "");
  lua_pushstring(L, url ? url : "");
  lua_pushinteger(L, (lua_Integer)status);
  lua_pushstring(L, reason);
  (void)lua_pcall(L, 4, 0, 0);
  lua_settop(L, top);
}

/* Answers one of the C layer's own statuses: reported, its body from opts.refusal (the
 * system's error shape with the request's ids), opts.bodies or the generic one. */
static enum MHD_Result send_own(http_server *sv, struct MHD_Connection *c, int which, const char *method,
                                const char *url, const char *reason) {
  lua_State *L = sv->L;
  const char *json = sv->bodies[which] ? sv->bodies[which] : own_body[which];
  size_t len = strlen(json);
  int top, hidx = 0;
  enum MHD_Result ret;
  report_refusal(sv, method, url, own_status[which], reason);
  if (!L) return queue(L, c, own_status[which], json, len, 0);
  top = lua_gettop(L);
  if (sv->refusal_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, sv->refusal_ref);
    lua_pushinteger(L, (lua_Integer)own_status[which]);
    lua_pushstring(L, reason);
    push_headers(L, c);
    if (lua_pcall(L, 3, 2, 0) == LUA_OK && lua_type(L, -2) == LUA_TSTRING) {
      json = lua_tolstring(L, -2, &len);
      hidx = lua_gettop(L);
    }
  }
  ret = queue(L, c, own_status[which], json, len, hidx);
  lua_settop(L, top);
  return ret;
}

/* Calls the Lua handler with the request table; queues its response. */
static enum MHD_Result respond(http_server *sv, struct MHD_Connection *c, const char *method, const char *url,
                               http_request *rc) {
  lua_State *L = sv->L;
  enum MHD_Result ret;
  int status = 200, top = lua_gettop(L);
  size_t blen = 0;
  const char *body, *subject = NULL;
  char buf[512];
  if (sv->mutual && !(subject = payhsm_http_client_verified(c, buf, sizeof buf)))
    return send_own(sv, c, OWN_403, method, url, "no client certificate that chains to client_ca");
  lua_rawgeti(L, LUA_REGISTRYINDEX, sv->handler_ref);
  lua_createtable(L, 0, 7);
  lua_pushstring(L, method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, url);
  lua_setfield(L, -2, "path");
  push_headers(L, c);
  lua_setfield(L, -2, "headers");
  lua_newtable(L);
  MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_query, L);
  lua_setfield(L, -2, "query");
  lua_pushlstring(L, rc->body ? rc->body : "", rc->len);
  lua_setfield(L, -2, "body");
  if (sv->mutual) {
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "verified");
    lua_pushstring(L, subject);
    lua_setfield(L, -2, "subject");
    lua_setfield(L, -2, "client_cert");
  }
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    if (sv->on_error_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, sv->on_error_ref);
      lua_pushvalue(L, -2);
      lua_pcall(L, 1, 0, 0);
    }
    lua_settop(L, top);
    return send_own(sv, c, OWN_500, method, url, "the handler raised an error");
  }
  if (!lua_istable(L, -1)) {
    lua_settop(L, top);
    return send_own(sv, c, OWN_500, method, url, "the handler returned no response table");
  }
  if (lua_getfield(L, -1, "status") == LUA_TNUMBER) status = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "body");
  body = lua_tolstring(L, -1, &blen);
  lua_getfield(L, -2, "headers");
  if (status < 100 || status > 599) status = 500;
  ret = queue(L, c, (unsigned)status, body ? body : "", body ? blen : 0, lua_gettop(L));
  lua_settop(L, top);
  return ret;
}

typedef struct {
  const http_server *sv;
  int count[HTTP_MAX_SINGLE + 4];
  const char *repeated;
} single_check;

static enum MHD_Result count_single(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  single_check *sc = cls;
  int i, n = sc->sv->n_single;
  (void)kind; (void)value;
  for (i = 0; i < 4 + n; i++) {
    const char *name = i < 4 ? default_single[i] : sc->sv->single[i - 4];
    if (strcasecmp(key, name) == 0 && ++sc->count[i] > 1) {
      sc->repeated = name;
      return MHD_NO;
    }
  }
  return MHD_YES;
}

/* The checks on the headers alone, before any body is read (see the header): MHD_YES to
 * go on reading the request, or the result of queueing the refusal (*done set). */
static enum MHD_Result on_headers(http_server *sv, struct MHD_Connection *c, const char *url, const char *method,
                                  http_request *rc, int *done) {
  single_check sc;
  const char *cl;
  char buf[512], reason[96];
  lua_State *L = sv->L;
  *done = 1;
  if (rc->raw_uri) return send_own(sv, c, OWN_400, method, rc->raw_uri, "the path or query decodes to a control byte");
  memset(&sc, 0, sizeof sc);
  sc.sv = sv;
  MHD_get_connection_values(c, MHD_HEADER_KIND, count_single, &sc);
  if (sc.repeated) {
    snprintf(reason, sizeof reason, "repeated %s header", sc.repeated);
    return send_own(sv, c, OWN_400, method, url, reason);
  }
  if (sv->mutual && !payhsm_http_client_verified(c, buf, sizeof buf))
    return send_own(sv, c, OWN_403, method, url, "no client certificate that chains to client_ca");
  cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
  if (cl && strtoull(cl, NULL, 10) > sv->max_body) return send_own(sv, c, OWN_413, method, url, "body over max_body");
  if (L && sv->authorize_ref != LUA_NOREF) {
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, sv->authorize_ref);
    lua_pushstring(L, method);
    lua_pushstring(L, url);
    push_headers(L, c);
    if (lua_pcall(L, 3, 3, 0) != LUA_OK) {
      lua_settop(L, top);
      return send_own(sv, c, OWN_500, method, url, "authorize raised an error");
    }
    if (lua_type(L, -3) == LUA_TNUMBER) {
      lua_Integer st = lua_tointeger(L, -3);
      size_t blen = 0;
      const char *b = lua_tolstring(L, -2, &blen);
      enum MHD_Result ret;
      if (st < 400 || st > 599) st = 500;
      report_refusal(sv, method, url, (unsigned)st, "refused before the body (authorize)");
      ret = queue(L, c, (unsigned)st, b ? b : "", b ? blen : 0, lua_gettop(L));
      lua_settop(L, top);
      return ret;
    }
    lua_settop(L, top);
  }
  *done = 0;
  return MHD_YES;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  http_server *sv = cls;
  http_request *rc = *con_cls;
  (void)version;
  if (!rc) return MHD_NO; /* no memory for it (uri_cb) */
  if (!rc->started) {     /* the headers are in: check them before any body */
    http_conn *cc = payhsm_http_conn(c);
    enum MHD_Result ret;
    int done;
    rc->started = 1;
    if (cc) cc->deadline = 0;
    ret = on_headers(sv, c, url, method, rc, &done);
    if (done) rc->too_big = 2; /* answered: any body that still comes is dropped */
    return ret;
  }
  if (*upload_size) { /* a piece of the body */
    if (!rc->too_big) {
      if (rc->len + *upload_size > sv->max_body) {
        rc->too_big = 1;
        free(rc->body);
        rc->body = NULL;
        rc->len = rc->cap = 0;
      } else {
        if (rc->len + *upload_size > rc->cap) {
          size_t cap = (rc->len + *upload_size) * 2;
          char *nb;
          if (cap > sv->max_body) cap = sv->max_body;
          if (!(nb = realloc(rc->body, cap))) return MHD_NO;
          rc->body = nb;
          rc->cap = cap;
        }
        memcpy(rc->body + rc->len, upload, *upload_size);
        rc->len += *upload_size;
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (rc->too_big == 2) return MHD_YES;
  if (rc->too_big) return send_own(sv, c, OWN_413, method, url, "body over max_body");
  return respond(sv, c, method, url, rc);
}

/* A request is over: its context freed, the connection's next header deadline set. */
static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t) {
  http_server *sv = cls;
  http_request *rc = *con_cls;
  http_conn *cc = payhsm_http_conn(c);
  (void)t;
  if (cc) cc->deadline = payhsm_http_now() + sv->header_timeout;
  if (rc) {
    free(rc->body);
    free(rc->raw_uri);
    free(rc);
    *con_cls = NULL;
  }
}

static char *dup_field(lua_State *L, int idx, const char *name, int required) {
  const char *s;
  size_t n;
  char *out;
  lua_getfield(L, idx, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (required) luaL_error(L, "http.new: tls.%s (PEM text) is required", name);
    return NULL;
  }
  s = luaL_checklstring(L, -1, &n);
  if (!(out = malloc(n + 1))) luaL_error(L, "out of memory");
  memcpy(out, s, n + 1);
  lua_pop(L, 1);
  return out;
}

static void free_server(http_server *sv) {
  int i;
  if (sv->d) MHD_stop_daemon(sv->d);
  sv->d = NULL;
  if (sv->key) { /* the private key: wipe before freeing */
    volatile char *p = sv->key;
    while (*p) *p++ = 0;
  }
  free(sv->cert); free(sv->key); free(sv->ca);
  sv->cert = sv->key = sv->ca = NULL;
  for (i = 0; i < HTTP_OWN; i++) {
    free(sv->bodies[i]);
    sv->bodies[i] = NULL;
  }
}

/* Raises on an option http.new does not know (a misspelt limit must not go unnoticed). */
static void check_options(lua_State *L) {
  static const char *const allowed[] = {"host", "port", "tls", "handler", "max_body", "timeout", "idle_timeout",
    "header_timeout", "connections", "per_address", "single_headers", "authorize", "refusal", "quiet",
    "on_refused", "on_error", "bodies", "listen_fd", NULL};
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    int i, ok = 0;
    if (lua_type(L, -2) == LUA_TSTRING)
      for (i = 0; allowed[i] && !ok; i++) ok = strcmp(lua_tostring(L, -2), allowed[i]) == 0;
    if (!ok) luaL_error(L, "http.new: unknown option '%s'", lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
    lua_pop(L, 1);
  }
}

/* A number option: default when nil; raises unless within [lo, hi]. */
static lua_Number num_opt(lua_State *L, const char *name, lua_Number def, lua_Number lo, lua_Number hi) {
  lua_Number v;
  lua_getfield(L, 1, name);
  v = luaL_optnumber(L, -1, def);
  lua_pop(L, 1);
  if (!(v >= lo && v <= hi)) luaL_error(L, "http.new: %s must be within %f and %f", name, lo, hi);
  return v;
}

/* http.new(opts) -> server; raises on bad options or when the port cannot be bound. */
static int http_new(lua_State *L) {
  http_server *sv;
  const char *host;
  lua_Integer port, listen_fd;
  unsigned flags = MHD_USE_ERROR_LOG | MHD_USE_EPOLL, conns, per_ip, idle;
  struct sockaddr_in addr;
  struct MHD_OptionItem ops[16];
  void *logcls;
  int n = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  check_options(L);
  lua_getfield(L, 1, "host");
  host = luaL_optstring(L, -1, "127.0.0.1");
  lua_getfield(L, 1, "port");
  port = luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "timeout");
  idle = (unsigned)num_opt(L, "idle_timeout", lua_isnil(L, -1) ? 30 : lua_tonumber(L, -1), 1, 86400);
  lua_pop(L, 3);
  lua_getfield(L, 1, "listen_fd");
  listen_fd = luaL_optinteger(L, -1, -1);
  lua_pop(L, 1);
  if (port < 0 || port > 65535) return luaL_error(L, "http.new: bad port");
  lua_getfield(L, 1, "connections");
  conns = payhsm_http_fit_connections(L, num_opt(L, "connections", 4000, 1, 1000000), !lua_isnil(L, -1));
  lua_pop(L, 1);
  per_ip = (unsigned)num_opt(L, "per_address", 64, 1, 1000000);
  sv = lua_newuserdatauv(L, sizeof *sv, 0);
  memset(sv, 0, sizeof *sv);
  sv->handler_ref = sv->on_error_ref = sv->on_refused_ref = sv->authorize_ref = sv->refusal_ref = LUA_NOREF;
  luaL_setmetatable(L, SERVER_MT);
  sv->max_body = (size_t)num_opt(L, "max_body", 1 << 20, 0, 1 << 30);
  sv->header_timeout = (double)num_opt(L, "header_timeout", 10, 0.01, 86400);
  lua_getfield(L, 1, "handler");
  luaL_checktype(L, -1, LUA_TFUNCTION);
  sv->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  {
    static const char *const fns[] = {"on_error", "on_refused", "authorize", "refusal"};
    int *refs[4] = {&sv->on_error_ref, &sv->on_refused_ref, &sv->authorize_ref, &sv->refusal_ref}, i;
    for (i = 0; i < 4; i++) {
      if (lua_getfield(L, 1, fns[i]) == LUA_TFUNCTION) *refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
      else lua_pop(L, 1);
    }
  }
  if (lua_getfield(L, 1, "single_headers") != LUA_TNIL) {
    int i, len;
    luaL_checktype(L, -1, LUA_TTABLE);
    len = (int)lua_rawlen(L, -1);
    if (len > HTTP_MAX_SINGLE) return luaL_error(L, "http.new: single_headers: %d names at most", HTTP_MAX_SINGLE);
    for (i = 1; i <= len; i++) {
      size_t sl;
      const char *s;
      lua_rawgeti(L, -1, i);
      s = luaL_checklstring(L, -1, &sl);
      if (sl == 0 || sl >= sizeof sv->single[0]) return luaL_error(L, "http.new: single_headers: bad name");
      memcpy(sv->single[sv->n_single++], s, sl + 1);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "bodies") != LUA_TNIL) {
    int i;
    luaL_checktype(L, -1, LUA_TTABLE);
    for (i = 0; i < HTTP_OWN; i++) {
      lua_rawgeti(L, -1, (lua_Integer)own_status[i]);
      if (!lua_isnil(L, -1)) {
        size_t len;
        const char *s = luaL_checklstring(L, -1, &len);
        if (!(sv->bodies[i] = malloc(len + 1))) return luaL_error(L, "out of memory");
        memcpy(sv->bodies[i], s, len + 1);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return luaL_error(L, "http.new: host must be an IPv4 address");
  if (listen_fd >= 0) ops[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, (intptr_t)listen_fd, NULL};
  else ops[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &addr};
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)idle, NULL};
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, (intptr_t)conns, NULL};
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)per_ip, NULL};
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed_cb, sv};
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)payhsm_http_uri_cb, sv};
  /* the per-connection context: header deadline, client certificate verdict, handshake log line */
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)payhsm_http_conn_cb, sv};
  lua_getfield(L, 1, "quiet");
  sv->quiet = lua_toboolean(L, -1);
  logcls = sv->quiet ? (void *)sv : NULL;
  lua_pop(L, 1);
  {
    int e = listen_fd >= 0 ? 0 : payhsm_http_probe_bind(&addr);
    if (e) {
      free_server(sv);
      return luaL_error(L, "http.new: cannot listen on %s:%d: %s%s", host, (int)port, strerror(e),
                        e == EADDRINUSE ? " (another process is serving that port)" :
                        e == EACCES ? " (ports below 1024 need privileges)" : "");
    }
  }
  if (lua_getfield(L, 1, "tls") == LUA_TTABLE) {
    int t = lua_gettop(L);
    flags |= MHD_USE_TLS;
    sv->cert = dup_field(L, t, "cert", 1);
    sv->key = dup_field(L, t, "key", 1);
    sv->ca = dup_field(L, t, "client_ca", 0);
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, sv->cert};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, sv->key};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)(uintptr_t)PRIORITIES};
    if (sv->ca) {
      ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, sv->ca};
      sv->mutual = 1; /* required at the handshake (http_conn.c) and checked per request */
    }
  }
  lua_pop(L, 1);
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
  sv->d = MHD_start_daemon(flags, 0, NULL, NULL, access_cb, sv,
                           /* the logger must be the first option, not inside the array */
                           MHD_OPTION_EXTERNAL_LOGGER, payhsm_http_log, logcls, MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
  if (!sv->d) {
    free_server(sv);
    return luaL_error(L, "http.new: cannot start the server on %s:%d%s", host, (int)port,
                      sv->cert ? " (check tls.cert and tls.key: a PEM certificate and its private key)" : "");
  }
  return 1;
}

static http_server *check_server(lua_State *L) {
  http_server *sv = luaL_checkudata(L, 1, SERVER_MT);
  return sv->d ? sv : (luaL_error(L, "http server is closed"), sv);
}

/* srv:port() -> bound port */
static int srv_port(lua_State *L) {
  http_server *sv = check_server(L);
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(sv->d, MHD_DAEMON_INFO_BIND_PORT);
  lua_pushinteger(L, di ? di->port : 0);
  return 1;
}

/* srv:run_once([ms]) -> true: waits for activity up to ms (default 1000; at most 1000, so
 * overdue headers are looked for at least once a second), serves it, then closes the
 * connections whose request headers are overdue (header_timeout). */
static int srv_run_once(lua_State *L) {
  http_server *sv = check_server(L);
  lua_Integer ms = luaL_optinteger(L, 2, 1000);
  enum MHD_Result r;
  if (ms > 1000) ms = 1000;
  sv->L = L;
  r = MHD_run_wait(sv->d, (int32_t)ms);
  payhsm_http_sweep(sv);
  sv->L = NULL;
  if (r != MHD_YES) return luaL_error(L, "http: event loop failed");
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:close(): stops the daemon, closes every connection (also __gc) */
static int srv_close(lua_State *L) {
  http_server *sv = luaL_checkudata(L, 1, SERVER_MT);
  int *refs[5] = {&sv->handler_ref, &sv->on_error_ref, &sv->on_refused_ref, &sv->authorize_ref, &sv->refusal_ref};
  int i;
  free_server(sv);
  for (i = 0; i < 5; i++) {
    if (*refs[i] != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, *refs[i]);
    *refs[i] = LUA_NOREF;
  }
  return 0;
}

/* http.clock() -> seconds on CLOCK_MONOTONIC (a float; differences are wall time) */
static int http_clock(lua_State *L) {
  lua_pushnumber(L, (lua_Number)payhsm_http_now());
  return 1;
}

int luaopen_payhsm_http(lua_State *L);
int luaopen_payhsm_http(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"port", srv_port}, {"run_once", srv_run_once}, {"close", srv_close}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"new", http_new}, {"clock", http_clock}, {NULL, NULL}};
  luaL_newmetatable(L, SERVER_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, srv_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, srv_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_pushstring(L, MHD_get_version());
  lua_setfield(L, -2, "mhd_version");
  return 1;
}

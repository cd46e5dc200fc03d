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
 *      local srv = http.new{host = "127.0.0.1", port = 8443 (0: any free port),
 *                           handler = function(req) return resp end,
 *                           tls = {cert = PEM, key = PEM, client_ca = PEM},   -- texts, optional
 *                           max_body = bytes (default 1 MiB), timeout = seconds (default 30),
 *                           quiet = true (drop libmicrohttpd's own diagnostics),
 *                           listen_fd = fd (a listening socket to serve instead of
 *                                       binding host:port; the workers of one port),
 *                           on_refused = function(method, path, status, reason),
 *                           bodies = {[403] = json, [413] = json, [500] = json}}
 *      srv:port() -> the bound port;  srv:run_once([ms]) -> true;  srv:close()
 *      http.clock() -> seconds (a float) on a monotonic wall clock (CLOCK_MONOTONIC),
 *                      for timing requests
 *   req  = {method=, path=, query=, headers = {lower-case name = value}, body=,
 *           client_cert = {verified = true, subject = "..."} (mutual TLS only)}
 *   resp = {status = 200, headers = {name = value}, body = string}
 * Mutual TLS: with tls.client_ca, GnuTLS asks for a client certificate; a request
 * whose connection presented none, or one that does not chain to client_ca, gets 403
 * before the handler runs. The chain is checked once per connection, at its first
 * request, and the verdict kept for the connection's later requests (conn_ctx below).
 * TLS versions below 1.2 are disabled (GnuTLS priorities).
 * A handler that raises gets a 500 with a generic JSON body; the error goes to
 * opts.on_error(message) when given. Bodies over max_body get 413. Every answer the C
 * layer gives itself (403 without a verified client certificate, 413, the 500 of a
 * failed handler) is reported to opts.on_refused(method, path, status, reason) when
 * given, so the server can log one line for it too. Their JSON bodies are the serving
 * system's (opts.bodies, one per status); a status without one gets a generic
 * {"error":{"code":"<status>","message":...}}.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include <lauxlib.h>
#include <lua.h>

#include "compat.h"

#define SERVER_MT "payhsm.http.Server"

typedef struct {
  struct MHD_Daemon *d;
  lua_State *L;      /* the state inside run_once (callbacks run there only) */
  int handler_ref;   /* registry refs */
  int on_error_ref;
  int on_refused_ref;
  int mutual;        /* client certificate required */
  int quiet;         /* no diagnostics on stderr */
  size_t max_body;
  char *cert, *key, *ca; /* PEM copies: MHD keeps pointers to them */
  char *bodies[3];       /* the JSON bodies of the 403, 413 and 500 the C layer gives */
} server;

/* The statuses the C layer answers by itself, and their generic bodies. */
static const unsigned own_status[3] = {403, 413, 500};
static const char *const own_body[3] = {
  "{\"error\":{\"code\":\"403\",\"message\":\"client certificate required\"}}",
  "{\"error\":{\"code\":\"413\",\"message\":\"body too large\"}}",
  "{\"error\":{\"code\":\"500\",\"message\":\"Internal Server Error\"}}"};

typedef struct {
  char *body;
  size_t len, cap;
  int too_big;
} request_ctx;

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

/* Answers one of the C layer's own statuses (own_status[which]) with the system's body. */
static enum MHD_Result send_plain(const server *sv, struct MHD_Connection *c, int which) {
  const char *json = sv->bodies[which] ? sv->bodies[which] : own_body[which];
  struct MHD_Response *r = MHD_create_response_from_buffer(strlen(json), (void *)(uintptr_t)json,
                                                           MHD_RESPMEM_MUST_COPY);
  unsigned status = own_status[which];
  enum MHD_Result ret;
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "application/json");
  ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

/* Tells opts.on_refused about an answer the C layer gives itself (errors inside it are
 * dropped: a logger must not stop the answer). */
static void report_refusal(server *sv, const char *method, const char *url, unsigned status, const char *reason) {
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

/* Per-connection verdict on the client certificate (mutual TLS only): made at the first
 * request of a connection, kept in MHD's socket context (allocated when the connection
 * starts, freed when it closes) and reused by the connection's later requests, so a
 * keep-alive connection pays for the chain check once, not per request. The verdict is
 * tied to the exact chain it was made for (a copy of its DER): a connection whose peer
 * chain changes (a renegotiation) is checked again, and so is one whose verdict is older
 * than VERDICT_MAX_AGE seconds, so a certificate that expires while its connection stays
 * busy stops being served. */
#define VERDICT_MAX_AGE 60

typedef struct {
  unsigned char *chain; /* the peer chain the verdict is for: (4-byte length, DER)* */
  size_t chain_len;
  double checked;       /* CLOCK_MONOTONIC seconds of the check */
  int verified;         /* 1: chains to client_ca */
  char subject[512];    /* the leaf's DN when verified */
  char peer[64];        /* "address:port" of the client, for the handshake log line */
  unsigned long diag;   /* the diagnostics count when the connection started */
} conn_ctx;

/* The last TLS diagnostic of libmicrohttpd (it runs on one thread: the one inside
 * run_once) and how many there were, so a connection that closes before its handshake
 * finished can be logged with its peer, a timestamp and the reason (conn_cb). */
static char tls_diag[256];
static unsigned long tls_diags;

/* "2026-01-31T12:00:00Z", the time format of the request lines. */
static void utc_stamp(char out[32]) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void conn_cb(void *cls, struct MHD_Connection *c, void **socket_context,
                    enum MHD_ConnectionNotificationCode toe) {
  conn_ctx *cc = *socket_context;
  server *sv = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    *socket_context = cc = calloc(1, sizeof(conn_ctx)); /* NULL (no memory): checked per request */
    if (cc && ci && ci->client_addr && ci->client_addr->sa_family == AF_INET) {
      const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)ci->client_addr;
      char a[INET_ADDRSTRLEN] = "?";
      inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
      snprintf(cc->peer, sizeof cc->peer, "%s:%u", a, (unsigned)ntohs(in->sin_port));
    }
    if (cc) cc->diag = tls_diags;
  } else if (cc) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_session_t tls = ci ? (gnutls_session_t)ci->tls_session : NULL;
    if (sv && !sv->quiet && tls && tls_diags != cc->diag &&
        gnutls_handshake_get_last_in(tls) != GNUTLS_HANDSHAKE_FINISHED) {
      char stamp[32];
      utc_stamp(stamp);
      fprintf(stderr, "%s TLS handshake from %s failed (%s)\n", stamp, cc->peer[0] ? cc->peer : "?", tls_diag);
      fflush(stderr);
    }
    free(cc->chain);
    free(cc);
    *socket_context = NULL;
  }
}

/* 1 when the remembered verdict is for exactly this chain */
static int same_chain(const conn_ctx *cc, const gnutls_datum_t *chain, unsigned n) {
  size_t off = 0;
  unsigned i;
  if (!cc->chain) return 0;
  for (i = 0; i < n; i++) {
    const unsigned char *p = cc->chain + off;
    size_t len;
    if (off + 4 > cc->chain_len) return 0;
    len = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
    if (len != chain[i].size || off + 4 + len > cc->chain_len || memcmp(p + 4, chain[i].data, len) != 0) return 0;
    off += 4 + len;
  }
  return off == cc->chain_len;
}

/* Remembers chain in cc (on no memory it remembers nothing: the next request checks again). */
static void keep_chain(conn_ctx *cc, const gnutls_datum_t *chain, unsigned n) {
  size_t total = 0, off = 0;
  unsigned i;
  free(cc->chain);
  cc->chain = NULL;
  cc->chain_len = 0;
  for (i = 0; i < n; i++) total += 4 + chain[i].size;
  if (!(cc->chain = malloc(total))) return;
  for (i = 0; i < n; i++) {
    unsigned char *p = cc->chain + off;
    size_t len = chain[i].size;
    p[0] = (unsigned char)(len >> 24); p[1] = (unsigned char)(len >> 16);
    p[2] = (unsigned char)(len >> 8); p[3] = (unsigned char)len;
    memcpy(p + 4, chain[i].data, len);
    off += 4 + len;
  }
  cc->chain_len = total;
}

/* Checks the chain now: 1 when it chains to client_ca; fills subject (the leaf's DN). */
static int check_chain(gnutls_session_t s, const gnutls_datum_t *chain, char *subject, size_t cap) {
  unsigned status = 0;
  gnutls_x509_crt_t crt;
  size_t len = cap;
  subject[0] = 0;
  if (gnutls_certificate_verify_peers2(s, &status) != 0 || status != 0) return 0;
  if (gnutls_x509_crt_init(&crt) == 0) {
    if (gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) == 0)
      gnutls_x509_crt_get_dn(crt, subject, &len);
    gnutls_x509_crt_deinit(crt);
  }
  return 1;
}

/* The connection's client certificate verdict: its DN (in the connection's context, or
 * in buf) when it presented a certificate that chains to client_ca, NULL otherwise.
 * A connection without a certificate is answered at once (nothing to check). */
static const char *client_verified(struct MHD_Connection *c, char *buf, size_t cap) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  const union MHD_ConnectionInfo *si;
  gnutls_session_t s;
  const gnutls_datum_t *chain;
  conn_ctx *cc;
  unsigned n = 0;
  double t;
  if (!ci || !(s = (gnutls_session_t)ci->tls_session)) return NULL;
  if (!(chain = gnutls_certificate_get_peers(s, &n)) || n == 0) return NULL;
  si = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  cc = si ? si->socket_context : NULL;
  if (!cc) return check_chain(s, chain, buf, cap) ? buf : NULL;
  t = mono_now();
  if (!same_chain(cc, chain, n) || t - cc->checked >= VERDICT_MAX_AGE || t < cc->checked) {
    cc->verified = check_chain(s, chain, cc->subject, sizeof cc->subject);
    cc->checked = t;
    keep_chain(cc, chain, n);
  }
  return cc->verified ? cc->subject : NULL;
}

/* Calls the Lua handler with the request table; queues its response. */
static enum MHD_Result respond(server *sv, struct MHD_Connection *c, const char *method, const char *url,
                               request_ctx *rc) {
  lua_State *L = sv->L;
  struct MHD_Response *r;
  enum MHD_Result ret;
  int status = 200, top = lua_gettop(L);
  size_t blen = 0;
  const char *body, *subject = NULL;
  char buf[512];
  if (sv->mutual && !(subject = client_verified(c, buf, sizeof buf))) {
    report_refusal(sv, method, url, 403, "no client certificate that chains to client_ca");
    return send_plain(sv, c, 0);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, sv->handler_ref);
  lua_createtable(L, 0, 7);
  lua_pushstring(L, method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, url);
  lua_setfield(L, -2, "path");
  lua_newtable(L);
  MHD_get_connection_values(c, MHD_HEADER_KIND, add_header, L);
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
    report_refusal(sv, method, url, 500, "the handler raised an error");
    return send_plain(sv, c, 2);
  }
  if (!lua_istable(L, -1)) {
    lua_settop(L, top);
    report_refusal(sv, method, url, 500, "the handler returned no response table");
    return send_plain(sv, c, 2);
  }
  if (lua_getfield(L, -1, "status") == LUA_TNUMBER) status = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "body");
  body = lua_tolstring(L, -1, &blen);
  if (!body) body = "";
  r = MHD_create_response_from_buffer(blen, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
  lua_pop(L, 1);
  if (!r) {
    lua_settop(L, top);
    return MHD_NO;
  }
  if (lua_getfield(L, -1, "headers") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING)
        MHD_add_response_header(r, lua_tostring(L, -2), lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
  if (status < 100 || status > 599) status = 500;
  ret = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  server *sv = cls;
  request_ctx *rc = *con_cls;
  (void)version;
  if (!rc) { /* headers are in: set up the body buffer */
    if (!(rc = calloc(1, sizeof *rc))) return MHD_NO;
    *con_cls = rc;
    return MHD_YES;
  }
  if (*upload_size) { /* a piece of the body */
    if (!rc->too_big) {
      if (rc->len + *upload_size > sv->max_body) {
        rc->too_big = 1;
      } else {
        if (rc->len + *upload_size > rc->cap) {
          size_t cap = (rc->len + *upload_size) * 2;
          char *nb = realloc(rc->body, cap);
          if (!nb) return MHD_NO;
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
  if (rc->too_big) {
    report_refusal(sv, method, url, 413, "body over max_body");
    return send_plain(sv, c, 1);
  }
  return respond(sv, c, method, url, rc);
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t) {
  request_ctx *rc = *con_cls;
  (void)cls; (void)c; (void)t;
  if (rc) {
    free(rc->body);
    free(rc);
    *con_cls = NULL;
  }
}

/* MHD's own diagnostics: TLS ones are kept for the connection's closing log line
 * (conn_cb: time, peer, reason); others go to stderr with a timestamp. Dropped with quiet. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
  char msg[256], stamp[32];
  size_t n;
  if (cls) return;
  vsnprintf(msg, sizeof msg, fmt, ap);
  n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '.' || msg[n - 1] == ' ')) msg[--n] = 0;
  if (strncmp(msg, "Error: ", 7) == 0) memmove(msg, msg + 7, strlen(msg + 7) + 1);
  if (strstr(msg, "andshake") || strstr(msg, "TLS") || strstr(msg, "GnuTLS") || strstr(msg, "certificate")) {
    memcpy(tls_diag, msg, sizeof tls_diag);
    tls_diags++;
    return;
  }
  utc_stamp(stamp);
  fprintf(stderr, "%s http: %s\n", stamp, msg);
}

/* 0 when host:port can be bound now; else errno (bind's reason for a busy port). */
static int probe_bind(const struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, e = 0;
  if (fd < 0) return errno;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as libmicrohttpd does */
  if (bind(fd, (const struct sockaddr *)(const void *)addr, sizeof *addr) != 0) e = errno;
  close(fd);
  return e;
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

static void free_server(server *sv) {
  int i;
  if (sv->d) MHD_stop_daemon(sv->d);
  sv->d = NULL;
  if (sv->key) { /* the private key: wipe before freeing */
    volatile char *p = sv->key;
    while (*p) *p++ = 0;
  }
  free(sv->cert); free(sv->key); free(sv->ca);
  sv->cert = sv->key = sv->ca = NULL;
  for (i = 0; i < 3; i++) {
    free(sv->bodies[i]);
    sv->bodies[i] = NULL;
  }
}

/* http.new(opts) -> server; raises on bad options or when the port cannot be bound. */
static int http_new(lua_State *L) {
  server *sv;
  const char *host;
  lua_Integer port, timeout, listen_fd;
  unsigned flags = MHD_USE_ERROR_LOG | MHD_USE_EPOLL;
  struct sockaddr_in addr;
  struct MHD_OptionItem ops[12];
  void *logcls;
  int n = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "host");
  host = luaL_optstring(L, -1, "127.0.0.1");
  lua_getfield(L, 1, "port");
  port = luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "timeout");
  timeout = luaL_optinteger(L, -1, 30);
  lua_getfield(L, 1, "listen_fd");
  listen_fd = luaL_optinteger(L, -1, -1);
  lua_pop(L, 4);
  if (port < 0 || port > 65535) return luaL_error(L, "http.new: bad port");
  sv = lua_newuserdatauv(L, sizeof *sv, 0);
  memset(sv, 0, sizeof *sv);
  sv->handler_ref = sv->on_error_ref = sv->on_refused_ref = LUA_NOREF;
  luaL_setmetatable(L, SERVER_MT);
  lua_getfield(L, 1, "max_body");
  sv->max_body = (size_t)luaL_optinteger(L, -1, 1 << 20);
  lua_pop(L, 1);
  lua_getfield(L, 1, "handler");
  luaL_checktype(L, -1, LUA_TFUNCTION);
  sv->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (lua_getfield(L, 1, "on_error") == LUA_TFUNCTION) sv->on_error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
  if (lua_getfield(L, 1, "on_refused") == LUA_TFUNCTION) sv->on_refused_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
  if (lua_getfield(L, 1, "bodies") != LUA_TNIL) {
    int i;
    luaL_checktype(L, -1, LUA_TTABLE);
    for (i = 0; i < 3; i++) {
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
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)timeout, NULL};
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed_cb, NULL};
  lua_getfield(L, 1, "quiet");
  logcls = lua_toboolean(L, -1) ? (void *)sv : NULL;
  sv->quiet = logcls != NULL;
  lua_pop(L, 1);
  {
    int e = listen_fd >= 0 ? 0 : probe_bind(&addr);
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
    /* TLS 1.2 and 1.3 only */
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                       (void *)(uintptr_t)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"};
    if (sv->ca) {
      ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, sv->ca};
      /* the per-connection client certificate verdict (conn_ctx) */
      sv->mutual = 1;
    }
    /* the per-connection context: the client certificate verdict, the handshake log line */
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)conn_cb, sv};
  }
  lua_pop(L, 1);
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
  sv->d = MHD_start_daemon(flags, 0, NULL, NULL, access_cb, sv,
                           /* the logger must be the first option, not inside the array */
                           MHD_OPTION_EXTERNAL_LOGGER, mhd_log, logcls, MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
  if (!sv->d) {
    free_server(sv);
    return luaL_error(L, "http.new: cannot start the server on %s:%d%s", host, (int)port,
                      sv->cert ? " (check tls.cert and tls.key: a PEM certificate and its private key)" : "");
  }
  return 1;
}

static server *check_server(lua_State *L) {
  server *sv = luaL_checkudata(L, 1, SERVER_MT);
  if (!sv->d) luaL_error(L, "http server is closed");
  return sv;
}

/* srv:port() -> bound port */
static int srv_port(lua_State *L) {
  server *sv = check_server(L);
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(sv->d, MHD_DAEMON_INFO_BIND_PORT);
  lua_pushinteger(L, di ? di->port : 0);
  return 1;
}

/* srv:run_once([ms]) -> true: waits up to ms (default 1000) for activity, serves it. */
static int srv_run_once(lua_State *L) {
  server *sv = check_server(L);
  lua_Integer ms = luaL_optinteger(L, 2, 1000);
  enum MHD_Result r;
  sv->L = L;
  r = MHD_run_wait(sv->d, (int32_t)ms);
  sv->L = NULL;
  if (r != MHD_YES) return luaL_error(L, "http: event loop failed");
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:close(): stops the daemon, closes every connection (also __gc) */
static int srv_close(lua_State *L) {
  server *sv = luaL_checkudata(L, 1, SERVER_MT);
  free_server(sv);
  if (sv->handler_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, sv->handler_ref);
  if (sv->on_error_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, sv->on_error_ref);
  if (sv->on_refused_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, sv->on_refused_ref);
  sv->handler_ref = sv->on_error_ref = sv->on_refused_ref = LUA_NOREF;
  return 0;
}

/* http.clock() -> seconds on CLOCK_MONOTONIC (a float; differences are wall time) */
static int http_clock(lua_State *L) {
  lua_pushnumber(L, (lua_Number)mono_now());
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

/*
 * http_conn.c - payhsm.http's connections: the client certificate required at the TLS
 * handshake and its verdict kept per connection, the deadline for a request's headers,
 * the raw request URI's check, and libmicrohttpd's diagnostics.
 *
 * Mutual TLS: with tls.client_ca every connection's GnuTLS session requires a client
 * certificate (GNUTLS_CERT_REQUIRE) and verifies it during the handshake for the TLS WWW
 * client purpose (RFC 5280 4.2.1.12: a certificate with an extended key usage must list
 * id-kp-clientAuth; one without any is accepted), so a client without one, with a
 * stranger's, with a serverAuth-only one (the server's own included) never completes the
 * handshake. The verdict is checked again at the first request (and kept for the
 * connection's later requests) before the handler sees anything.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include <gnutls/x509.h>

#include "http.h"

/* A verdict older than this is made again, so a certificate that expires while its
 * connection stays busy stops being served. */
#define VERDICT_MAX_AGE 60

/* The last TLS diagnostic of libmicrohttpd (it runs on one thread: the one inside
 * run_once) and how many there were, so a connection that closes before its handshake
 * finished can be logged with its peer, a timestamp and the reason. */
static char tls_diag[256];
static unsigned long tls_diags;

/* "2026-01-31T12:00:00Z", the time format of the request lines. */
void payhsm_http_stamp(char out[32]) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

double payhsm_http_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The purpose a client certificate must allow (checked in the handshake and per request). */
static gnutls_typed_vdata_st client_purpose[1] = {
  {GNUTLS_DT_KEY_PURPOSE_OID, (unsigned char *)(uintptr_t)GNUTLS_KP_TLS_WWW_CLIENT, 0}};

void payhsm_http_conn_cb(void *cls, struct MHD_Connection *c, void **socket_context,
                         enum MHD_ConnectionNotificationCode toe) {
  http_conn *cc = *socket_context;
  http_server *sv = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const union MHD_ConnectionInfo *ti = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_session_t tls = ti ? (gnutls_session_t)ti->tls_session : NULL;
    if (sv->mutual && tls) {
      gnutls_certificate_server_set_request(tls, GNUTLS_CERT_REQUIRE);
      gnutls_session_set_verify_cert2(tls, client_purpose, 1, 0);
    }
    *socket_context = cc = calloc(1, sizeof(http_conn));
    if (!cc) return; /* no memory: the connection goes without a deadline; checked per request */
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET) {
      const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)ci->client_addr;
      char a[INET_ADDRSTRLEN] = "?";
      inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
      snprintf(cc->peer, sizeof cc->peer, "%s:%u", a, (unsigned)ntohs(in->sin_port));
    }
    cc->diag = tls_diags;
    cc->c = c;
    cc->deadline = payhsm_http_now() + sv->header_timeout;
    cc->next = sv->conns;
    if (sv->conns) sv->conns->prev = cc;
    sv->conns = cc;
  } else if (cc) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_session_t tls = ci ? (gnutls_session_t)ci->tls_session : NULL;
    if (!sv->quiet && tls && tls_diags != cc->diag &&
        gnutls_handshake_get_last_in(tls) != GNUTLS_HANDSHAKE_FINISHED) {
      char stamp[32];
      payhsm_http_stamp(stamp);
      fprintf(stderr, "%s TLS handshake from %s failed (%s)\n", stamp, cc->peer[0] ? cc->peer : "?", tls_diag);
      fflush(stderr);
    }
    if (cc->prev) cc->prev->next = cc->next;
    else sv->conns = cc->next;
    if (cc->next) cc->next->prev = cc->prev;
    free(cc->chain);
    free(cc);
    *socket_context = NULL;
  }
}

/* The connection's context (NULL when it could not be allocated). */
http_conn *payhsm_http_conn(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *si = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return si ? si->socket_context : NULL;
}

/* Closes every connection whose request headers are overdue (a TLS handshake still under
 * way counts: it is before the headers). Returns how many it closed. */
unsigned payhsm_http_sweep(http_server *sv) {
  double now = payhsm_http_now();
  unsigned n = 0;
  http_conn *cc;
  for (cc = sv->conns; cc; cc = cc->next) {
    if (cc->deadline > 0 && now > cc->deadline && !cc->closing) {
      const union MHD_ConnectionInfo *fi = MHD_get_connection_info(cc->c, MHD_CONNECTION_INFO_CONNECTION_FD);
      if (fi) shutdown(fi->connect_fd, SHUT_RDWR); /* libmicrohttpd sees the end and closes it */
      cc->closing = 1;
      n++;
    }
  }
  return n;
}

/* 1 when the remembered verdict is for exactly this chain */
static int same_chain(const http_conn *cc, const gnutls_datum_t *chain, unsigned n) {
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
static void keep_chain(http_conn *cc, const gnutls_datum_t *chain, unsigned n) {
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

/* Checks the chain now: 1 when it chains to client_ca and the leaf allows the TLS WWW
 * client purpose; fills subject (the leaf's DN). */
static int check_chain(gnutls_session_t s, const gnutls_datum_t *chain, char *subject, size_t cap) {
  unsigned status = 0;
  gnutls_x509_crt_t crt;
  size_t len = cap;
  subject[0] = 0;
  if (gnutls_certificate_verify_peers(s, client_purpose, 1, &status) != 0 || status != 0) return 0;
  if (gnutls_x509_crt_init(&crt) == 0) {
    if (gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) == 0)
      gnutls_x509_crt_get_dn(crt, subject, &len);
    gnutls_x509_crt_deinit(crt);
  }
  return 1;
}

/* The connection's client certificate verdict: its DN (in the connection's context, or
 * in buf) when it presented a certificate that chains to client_ca, NULL otherwise. */
const char *payhsm_http_client_verified(struct MHD_Connection *c, char *buf, size_t cap) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  gnutls_session_t s;
  const gnutls_datum_t *chain;
  http_conn *cc;
  unsigned n = 0;
  double t;
  if (!ci || !(s = (gnutls_session_t)ci->tls_session)) return NULL;
  if (!(chain = gnutls_certificate_get_peers(s, &n)) || n == 0) return NULL;
  if (!(cc = payhsm_http_conn(c))) return check_chain(s, chain, buf, cap) ? buf : NULL;
  t = payhsm_http_now();
  if (!same_chain(cc, chain, n) || t - cc->checked >= VERDICT_MAX_AGE || t < cc->checked) {
    cc->verified = check_chain(s, chain, cc->subject, sizeof cc->subject);
    cc->checked = t;
    keep_chain(cc, chain, n);
  }
  return cc->verified ? cc->subject : NULL;
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* 1 when the raw request URI (path and query, as sent) holds or decodes to a control
 * byte (0x00-0x1F, 0x7F): libmicrohttpd would cut the path at a decoded NUL, so
 * "/import%00xyz" would reach the handler as "/import". */
static int uri_bad(const char *uri) {
  const char *p;
  for (p = uri; *p; p++) {
    int v = (unsigned char)*p;
    if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
      v = hexval(p[1]) * 16 + hexval(p[2]);
      p += 2;
    }
    if (v < 0x20 || v == 0x7f) return 1;
  }
  return 0;
}

/* MHD's own diagnostics: TLS ones are kept for the connection's closing log line (time,
 * peer, reason); others go to stderr with a timestamp. Dropped with quiet (cls set). */
void payhsm_http_log(void *cls, const char *fmt, va_list ap) {
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
  payhsm_http_stamp(stamp);
  fprintf(stderr, "%s http: %s\n", stamp, msg);
}

/* 0 when host:port can be bound now; else errno (bind's reason for a busy port). */
int payhsm_http_probe_bind(const struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, e = 0;
  if (fd < 0) return errno;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as libmicrohttpd does */
  if (bind(fd, (const struct sockaddr *)(const void *)addr, sizeof *addr) != 0) e = errno;
  close(fd);
  return e;
}

/* The connection cap: limits.connections within the open-file limit, which is raised (up
 * to its hard limit) to fit it and 64 more descriptors. Raises when it cannot fit. */
unsigned payhsm_http_fit_connections(lua_State *L, lua_Number want, int given) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return (unsigned)want;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want + 64) {
    rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= (rlim_t)want + 64) ? (rlim_t)want + 64 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want + 64) {
    if (given || rl.rlim_cur < 128)
      luaL_error(L, "http.new: connections %d does not fit the open-file limit %d (ulimit -n) less 64",
                 (int)want, (int)rl.rlim_cur);
    want = (lua_Number)(rl.rlim_cur - 64);
  }
  return (unsigned)want;
}


/* The request line is in (before its headers): the request's context (MHD's con_cls),
 * with the URI as sent kept when it decodes to a control byte (refused and logged as sent). */
void *payhsm_http_uri_cb(void *cls, const char *uri, struct MHD_Connection *c) {
  http_request *rc = calloc(1, sizeof *rc);
  (void)cls; (void)c;
  if (rc && uri_bad(uri)) {
    size_t n = strlen(uri) < 1024 ? strlen(uri) : 1024;
    if ((rc->raw_uri = malloc(n + 1))) {
      memcpy(rc->raw_uri, uri, n);
      rc->raw_uri[n] = 0;
    } else {
      free(rc);
      rc = NULL;
    }
  }
  return rc;
}

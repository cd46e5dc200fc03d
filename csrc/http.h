/*
 * http.h - private to payhsm.http (csrc/http.c, csrc/http_conn.c): the server, its
 * per-connection and per-request state.
 */
#ifndef PAYHSM_HTTP_H
#define PAYHSM_HTTP_H

#include <stdarg.h>
#include <stddef.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <lua.h>

#define HTTP_OWN 4 /* the statuses the C layer answers itself: 400, 403, 413, 500 */
#define HTTP_MAX_SINGLE 16

typedef struct http_conn http_conn;

typedef struct {
  struct MHD_Daemon *d;
  lua_State *L;      /* the state inside run_once (callbacks run there only) */
  int handler_ref;   /* registry refs */
  int on_error_ref;
  int on_refused_ref;
  int authorize_ref; /* authorize(method, path, headers) on the headers, before any body */
  int refusal_ref;   /* refusal(status, reason, headers) -> body [, headers]: the own answers' bodies */
  int mutual;        /* client certificate required */
  int quiet;         /* no diagnostics on stderr */
  size_t max_body;
  double header_timeout; /* seconds from a connection's start (or its previous answer) to a request's headers */
  http_conn *conns;      /* every open connection, for the header deadline sweep */
  char *cert, *key, *ca; /* PEM copies: MHD keeps pointers to them */
  char *bodies[HTTP_OWN];/* the JSON bodies of the 400, 403, 413 and 500 the C layer gives */
  char single[HTTP_MAX_SINGLE][64]; /* lower-case names of headers that must not repeat */
  int n_single;
} http_server;

/* Per connection (MHD's socket context): the client certificate verdict and the header deadline. */
struct http_conn {
  http_conn *prev, *next;
  struct MHD_Connection *c;
  double deadline;      /* CLOCK_MONOTONIC seconds by which the next request's headers must be in; 0: none */
  int closing;          /* shut down by the sweep */
  unsigned char *chain; /* the peer chain the verdict is for: (4-byte length, DER)* */
  size_t chain_len;
  double checked;       /* CLOCK_MONOTONIC seconds of the check */
  int verified;         /* 1: chains to client_ca with a client purpose */
  char subject[512];    /* the leaf's DN when verified */
  char peer[64];        /* "address:port" of the client, for the handshake log line */
  unsigned long diag;   /* the diagnostics count when the connection started */
};

/* Per request (MHD's con_cls), made when the request line arrives (the URI log callback). */
typedef struct {
  char *body;
  size_t len, cap;
  int too_big;
  int started;          /* the access handler has seen the headers */
  char *raw_uri;        /* the URI as sent (at most 1 KiB of it) when it decodes to a control byte */
} http_request;

double payhsm_http_now(void);
void payhsm_http_stamp(char out[32]);
void payhsm_http_log(void *cls, const char *fmt, va_list ap);
void payhsm_http_conn_cb(void *cls, struct MHD_Connection *c, void **socket_context,
                         enum MHD_ConnectionNotificationCode toe);
http_conn *payhsm_http_conn(struct MHD_Connection *c);
const char *payhsm_http_client_verified(struct MHD_Connection *c, char *buf, size_t cap);
unsigned payhsm_http_sweep(http_server *sv);
void *payhsm_http_uri_cb(void *cls, const char *uri, struct MHD_Connection *c);
int payhsm_http_probe_bind(const struct sockaddr_in *addr);
unsigned payhsm_http_fit_connections(lua_State *L, lua_Number want, int given);

#endif

/*
 * gateway_client.c - a keep-alive HTTPS load client that presents a client certificate,
 * for measuring `bin/payhsm serve gateway` under mutual TLS (wrk cannot present one).
 *
 *   gateway_client HOST PORT PATH AUTHORIZATION CAFILE CERT KEY CONNECTIONS SECONDS
 *
 * One thread per connection; each sends GET PATH (HTTP/1.1, keep-alive, the given
 * Authorization header) and reads the whole answer before the next, for SECONDS. The
 * server certificate is verified against CAFILE; TLS 1.2 or higher. Prints
 *   RESULT <requests> <seconds> <non-2xx> <errors> <client CPU seconds>
 * where errors are connection or protocol failures (a thread stops at its first) and the
 * CPU is this process's own (user + system, all threads, getrusage).
 * Built and run by bench/gateway_http.lua: cc -O2 ... -lssl -lcrypto -lpthread (in its own
 * folder, so the baselines bench/Makefile builds from bench/c, linked with -lcrypto only, leave it out).
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

typedef struct {
  SSL_CTX *ctx;
  const char *host, *request;
  int port;
  double until;
  long requests, non2xx, errors;
} worker;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static SSL *connect_tls(worker *w) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  SSL *ssl;
  if (fd < 0) return NULL;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)w->port);
  if (inet_pton(AF_INET, w->host, &a.sin_addr) != 1 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return NULL;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!(ssl = SSL_new(w->ctx))) {
    close(fd);
    return NULL;
  }
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) {
    SSL_free(ssl);
    close(fd);
    return NULL;
  }
  return ssl;
}

/* Reads one HTTP/1.1 answer (headers and a Content-Length body); returns its status or -1. */
static int read_answer(SSL *ssl, char *buf, size_t cap) {
  size_t have = 0, need = 0, head = 0;
  int status = -1;
  for (;;) {
    int n;
    if (head && have >= head + need) return status;
    if (have == cap) return -1;
    n = SSL_read(ssl, buf + have, (int)(cap - have));
    if (n <= 0) return -1;
    have += (size_t)n;
    if (!head) {
      char *end;
      buf[have < cap ? have : cap - 1] = 0;
      if ((end = strstr(buf, "\r\n\r\n"))) {
        const char *cl = strstr(buf, "Content-Length:");
        if (!cl) cl = strstr(buf, "content-length:");
        head = (size_t)(end - buf) + 4;
        need = cl && cl < end ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) return -1;
      }
    }
  }
}

static void *run(void *arg) {
  worker *w = arg;
  char buf[65536];
  size_t len = strlen(w->request);
  SSL *ssl = connect_tls(w);
  if (!ssl) {
    w->errors++;
    return NULL;
  }
  while (now() < w->until) {
    int status;
    if (SSL_write(ssl, w->request, (int)len) != (int)len || (status = read_answer(ssl, buf, sizeof buf)) < 0) {
      w->errors++;
      break;
    }
    w->requests++;
    if (status < 200 || status > 299) w->non2xx++;
  }
  SSL_shutdown(ssl);
  close(SSL_get_fd(ssl));
  SSL_free(ssl);
  return NULL;
}

int main(int argc, char **argv) {
  SSL_CTX *ctx;
  worker *ws;
  pthread_t *ts;
  char request[4096];
  int i, n;
  double seconds, t0, dt;
  long total = 0, non2xx = 0, errors = 0;
  struct rusage ru;
  if (argc != 10) {
    fprintf(stderr, "usage: %s HOST PORT PATH AUTHORIZATION CAFILE CERT KEY CONNECTIONS SECONDS\n", argv[0]);
    return 2;
  }
  n = atoi(argv[8]);
  seconds = atof(argv[9]);
  if (n < 1 || n > 256 || seconds <= 0) return 2;
  snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\n\r\n", argv[3], argv[1],
           argv[4]);
  ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
      SSL_CTX_load_verify_locations(ctx, argv[5], NULL) != 1 ||
      SSL_CTX_use_certificate_chain_file(ctx, argv[6]) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, argv[7], SSL_FILETYPE_PEM) != 1) {
    ERR_print_errors_fp(stderr);
    return 1;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  ws = calloc((size_t)n, sizeof *ws);
  ts = calloc((size_t)n, sizeof *ts);
  if (!ws || !ts) return 1;
  t0 = now();
  for (i = 0; i < n; i++) {
    ws[i] = (worker){ctx, argv[1], request, atoi(argv[2]), t0 + seconds, 0, 0, 0};
    pthread_create(&ts[i], NULL, run, &ws[i]);
  }
  for (i = 0; i < n; i++) {
    pthread_join(ts[i], NULL);
    total += ws[i].requests;
    non2xx += ws[i].non2xx;
    errors += ws[i].errors;
  }
  dt = now() - t0;
  getrusage(RUSAGE_SELF, &ru);
  printf("RESULT %ld %f %ld %ld %f\n", total, dt, non2xx, errors,
         (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6);
  free(ws);
  free(ts);
  SSL_CTX_free(ctx);
  return 0;
}

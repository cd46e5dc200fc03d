/* bench.h - timing helpers for the pure-C baselines. Each baseline makes the
 * same OpenSSL calls as the Lua API path (including hex in and out where the
 * API takes and returns hex) and prints "case_name ops_per_sec" lines. */
#ifndef PAYHSM_BENCH_H
#define PAYHSM_BENCH_H
#include <stdio.h>
#include <string.h>
#include <time.h>

static double bench_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the body (the variadic part) n times (after n/20 warm-up runs) and prints name and ops/s. */
#define BENCH(name, n, ...)                                   \
  do {                                                         \
    long bench_i_, bench_n_ = (n);                             \
    double bench_t0_;                                          \
    for (bench_i_ = 0; bench_i_ < bench_n_ / 20 + 1; bench_i_++) { __VA_ARGS__; } \
    bench_t0_ = bench_cpu();                                   \
    for (bench_i_ = 0; bench_i_ < bench_n_; bench_i_++) { __VA_ARGS__; } \
    printf("%s %.0f\n", name, (double)bench_n_ / (bench_cpu() - bench_t0_)); \
  } while (0)

static void bench_hex(const unsigned char *in, size_t len, char *out) {
  static const char d[] = "0123456789ABCDEF";
  size_t i;
  for (i = 0; i < len; i++) { out[2 * i] = d[in[i] >> 4]; out[2 * i + 1] = d[in[i] & 15]; }
  out[2 * len] = 0;
}

static int bench_unhex(const char *hex, unsigned char *out) {
  size_t i, n = strlen(hex) / 2;
  for (i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
    out[i] = (unsigned char)v;
  }
  return (int)n;
}

/* Fast hex decode as the API does it (table lookup), for the timed loops. */
static size_t bench_unhex_fast(const char *hex, size_t len, unsigned char *out) {
  static signed char t[256];
  size_t i;
  if (!t['1']) {
    for (i = 0; i < 256; i++) t[i] = -1;
    for (i = 0; i < 10; i++) t['0' + i] = (signed char)i;
    for (i = 0; i < 6; i++) { t['A' + i] = (signed char)(10 + i); t['a' + i] = (signed char)(10 + i); }
  }
  for (i = 0; i < len / 2; i++)
    out[i] = (unsigned char)((t[(unsigned char)hex[2 * i]] << 4) | t[(unsigned char)hex[2 * i + 1]]);
  return len / 2;
}
#endif

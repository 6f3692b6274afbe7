/*
 * Shared by ferry-proton-send and ferry-proton-recv: clocks, the message
 * stamp, argument parsing, a fixed-size latency histogram and the event
 * loop's error handling. Written for Ferry's benchmarks on the Qpid Proton C
 * proactor API (libqpid-proton-dev).
 *
 * The stamp is the same as ferry-load's (benches/src/bin/ferry-load/
 * payload.rs): the body of the message's one `data` section starts with
 * the send time (ns since the Unix epoch, big-endian u64) and an id (the
 * sequence number, big-endian u64; producer 0), padded with zeros to the
 * body size.
 */
#ifndef FERRY_PROTON_COMMON_H
#define FERRY_PROTON_COMMON_H

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <proton/condition.h>
#include <proton/connection.h>
#include <proton/event.h>
#include <proton/transport.h>

#define STAMP_SIZE 16
/* Bits of the id that hold the sequence number (as ferry-load). */
#define SEQ_BITS 40
/* Most messages a run may ask for: the receiver keeps one bit per message
 * to find duplicates, 125 MB at this bound. */
#define MAX_COUNT 1000000000ULL
/* Largest message either program reads or writes. */
#define MAX_SIZE (64u << 20)

static const char *prog;

static inline void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static inline void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static inline uint64_t now_ns(void) { /* wall clock: stamps compare across processes */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline uint64_t mono_ns(void) { /* intervals within one process */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static inline void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static inline uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* An unsigned decimal argument in [lo, hi]. */
static inline uint64_t parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi) {
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-') die("%s needs a number", opt);
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        die("%s: '%s' is not a whole number from %" PRIu64 " to %" PRIu64, opt, s, lo, hi);
    return v;
}

/* "amqp://host:port" or "host:port" to the "host:port" the proactor takes.
 * Credentials, paths and amqps are not supported. */
static inline const char *host_port(const char *url) {
    const char *p = url;
    if (!strncmp(p, "amqps://", 8)) die("%s: amqps is not supported", url);
    if (!strncmp(p, "amqp://", 7)) p += 7;
    if (strchr(p, '@') || strchr(p, '/') || !strchr(p, ':'))
        die("%s: expected amqp://HOST:PORT or HOST:PORT", url);
    return p;
}

/*
 * Latency histogram of fixed size: exact below 2^(SUB_BITS+1) µs, then
 * 2^SUB_BITS buckets per power of two (relative error under 1/128), up to
 * 2^40 µs (values above count in the last bucket; max is kept exactly).
 * Percentiles are reported as a bucket's highest value.
 */
#define SUB_BITS 7
#define SUB (1u << SUB_BITS)
#define BUCKETS (SUB + (40 - SUB_BITS) * SUB)

typedef struct {
    uint64_t n[BUCKETS];
    uint64_t count, max;
    double sum;
} hist_t;

static inline unsigned hist_index(uint64_t v) {
    if (v < SUB) return (unsigned)v;
    unsigned lg = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    if (lg >= 40) return BUCKETS - 1;
    unsigned shift = lg - SUB_BITS; /* v >> shift is in [SUB, 2 SUB) */
    return SUB + shift * SUB + (unsigned)((v >> shift) - SUB);
}

static inline uint64_t hist_top(unsigned i) { /* highest value of bucket i */
    if (i < SUB) return i;
    unsigned shift = (i - SUB) / SUB, off = (i - SUB) % SUB;
    return (((uint64_t)SUB + off) << shift) + ((1ULL << shift) - 1);
}

static inline void hist_add(hist_t *h, uint64_t us) {
    h->n[hist_index(us)]++;
    h->count++;
    h->sum += (double)us;
    if (us > h->max) h->max = us;
}

static inline uint64_t hist_pct(const hist_t *h, double pct) {
    if (!h->count) return 0;
    uint64_t want = (uint64_t)((double)h->count * pct / 100.0 + 0.5), seen = 0;
    if (want < 1) want = 1;
    for (unsigned i = 0; i < BUCKETS; i++) {
        seen += h->n[i];
        if (seen >= want) {
            uint64_t top = hist_top(i);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}

/* The error text of a condition, or NULL if none is set. */
static inline const char *condition_text(pn_condition_t *c, char *buf, size_t len) {
    if (!c || !pn_condition_is_set(c)) return NULL;
    const char *d = pn_condition_get_description(c);
    snprintf(buf, len, "%s%s%s", pn_condition_get_name(c), d ? ": " : "", d ? d : "");
    return buf;
}

/* A JSON string body: only what our own error texts can hold needs
 * escaping (quotes, backslashes, control characters). */
static inline void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

#endif

/*
 * ferry-proton-recv: an AMQP 1.0 receiver on the Qpid Proton C proactor,
 * written for Ferry's benchmarks (an independent client: none of Ferry's
 * code). Either connects to a router and attaches a receiving link from
 * ADDRESS (--url), or listens and takes the first connection's sending
 * link itself (--listen: the sender connects straight to it, no router).
 * Keeps CREDIT granted, accepts and settles every message, reads the send
 * stamp in each body for one-way latency (same machine clock), stops after
 * COUNT messages and prints one JSON line on stdout. See benches/README.md.
 */
#include "common.h"

#include <unistd.h>

#include <proton/delivery.h>
#include <proton/link.h>
#include <proton/listener.h>
#include <proton/proactor.h>
#include <proton/sasl.h>
#include <proton/session.h>

static const char usage[] =
    "usage: ferry-proton-recv (--url URL | --listen HOST:PORT) [options]\n"
    "  --url URL          connect to amqp://HOST:PORT (or HOST:PORT), receive from ADDRESS\n"
    "  --listen HOST:PORT listen; the first connection's sending link is received from\n"
    "  --address ADDR     link source address (with --url) [load]\n"
    "  --count N          stop after N messages [200000]\n"
    "  --credit N         credit kept granted: topped up to N when below N/2 [1000]\n"
    "  --timeout SECONDS  give up (exit 1) after this long [300]\n"
    "Prints \"ready\" on stderr once the link is attached (--url) or the listener\n"
    "is open (--listen), then one JSON object on stdout: received, unique,\n"
    "duplicates, foreign (no stamp, or a sequence number >= COUNT), missing,\n"
    "msgs_per_s and seconds (from the earliest send stamp to the last arrival),\n"
    "latency (µs, one-way from the send stamp), cpu_s, error.\n"
    "Exit status 0, or 1 on a connection/link error or a time-out, 2 on bad usage.\n";

typedef struct {
    pn_proactor_t *proactor;
    pn_listener_t *listener;
    pn_connection_t *conn;
    pn_link_t *link;
    /* Options. */
    const char *url, *listen, *address;
    uint64_t count, credit, timeout_ms;
    /* One delivery being read (a link delivers one at a time). */
    unsigned char *buf;
    size_t len, cap;
    /* What arrived. */
    uint64_t received, unique, duplicates, foreign, bytes;
    unsigned char *seen; /* one bit per sequence number below count */
    hist_t hist;
    uint64_t first_stamp, last_arrival; /* wall clock, ns */
    bool done, finished, ready;
    char error[512];
} app_t;

static void fail(app_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(app_t *a, const char *fmt, ...) {
    if (!a->error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(a->error, sizeof a->error, fmt, ap);
        va_end(ap);
    }
    pn_proactor_cancel_timeout(a->proactor);
    pn_proactor_disconnect(a->proactor, NULL);
}

static void ready(app_t *a, const char *what) {
    if (a->ready) return;
    a->ready = true;
    fprintf(stderr, "ready: %s\n", what);
    fflush(stderr);
}

/* The size of the AMQP value whose constructor is at p[i], or 0 if it does
 * not fit in n bytes or is not understood. */
static size_t value_size(const unsigned char *p, size_t n, size_t i, int depth) {
    if (i >= n || depth > 8) return 0;
    unsigned char c = p[i];
    size_t s;
    if (c == 0x00) { /* described: descriptor, then value */
        size_t d = value_size(p, n, i + 1, depth + 1);
        if (!d) return 0;
        size_t v = value_size(p, n, i + 1 + d, depth + 1);
        return v ? 1 + d + v : 0;
    }
    switch (c >> 4) {
    case 0x4: s = 1; break;
    case 0x5: s = 2; break;
    case 0x6: s = 3; break;
    case 0x7: s = 5; break;
    case 0x8: s = 9; break;
    case 0x9: s = 17; break;
    case 0xa: case 0xc: case 0xe:
        if (i + 2 > n) return 0;
        s = 2 + (size_t)p[i + 1];
        break;
    case 0xb: case 0xd: case 0xf:
        if (i + 5 > n) return 0;
        s = 5 + (((size_t)p[i + 1] << 24) | ((size_t)p[i + 2] << 16) | ((size_t)p[i + 3] << 8) |
                 (size_t)p[i + 4]);
        break;
    default: return 0;
    }
    return i + s <= n ? s : 0;
}

/* The body of the message's first data section: walks the sections
 * (header, annotations, properties... as any router may add them). */
static bool data_body(const unsigned char *p, size_t n, const unsigned char **body, size_t *len) {
    size_t i = 0;
    while (i + 3 <= n) {
        if (p[i] != 0x00) return false;
        size_t d = value_size(p, n, i + 1, 0);
        if (!d) return false;
        bool data = (p[i + 1] == 0x53 && p[i + 2] == 0x75) ||
                    (p[i + 1] == 0x80 && d == 9 && get_u64(p + i + 2) == 0x75);
        size_t v = i + 1 + d;
        if (data && v + 2 <= n && p[v] == 0xa0 && v + 2 + p[v + 1] <= n) {
            *body = p + v + 2;
            *len = p[v + 1];
            return true;
        }
        if (data && v + 5 <= n && p[v] == 0xb0) {
            size_t l = ((size_t)p[v + 1] << 24) | ((size_t)p[v + 2] << 16) |
                       ((size_t)p[v + 3] << 8) | (size_t)p[v + 4];
            if (v + 5 + l > n) return false;
            *body = p + v + 5;
            *len = l;
            return true;
        }
        size_t s = value_size(p, n, v, 0);
        if (!s) return false;
        i = v + s;
    }
    return false;
}

static void message(app_t *a, const unsigned char *p, size_t n) {
    uint64_t arrival = now_ns();
    const unsigned char *body;
    size_t len;
    a->received++;
    a->last_arrival = arrival;
    if (!data_body(p, n, &body, &len) || len < STAMP_SIZE) {
        a->foreign++;
        return;
    }
    a->bytes += len;
    uint64_t stamp = get_u64(body), id = get_u64(body + 8);
    uint64_t seq = id & ((1ULL << SEQ_BITS) - 1);
    if (id >> SEQ_BITS || seq >= a->count) {
        a->foreign++;
        return;
    }
    if (!a->first_stamp || stamp < a->first_stamp) a->first_stamp = stamp;
    hist_add(&a->hist, arrival > stamp ? (arrival - stamp) / 1000 : 0);
    unsigned char bit = (unsigned char)(1u << (seq & 7));
    if (a->seen[seq >> 3] & bit) {
        a->duplicates++;
    } else {
        a->seen[seq >> 3] |= bit;
        a->unique++;
    }
}

static void on_delivery(app_t *a, pn_delivery_t *d) {
    pn_link_t *l = pn_delivery_link(d);
    if (!pn_delivery_readable(d)) return;
    size_t pending = pn_delivery_pending(d);
    if (a->len + pending > MAX_SIZE) {
        fail(a, "a message of more than %u bytes", MAX_SIZE);
        return;
    }
    if (a->len + pending > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->len + pending) cap *= 2;
        unsigned char *b = realloc(a->buf, cap);
        if (!b) {
            fail(a, "out of memory");
            return;
        }
        a->buf = b;
        a->cap = cap;
    }
    ssize_t got = pn_link_recv(l, (char *)a->buf + a->len, pending);
    if (got > 0) a->len += (size_t)got;
    if (pn_delivery_partial(d)) return; /* more frames to come */
    if (pn_delivery_aborted(d)) {
        a->len = 0;
        pn_delivery_settle(d);
        return;
    }
    message(a, a->buf, a->len);
    a->len = 0;
    pn_delivery_update(d, PN_ACCEPTED);
    pn_delivery_settle(d); /* advances the link */
    if (a->received >= a->count && !a->done) {
        a->done = true;
        pn_proactor_cancel_timeout(a->proactor);
        pn_connection_close(a->conn);
        return;
    }
    int credit = pn_link_credit(l);
    if ((uint64_t)credit < a->credit / 2) pn_link_flow(l, (int)a->credit - credit);
}

static void check_condition(app_t *a, pn_condition_t *c, const char *what) {
    char buf[400];
    const char *text = condition_text(c, buf, sizeof buf);
    if (text) fail(a, "%s: %s", what, text);
}

static void open_connection(pn_connection_t *c) {
    char id[64];
    snprintf(id, sizeof id, "ferry-proton-recv-%ld", (long)getpid());
    pn_connection_set_container(c, id);
    pn_connection_open(c);
}

static void handle(app_t *a, pn_event_t *e) {
    switch (pn_event_type(e)) {
    case PN_LISTENER_OPEN:
        ready(a, a->listen);
        break;
    case PN_LISTENER_ACCEPT: {
        pn_listener_t *l = pn_event_listener(e);
        if (a->conn) break; /* one connection only; the listener is closing */
        pn_transport_t *t = pn_transport();
        pn_transport_set_server(t);
        pn_sasl_allowed_mechs(pn_sasl(t), "ANONYMOUS");
        pn_transport_require_auth(t, false);
        a->conn = pn_connection();
        pn_listener_accept2(l, a->conn, t);
        pn_listener_close(l);
        break;
    }
    case PN_LISTENER_CLOSE:
        if (!a->conn) check_condition(a, pn_listener_condition(pn_event_listener(e)), "listener");
        break;
    case PN_CONNECTION_INIT:
        if (a->url) { /* we connect: open everything ourselves */
            pn_connection_t *c = pn_event_connection(e);
            open_connection(c);
            pn_session_t *s = pn_session(c);
            pn_session_open(s);
            pn_link_t *l = pn_receiver(s, "ferry-proton-recv");
            pn_terminus_set_address(pn_link_source(l), a->address);
            pn_link_set_rcv_settle_mode(l, PN_RCV_FIRST);
            pn_link_open(l);
            pn_link_flow(l, (int)a->credit);
            a->link = l;
        }
        break;
    case PN_CONNECTION_REMOTE_OPEN:
        if (pn_connection_state(pn_event_connection(e)) & PN_LOCAL_UNINIT)
            open_connection(pn_event_connection(e));
        break;
    case PN_SESSION_REMOTE_OPEN: {
        pn_session_t *s = pn_event_session(e);
        if (pn_session_state(s) & PN_LOCAL_UNINIT) pn_session_open(s);
        break;
    }
    case PN_LINK_REMOTE_OPEN: {
        pn_link_t *l = pn_event_link(e);
        if (pn_link_state(l) & PN_LOCAL_UNINIT) { /* --listen: the sender's link */
            if (pn_link_is_sender(l) || a->link) {
                pn_condition_set_name(pn_link_condition(l), "amqp:not-allowed");
                pn_condition_set_description(pn_link_condition(l), "one sending link only");
                pn_link_close(l);
                break;
            }
            pn_terminus_copy(pn_link_target(l), pn_link_remote_target(l));
            pn_terminus_copy(pn_link_source(l), pn_link_remote_source(l));
            pn_link_set_rcv_settle_mode(l, PN_RCV_FIRST);
            pn_link_open(l);
            pn_link_flow(l, (int)a->credit);
            a->link = l;
        } else {
            ready(a, a->address);
        }
        break;
    }
    case PN_DELIVERY:
        on_delivery(a, pn_event_delivery(e));
        break;
    case PN_PROACTOR_TIMEOUT:
        if (!a->done)
            fail(a, "timed out after %.0f s with %" PRIu64 " of %" PRIu64 " messages",
                 (double)a->timeout_ms / 1e3, a->received, a->count);
        break;
    case PN_LINK_REMOTE_CLOSE:
        check_condition(a, pn_link_remote_condition(pn_event_link(e)), "link closed by peer");
        if (!a->done) fail(a, "link closed by peer after %" PRIu64 " messages", a->received);
        break;
    case PN_SESSION_REMOTE_CLOSE:
        check_condition(a, pn_session_remote_condition(pn_event_session(e)), "session closed by peer");
        if (!a->done) fail(a, "session closed by peer after %" PRIu64 " messages", a->received);
        break;
    case PN_CONNECTION_REMOTE_CLOSE:
        check_condition(a, pn_connection_remote_condition(pn_event_connection(e)),
                        "connection closed by peer");
        if (!a->done) fail(a, "connection closed by peer after %" PRIu64 " messages", a->received);
        pn_connection_close(pn_event_connection(e));
        break;
    case PN_TRANSPORT_CLOSED:
        if (!a->done) check_condition(a, pn_transport_condition(pn_event_transport(e)), "connection");
        if (!a->done) fail(a, "connection lost after %" PRIu64 " messages", a->received);
        break;
    case PN_PROACTOR_INACTIVE:
        a->finished = true;
        break;
    default:
        break;
    }
}

int main(int argc, char **argv) {
    prog = "ferry-proton-recv";
    app_t *a = calloc(1, sizeof *a);
    if (!a) die("out of memory");
    a->address = "load";
    a->count = 200000;
    a->credit = 1000;
    a->timeout_ms = 300000;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--url")) a->url = v, i++;
        else if (!strcmp(o, "--listen")) a->listen = v, i++;
        else if (!strcmp(o, "--address")) a->address = v, i++;
        else if (!strcmp(o, "--count")) a->count = parse_u64(o, v, 1, MAX_COUNT), i++;
        else if (!strcmp(o, "--credit")) a->credit = parse_u64(o, v, 1, 1000000), i++;
        else if (!strcmp(o, "--timeout")) a->timeout_ms = parse_u64(o, v, 1, 86400) * 1000, i++;
        else if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "%s: unknown option '%s'\n%s", prog, o, usage);
            return 2;
        }
        if (i >= argc) die("%s needs a value", o);
    }
    if (!a->url == !a->listen) die("give one of --url and --listen\n%s", usage);
    if (!a->address) die("--address needs a value");
    const char *addr = host_port(a->url ? a->url : a->listen);
    a->seen = calloc(a->count / 8 + 1, 1);
    if (!a->seen) die("out of memory for %" PRIu64 " messages", a->count);

    a->proactor = pn_proactor();
    if (!a->proactor) die("pn_proactor failed");
    pn_proactor_set_timeout(a->proactor, (pn_millis_t)a->timeout_ms);
    if (a->url) {
        a->conn = pn_connection();
        pn_proactor_connect2(a->proactor, a->conn, NULL, addr);
    } else {
        a->listener = pn_listener();
        pn_proactor_listen(a->proactor, a->listener, addr, 16);
    }
    while (!a->finished) {
        pn_event_batch_t *b = pn_proactor_wait(a->proactor);
        pn_event_t *e;
        while ((e = pn_event_batch_next(b))) handle(a, e);
        pn_proactor_done(a->proactor, b);
    }

    double secs = a->first_stamp && a->last_arrival > a->first_stamp
                      ? (double)(a->last_arrival - a->first_stamp) / 1e9
                      : 0;
    const hist_t *h = &a->hist;
    printf("{\"program\":\"ferry-proton-recv\",\"mode\":\"%s\",\"address\":", a->url ? "connect" : "listen");
    json_string(stdout, a->address);
    printf(",\"count\":%" PRIu64 ",\"credit\":%" PRIu64 ",\"received\":%" PRIu64
           ",\"unique\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"foreign\":%" PRIu64
           ",\"missing\":%" PRIu64 ",\"msgs_per_s\":%.1f,\"mb_per_s\":%.2f,\"seconds\":%.6f"
           ",\"latency\":{\"p50_us\":%" PRIu64 ",\"p90_us\":%" PRIu64 ",\"p99_us\":%" PRIu64
           ",\"p999_us\":%" PRIu64 ",\"max_us\":%" PRIu64 ",\"mean_us\":%.1f,\"samples\":%" PRIu64
           "},\"cpu_s\":%.3f,\"error\":",
           a->count, a->credit, a->received, a->unique, a->duplicates, a->foreign,
           a->count - a->unique, secs > 0 ? (double)a->received / secs : 0.0,
           secs > 0 ? (double)a->bytes / secs / 1e6 : 0.0, secs, hist_pct(h, 50), hist_pct(h, 90),
           hist_pct(h, 99), hist_pct(h, 99.9), h->max, h->count ? h->sum / (double)h->count : 0.0,
           h->count, cpu_seconds());
    if (a->error[0]) json_string(stdout, a->error);
    else fputs("null", stdout);
    fputs("}\n", stdout);
    if (a->error[0]) fprintf(stderr, "%s: %s\n", prog, a->error);
    pn_proactor_free(a->proactor);
    free(a->seen);
    free(a->buf);
    int rc = a->error[0] ? 1 : 0;
    free(a);
    return rc;
}

/*
 * ferry-proton-send: an AMQP 1.0 load client on the Qpid Proton C proactor,
 * written for Ferry's benchmarks (an independent client: none of Ferry's
 * code). Opens one connection, one session and one sending link to
 * ADDRESS, sends COUNT messages of SIZE body bytes as fast as credit and
 * the window of unsettled deliveries allow (closed loop) or on a fixed
 * schedule (--rate, open loop), records every delivery's outcome and prints
 * one JSON line on stdout. See benches/README.md.
 */
#include "common.h"

#include <unistd.h>

#include <proton/delivery.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/proactor.h>
#include <proton/session.h>

static const char usage[] =
    "usage: ferry-proton-send [options]\n"
    "  --url URL          amqp://HOST:PORT (or HOST:PORT) to connect to [amqp://127.0.0.1:5672]\n"
    "  --address ADDR     link target address [load]\n"
    "  --count N          messages to send [200000]\n"
    "  --size BYTES       body size, at least 16 (the stamp) [100]\n"
    "  --window N         most unsettled deliveries in flight [1000]\n"
    "  --presettled       send pre-settled (at most once) instead of unsettled\n"
    "  --rate R           open loop: send on a fixed schedule of R msg/s; each\n"
    "                     message is stamped with its intended send time [0: closed loop]\n"
    "  --timeout SECONDS  give up (exit 1) after this long [300]\n"
    "Prints one JSON object on stdout: sent, accepted, rejected, released,\n"
    "modified, unsettled, msgs_per_s (outcomes, or pre-settled sends, per second\n"
    "from the first credit to the last outcome), seconds, cpu_s, error.\n"
    "Exit status 0, or 1 on a connection/link error or a time-out, 2 on bad usage.\n";

typedef struct {
    pn_proactor_t *proactor;
    pn_connection_t *conn;
    pn_link_t *link;
    /* The encoded message, built once; each send rewrites the stamp at
     * body_off. */
    unsigned char *msg;
    size_t msg_len, body_off;
    /* Options. */
    const char *url, *address;
    uint64_t count, size, window, rate, timeout_ms;
    bool presettled;
    /* Progress. */
    uint64_t sent, settled, accepted, rejected, released, modified, other;
    bool started, done, finished;
    uint64_t t0, t1;  /* monotonic: first credit, last outcome */
    uint64_t wall0;   /* wall clock at the first credit (open-loop schedule) */
    uint64_t deadline; /* monotonic */
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

/* Encode the message once with Proton: one data section of `size` bytes. */
static void build_message(app_t *a) {
    char *body = calloc(1, a->size);
    if (!body) die("out of memory");
    pn_message_t *m = pn_message();
    pn_message_set_inferred(m, true); /* binary body -> data section */
    pn_data_put_binary(pn_message_body(m), pn_bytes(a->size, body));
    size_t cap = a->size + 64;
    a->msg = malloc(cap);
    if (!a->msg) die("out of memory");
    size_t len = cap;
    int rc = pn_message_encode(m, (char *)a->msg, &len);
    if (rc) die("pn_message_encode: %s", pn_code(rc));
    /* The body is the last `size` bytes of the encoding. */
    if (len < a->size + 4 || memcmp(a->msg + len - a->size, body, a->size))
        die("unexpected message encoding");
    a->msg_len = len;
    a->body_off = len - a->size;
    pn_message_free(m);
    free(body);
}

static uint64_t intended_ns(const app_t *a, uint64_t i) {
    return a->wall0 + (uint64_t)((double)i * 1e9 / (double)a->rate);
}

static void finish(app_t *a) {
    a->done = true;
    a->t1 = mono_ns();
    pn_proactor_cancel_timeout(a->proactor);
    pn_connection_close(a->conn);
}

static void send_more(app_t *a) {
    pn_link_t *l = a->link;
    if (a->done || !l || pn_link_credit(l) <= 0) return;
    if (!a->started) {
        a->started = true;
        a->t0 = mono_ns();
        a->wall0 = now_ns();
        if (a->rate) pn_proactor_set_timeout(a->proactor, 1);
    }
    uint64_t now = a->rate ? now_ns() : 0;
    while (a->sent < a->count && pn_link_credit(l) > 0 &&
           (a->presettled || a->sent - a->settled < a->window)) {
        uint64_t stamp;
        if (a->rate) {
            stamp = intended_ns(a, a->sent);
            if (stamp > now) break;
        } else {
            stamp = now_ns();
        }
        unsigned char tag[8];
        put_u64(a->msg + a->body_off, stamp);
        put_u64(a->msg + a->body_off + 8, a->sent & ((1ULL << SEQ_BITS) - 1));
        put_u64(tag, a->sent);
        pn_delivery_t *d = pn_delivery(l, pn_dtag((const char *)tag, sizeof tag));
        ssize_t n = pn_link_send(l, (const char *)a->msg, a->msg_len);
        if (n != (ssize_t)a->msg_len) {
            fail(a, "pn_link_send: %s", pn_code((int)n));
            return;
        }
        pn_link_advance(l);
        if (a->presettled) pn_delivery_settle(d);
        a->sent++;
    }
    if (a->presettled && a->sent == a->count) finish(a);
}

static void outcome(app_t *a, pn_delivery_t *d) {
    if (!pn_delivery_updated(d)) return;
    uint64_t state = pn_delivery_remote_state(d);
    switch (state) {
    case PN_ACCEPTED: a->accepted++; break;
    case PN_REJECTED: a->rejected++; break;
    case PN_RELEASED: a->released++; break;
    case PN_MODIFIED: a->modified++; break;
    default:
        if (!pn_delivery_settled(d)) return; /* not terminal yet */
        a->other++;
    }
    pn_delivery_settle(d);
    a->settled++;
    if (a->settled == a->count && !a->done) finish(a);
}

static void check_condition(app_t *a, pn_condition_t *c, const char *what) {
    char buf[400];
    const char *text = condition_text(c, buf, sizeof buf);
    if (text) fail(a, "%s: %s", what, text);
}

static void handle(app_t *a, pn_event_t *e) {
    switch (pn_event_type(e)) {
    case PN_CONNECTION_INIT: {
        pn_connection_t *c = pn_event_connection(e);
        char id[64];
        snprintf(id, sizeof id, "ferry-proton-send-%ld", (long)getpid());
        pn_connection_set_container(c, id);
        pn_connection_open(c);
        pn_session_t *s = pn_session(c);
        pn_session_open(s);
        pn_link_t *l = pn_sender(s, "ferry-proton-send");
        pn_terminus_set_address(pn_link_target(l), a->address);
        pn_link_set_snd_settle_mode(l, a->presettled ? PN_SND_SETTLED : PN_SND_UNSETTLED);
        pn_link_open(l);
        a->link = l;
        break;
    }
    case PN_LINK_FLOW:
    case PN_CONNECTION_WAKE:
        send_more(a);
        break;
    case PN_DELIVERY:
        outcome(a, pn_event_delivery(e));
        send_more(a);
        break;
    case PN_PROACTOR_TIMEOUT:
        if (a->done || a->error[0]) break;
        if (mono_ns() >= a->deadline) {
            fail(a, "timed out after %.0f s: %" PRIu64 " sent, %" PRIu64 " outcomes",
                 (double)a->timeout_ms / 1e3, a->sent, a->settled);
        } else if (a->started) { /* open loop: a tick */
            pn_connection_wake(a->conn);
            pn_proactor_set_timeout(a->proactor, 1);
        } else { /* early: wait out the rest */
            pn_proactor_set_timeout(a->proactor,
                                    (pn_millis_t)((a->deadline - mono_ns()) / 1000000 + 1));
        }
        break;
    case PN_LINK_REMOTE_CLOSE:
        check_condition(a, pn_link_remote_condition(pn_event_link(e)), "link closed by peer");
        if (!a->done) fail(a, "link closed by peer after %" PRIu64 " outcomes", a->settled);
        break;
    case PN_SESSION_REMOTE_CLOSE:
        check_condition(a, pn_session_remote_condition(pn_event_session(e)), "session closed by peer");
        if (!a->done) fail(a, "session closed by peer after %" PRIu64 " outcomes", a->settled);
        break;
    case PN_CONNECTION_REMOTE_CLOSE:
        check_condition(a, pn_connection_remote_condition(pn_event_connection(e)),
                        "connection closed by peer");
        if (!a->done) fail(a, "connection closed by peer after %" PRIu64 " outcomes", a->settled);
        pn_connection_close(pn_event_connection(e));
        break;
    case PN_TRANSPORT_CLOSED:
        if (!a->done) check_condition(a, pn_transport_condition(pn_event_transport(e)), "connection");
        if (!a->done) fail(a, "connection lost after %" PRIu64 " outcomes", a->settled);
        break;
    case PN_PROACTOR_INACTIVE:
        a->finished = true;
        break;
    default:
        break;
    }
}

int main(int argc, char **argv) {
    prog = "ferry-proton-send";
    app_t *a = calloc(1, sizeof *a);
    if (!a) die("out of memory");
    a->url = "amqp://127.0.0.1:5672";
    a->address = "load";
    a->count = 200000;
    a->size = 100;
    a->window = 1000;
    a->timeout_ms = 300000;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--url")) a->url = v, i++;
        else if (!strcmp(o, "--address")) a->address = v, i++;
        else if (!strcmp(o, "--count")) a->count = parse_u64(o, v, 1, MAX_COUNT), i++;
        else if (!strcmp(o, "--size")) a->size = parse_u64(o, v, STAMP_SIZE, MAX_SIZE), i++;
        else if (!strcmp(o, "--window")) a->window = parse_u64(o, v, 1, 1000000), i++;
        else if (!strcmp(o, "--rate")) a->rate = parse_u64(o, v, 0, 100000000), i++;
        else if (!strcmp(o, "--timeout")) a->timeout_ms = parse_u64(o, v, 1, 86400) * 1000, i++;
        else if (!strcmp(o, "--presettled")) a->presettled = true;
        else if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "%s: unknown option '%s'\n%s", prog, o, usage);
            return 2;
        }
        if (i >= argc) die("%s needs a value", o);
    }
    if (!a->url || !a->address) die("--url and --address need a value");
    const char *addr = host_port(a->url);
    build_message(a);

    a->proactor = pn_proactor();
    if (!a->proactor) die("pn_proactor failed");
    a->conn = pn_connection();
    a->deadline = mono_ns() + a->timeout_ms * 1000000ULL;
    pn_proactor_set_timeout(a->proactor, (pn_millis_t)a->timeout_ms);
    pn_proactor_connect2(a->proactor, a->conn, NULL, addr);
    while (!a->finished) {
        pn_event_batch_t *b = pn_proactor_wait(a->proactor);
        pn_event_t *e;
        while ((e = pn_event_batch_next(b))) handle(a, e);
        pn_proactor_done(a->proactor, b);
    }

    double secs = a->started ? (double)((a->t1 ? a->t1 : mono_ns()) - a->t0) / 1e9 : 0;
    uint64_t moved = a->presettled ? a->sent : a->settled;
    printf("{\"program\":\"ferry-proton-send\",\"url\":");
    json_string(stdout, a->url);
    printf(",\"address\":");
    json_string(stdout, a->address);
    printf(",\"settle\":\"%s\",\"size\":%" PRIu64 ",\"count\":%" PRIu64 ",\"window\":%" PRIu64
           ",\"rate\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"accepted\":%" PRIu64
           ",\"rejected\":%" PRIu64 ",\"released\":%" PRIu64 ",\"modified\":%" PRIu64
           ",\"other\":%" PRIu64 ",\"unsettled\":%" PRIu64
           ",\"msgs_per_s\":%.1f,\"seconds\":%.6f,\"cpu_s\":%.3f,\"error\":",
           a->presettled ? "presettled" : "unsettled", a->size, a->count, a->window, a->rate,
           a->sent, a->accepted, a->rejected, a->released, a->modified, a->other,
           a->presettled ? 0 : a->sent - a->settled, secs > 0 ? (double)moved / secs : 0.0, secs,
           cpu_seconds());
    if (a->error[0]) json_string(stdout, a->error);
    else fputs("null", stdout);
    fputs("}\n", stdout);
    if (a->error[0]) fprintf(stderr, "%s: %s\n", prog, a->error);
    pn_proactor_free(a->proactor);
    free(a->msg);
    int rc = a->error[0] ? 1 : 0;
    free(a);
    return rc;
}

#!/usr/bin/python3
"""Chaos client for a mesh of Ferry routers in containers (deploy/chaos.sh).

Runs real AMQP 1.0 clients (Qpid Proton) from the host against the routers'
published ports while a fault schedule kills, restarts, disconnects and
reconnects the routers' containers, then checks the books:

- one at-least-once producer (unsettled deliveries), homed on the first
  router given; when its connection drops it reconnects (its home router
  first, then the others) and resends every delivery that was not settled,
  and it resends whatever comes back `released` or `modified`;
- one consumer on each other router, accepting everything; it reconnects to
  its own router only;
- at the end: sent (transfers, resends included), unique messages,
  accepted, received (distinct), deliveries (all), duplicates, released,
  modified, rejected, lost (accepted by the producer, never received by any
  consumer) and unresolved (sent, never accepted); per fault, the time until
  traffic resumed and until the router was back.

Exit status 0 when nothing accepted was lost, every message was accepted in
the end, and traffic crossed the mesh; 1 otherwise; 2 for a usage error.

Usage (chaos.sh fills this in from the compose project):

  chaos.py --router A=127.0.0.1:35681,CONTAINER,SERVICE \
           --router B=... --router C=... --network NETWORK [--json FILE]

The first router is the producer's home; the others get a consumer each.
Needs python3-qpid-proton (Debian) and the docker CLI.
"""

import argparse
import collections
import json
import socket
import subprocess
import sys
import threading
import time

from proton import Delivery, Message
from proton.handlers import MessagingHandler
from proton.reactor import Container

ADDRESS = "chaos"
HEARTBEAT = 2.0  # seconds: AMQP idle timeout asked of the routers
CONNECT_TIMEOUT = 3.0  # seconds for a connection attempt to open its link
RECONNECT_DELAY = 0.2  # seconds between attempts
CONSUMER_CREDIT = 1000
GAP = 8.0  # seconds from a repair to the next fault
now = time.monotonic


def log(msg):
    print("chaos: %7.2fs %s" % (now() - T0, msg), flush=True)


T0 = now()
DISCONNECTS = []  # (time, client name): connections lost


class Client(MessagingHandler):
    """A connection that reconnects by itself, with one link."""

    def __init__(self, name, urls, prefetch):
        super().__init__(prefetch=prefetch, auto_accept=False, auto_settle=True)
        self.name = name
        self.urls = urls
        self.attempt = 0  # index into urls of the next attempt
        self.conn = None
        self.link = None
        self.gen = 0  # the current connection's number (proton's objects are
        # re-wrapped for each event, so they are told apart by this tag)
        self.url = None
        self.opened = False
        self.container = None
        self.stopping = False
        self.connects = 0
        self.disconnects = 0
        self.connected_at = []  # (time, url)

    # -- connection management ------------------------------------------
    def on_start(self, event):
        self.container = event.container
        self.connect()

    def connect(self):
        if self.stopping:
            return
        self.url = self.urls[self.attempt % len(self.urls)]
        self.opened = False
        self.gen += 1
        self.conn = self.container.connect(
            self.url, handler=self, reconnect=False, heartbeat=HEARTBEAT
        )
        self.conn.chaos_gen = self.gen
        self.link = self.open_link(self.conn)
        self.link.chaos_gen = self.gen
        gen = self.gen
        self.container.schedule(CONNECT_TIMEOUT, _Call(lambda: self.check_open(gen)))

    def mine(self, endpoint):
        """Whether a connection or link is the current one."""
        return (self.conn is not None and endpoint is not None
                and getattr(endpoint, "chaos_gen", None) == self.gen)

    def check_open(self, gen):
        if gen == self.gen and self.conn is not None and not self.opened:
            conn = self.conn
            self.lost(conn, "connect timeout")
            conn.close()  # gave up on it

    def on_link_opened(self, event):
        if self.mine(event.connection) and not self.opened:
            self.opened = True
            self.connects += 1
            self.connected_at.append((now(), self.url))
            self.attempt = 0  # next time, start from the home router again
            log("%s connected to %s" % (self.name, self.url))
            self.link_up()

    def on_transport_error(self, event):
        pass  # reported through on_transport_closed

    def on_connection_error(self, event):
        pass

    def on_link_error(self, event):
        pass

    def on_transport_closed(self, event):
        self.lost(event.connection, "transport closed")

    def on_connection_remote_close(self, event):
        if self.mine(event.connection):
            self.lost(event.connection, "closed by the router")
            event.connection.close()

    def on_link_remote_close(self, event):
        if self.mine(event.connection):
            self.lost(event.connection, "link closed by the router")
            event.connection.close()

    def lost(self, conn, why):
        if not self.mine(conn) or self.stopping:
            return
        was_open = self.opened
        self.conn = None
        self.link = None
        self.opened = False
        if was_open:
            self.disconnects += 1
            DISCONNECTS.append((now(), self.name))
            log("%s lost %s: %s" % (self.name, self.url, why))
        self.link_down()
        if not was_open:
            self.attempt += 1
        if not self.stopping:
            self.container.schedule(RECONNECT_DELAY, _Call(self.connect))

    def stop(self):
        self.stopping = True
        if self.conn is not None:
            self.conn.close()

    # -- hooks --------------------------------------------------------------
    def open_link(self, conn):
        raise NotImplementedError

    def link_up(self):
        pass

    def link_down(self):
        pass


class _Call:
    """A timer task calling `fn`."""

    def __init__(self, fn):
        self.fn = fn

    def on_timer_task(self, event):
        self.fn()


class Producer(Client):
    def __init__(self, urls, rate):
        super().__init__("producer", urls, prefetch=0)
        self.rate = rate
        self.tokens = 0.0
        self.last_tick = None
        self.sending = True  # new messages; resends go on regardless
        self.next_seq = 0
        self.resend = collections.deque()
        self.inflight = {}  # delivery -> (seq, sent_at)
        self.accepted = set()
        self.accept_log = []  # (accepted_at, sent_at)
        self.sent = 0
        self.released = 0
        self.modified = 0
        self.rejected = 0
        self.unsettled_at_disconnect = 0
        self.accepted_twice = 0

    def open_link(self, conn):
        return self.container.create_sender(conn, ADDRESS)

    def on_start(self, event):
        super().on_start(event)
        self.last_tick = now()
        self.container.schedule(0.01, _Call(self.tick))

    def tick(self):
        t = now()
        self.tokens = min(self.tokens + (t - self.last_tick) * self.rate, self.rate * 0.1 + 1)
        self.last_tick = t
        self.pump()
        if not self.stopping:
            self.container.schedule(0.01, _Call(self.tick))

    def on_sendable(self, event):
        if self.mine(event.sender):
            self.pump()

    def pump(self):
        s = self.link
        if s is None or not self.opened:
            return
        while s.credit > 0:
            if self.resend:
                seq = self.resend.popleft()
            elif self.sending and self.tokens >= 1:
                seq = self.next_seq
                self.next_seq += 1
                self.tokens -= 1
            else:
                return
            msg = Message(id=seq, body="chaos message %d" % seq)
            d = s.send(msg)
            self.inflight[(self.gen, d.tag)] = (seq, now())
            self.sent += 1

    def outcome(self, event):
        if not self.mine(event.delivery.link):
            return None
        return self.inflight.pop((self.gen, event.delivery.tag), None)

    def on_accepted(self, event):
        entry = self.outcome(event)
        if entry is None:
            return
        seq, sent_at = entry
        if seq in self.accepted:
            self.accepted_twice += 1
        self.accepted.add(seq)
        self.accept_log.append((now(), sent_at))

    def on_released(self, event):
        entry = self.outcome(event)
        if entry is None:
            return
        if event.delivery.remote_state == Delivery.MODIFIED:
            self.modified += 1
        else:
            self.released += 1
        self.resend.append(entry[0])

    def on_rejected(self, event):
        entry = self.outcome(event)
        if entry is None:
            return
        self.rejected += 1
        self.resend.append(entry[0])

    def link_down(self):
        # Whatever was not settled may or may not have arrived: send it again.
        if self.inflight:
            seqs = sorted(seq for seq, _ in self.inflight.values())
            self.unsettled_at_disconnect += len(seqs)
            self.resend.extendleft(reversed(seqs))
            self.inflight = {}

    def unresolved(self):
        return self.next_seq - len(self.accepted)


class Consumer(Client):
    def __init__(self, router, url):
        super().__init__("consumer@" + router, [url], prefetch=CONSUMER_CREDIT)
        self.router = router
        self.counts = collections.Counter()
        self.receipts = []  # times
        self.bad = 0

    def open_link(self, conn):
        return self.container.create_receiver(conn, ADDRESS)

    def on_message(self, event):
        if not self.mine(event.receiver):
            return
        m = event.message
        seq = m.id
        if not isinstance(seq, int) or m.body != "chaos message %d" % seq:
            self.bad += 1
        else:
            self.counts[seq] += 1
        self.receipts.append(now())
        self.accept(event.delivery)


# -- faults ---------------------------------------------------------------------


def docker(*args):
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("docker %s: %s" % (" ".join(args), r.stderr.strip()))


def amqp_answers(host, port):
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.settimeout(1)
            s.sendall(b"AMQP\x03\x01\x00\x00")
            return s.recv(8).startswith(b"AMQP")
    except OSError:
        return False


def fault_schedule(routers, rounds):
    """(start offset s, kind, router, seconds down). Router 0 is the producer's."""
    names = [r["id"] for r in routers]
    home, others = names[0], names[1:]
    one = [
        ("kill", home, 3),
        ("kill", others[0], 3),
        ("disconnect", others[-1], 6),
        ("kill", others[-1], 3),
        ("disconnect", others[0], 6),
        ("disconnect", home, 6),
    ]
    steps = []
    t = 5.0
    for _ in range(rounds):
        for kind, r, down in one:
            steps.append((t, kind, r, down))
            t += down + GAP
    steps.append((t, "end", None, 0))
    return steps, t


class Faults(threading.Thread):
    def __init__(self, routers, network, steps):
        super().__init__(daemon=True)
        self.routers = {r["id"]: r for r in routers}
        self.network = network
        self.steps = steps
        self.events = []  # dicts
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            start = now()
            for at, kind, rid, down in self.steps[:-1]:
                while now() - start < at:
                    time.sleep(0.05)
                r = self.routers[rid]
                ev = {"kind": kind, "router": rid, "down_s": down}
                ev["fault_at"] = now()
                if kind == "kill":
                    log("fault: docker kill router %s" % rid)
                    docker("kill", "-s", "KILL", r["container"])
                else:
                    log("fault: docker network disconnect router %s" % rid)
                    docker("network", "disconnect", self.network, r["container"])
                ev["in_effect_at"] = now()
                time.sleep(down)
                ev["repair_at"] = now()
                if kind == "kill":
                    log("repair: docker start router %s" % rid)
                    docker("start", r["container"])
                else:
                    log("repair: docker network connect router %s" % rid)
                    docker("network", "connect", "--alias", r["service"], self.network, r["container"])
                ev["repaired_at"] = now()
                deadline = now() + 30
                while not amqp_answers(r["host"], r["port"]) and now() < deadline:
                    time.sleep(0.05)
                ev["answers_at"] = now() if now() < deadline else None
                self.events.append(ev)
            # Watch the last repair for a while before calling it done.
            while now() - start < self.steps[-1][0]:
                time.sleep(0.05)
        except Exception as e:  # reported, and the run fails
            self.error = str(e)
            log("fault schedule failed: %s" % e)
        finally:
            self.done.set()


# -- the run --------------------------------------------------------------------


def parse_router(spec):
    # ID=HOST:PORT,CONTAINER,SERVICE
    rid, rest = spec.split("=", 1)
    addr, container, service = rest.split(",")
    host, port = addr.rsplit(":", 1)
    return {"id": rid, "host": host, "port": int(port), "container": container, "service": service}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--router", action="append", required=True, type=parse_router,
                    help="ID=HOST:PORT,CONTAINER,SERVICE (the first hosts the producer)")
    ap.add_argument("--network", required=True, help="the mesh's docker network")
    ap.add_argument("--rate", type=float, default=1000.0, help="new messages per second")
    ap.add_argument("--rounds", type=int, default=2, help="times through the fault schedule")
    ap.add_argument("--warmup", type=float, default=60.0, help="max seconds for traffic to start")
    ap.add_argument("--drain", type=float, default=60.0, help="max seconds to settle everything at the end")
    ap.add_argument("--json", help="also write the report to this file")
    a = ap.parse_args()
    if len(a.router) < 2:
        ap.error("give at least two routers")
    routers = a.router
    url = lambda r: "amqp://%s:%d" % (r["host"], r["port"])
    producer = Producer([url(r) for r in routers], a.rate)
    consumers = [Consumer(r["id"], url(r)) for r in routers[1:]]
    steps, _ = fault_schedule(routers, a.rounds)
    faults = Faults(routers, a.network, steps)
    state = {"phase": "warmup", "phase_at": now(), "drained_at": None, "stop_new_at": None}
    report = {}

    def supervise():
        t = now()
        ph = state["phase"]
        if ph == "warmup":
            # Faults start once every consumer has received something.
            if all(c.receipts for c in consumers):
                log("traffic flows through every consumer; starting the fault schedule")
                faults.start()
                state.update(phase="faults", phase_at=t)
            elif t - state["phase_at"] > a.warmup:
                log("no traffic through every consumer after %.0fs" % a.warmup)
                state.update(phase="drain", phase_at=t, failed="warmup")
                producer.sending = False
        elif ph == "faults":
            if faults.done.is_set():
                log("faults done; producer stops new messages, draining")
                producer.sending = False
                state.update(phase="drain", phase_at=t, stop_new_at=t)
        elif ph == "drain":
            settled = producer.unresolved() == 0 and not producer.inflight and not producer.resend
            if settled and state["drained_at"] is None:
                state["drained_at"] = t
            # A moment more for late duplicates, then stop.
            if (state["drained_at"] is not None and t - state["drained_at"] > 2) or t - state["phase_at"] > a.drain:
                for c in [producer, *consumers]:
                    c.stop()
                state["phase"] = "stopping"
                container.schedule(1.0, _Call(container.stop))
                return
        container.schedule(0.1, _Call(supervise))

    container = Container(producer, *consumers)
    container.container_id = "ferry-chaos"
    container.schedule(0.1, _Call(supervise))
    log("producer on %s, consumers on %s, %.0f msg/s" % (
        routers[0]["id"], ", ".join(r["id"] for r in routers[1:]), a.rate))
    container.run()

    # -- the books --------------------------------------------------------------
    received = collections.Counter()
    for c in consumers:
        received.update(c.counts)
    deliveries = sum(received.values())
    distinct = set(received)
    lost = sorted(producer.accepted - distinct)
    unresolved = producer.unresolved()
    never_sent = distinct - set(range(producer.next_seq))
    report["counts"] = {
        "unique_messages": producer.next_seq,
        "sent": producer.sent,
        "accepted": len(producer.accepted),
        "received": len(distinct),
        "deliveries": deliveries,
        "duplicates": deliveries - len(distinct),
        "released": producer.released,
        "modified": producer.modified,
        "rejected": producer.rejected,
        "resent_after_disconnect": producer.unsettled_at_disconnect,
        "lost": len(lost),
        "unresolved": unresolved,
        "malformed": sum(c.bad for c in consumers),
        "received_never_sent": len(never_sent),
    }
    report["per_consumer"] = {c.router: {"deliveries": sum(c.counts.values()), "reconnects": c.disconnects}
                              for c in consumers}
    report["producer_reconnects"] = producer.disconnects
    faults_out = []
    for ev in faults.events:
        tf = ev["fault_at"]
        # Resume: from the fault being in effect (the docker command
        # returned) to the first acceptance of a message sent after that.
        after = [acc for acc, sent in producer.accept_log if sent >= ev["in_effect_at"]]
        resume = (min(after) - ev["in_effect_at"]) if after else None
        # Longest stretch without any acceptance, from the fault to 5 s after the repair.
        end = min(ev["repaired_at"] + 5, state["stop_new_at"] or now())
        window = [acc for acc, _ in producer.accept_log if tf <= acc <= end]
        edges = [tf, *window, end]
        gap = max(b - a_ for a_, b in zip(edges, edges[1:]))
        c = next((c for c in consumers if c.router == ev["router"]), None)
        rejoin = None
        if c is not None:
            later = [t for t in c.receipts if t >= ev["repaired_at"]]
            rejoin = (later[0] - ev["repaired_at"]) if later else None
        up = (ev["answers_at"] - ev["repaired_at"]) if ev["answers_at"] else None
        hit = sorted({n for t, n in DISCONNECTS if tf <= t <= ev["in_effect_at"] + 1.0})
        faults_out.append({
            "fault": "%s %s" % (ev["kind"], ev["router"]),
            "at_s": round(tf - T0, 2),
            "down_s": ev["down_s"],
            "docker_cmd_s": round(ev["in_effect_at"] - tf, 3),
            "resume_s": None if resume is None else round(resume, 3),
            "longest_gap_s": round(gap, 3),
            "router_answers_s": None if up is None else round(up, 3),
            "consumer_back_s": None if rejoin is None else round(rejoin, 3),
            "clients_cut": hit,
        })
    report["faults"] = faults_out
    failures = []
    if lost:
        failures.append("%d accepted message(s) never received, e.g. %s" % (len(lost), lost[:10]))
    if unresolved:
        failures.append("%d message(s) never accepted" % unresolved)
    if report["counts"]["malformed"] or never_sent:
        failures.append("malformed or unknown messages received")
    if faults.error:
        failures.append("fault schedule: " + faults.error)
    if state.get("failed") == "warmup":
        failures.append("traffic never reached every consumer")
    if len(faults.events) != len(steps) - 1:
        failures.append("%d of %d faults run" % (len(faults.events), len(steps) - 1))
    if any(f["resume_s"] is None for f in faults_out):
        failures.append("traffic did not resume after a fault")
    report["failures"] = failures
    report["ok"] = not failures

    print()
    print("== Ferry chaos run: %d routers, %d faults, %.0f s ==" % (len(routers), len(faults_out), now() - T0))
    for k, v in report["counts"].items():
        print("  %-24s %d" % (k, v))
    print("  producer reconnects      %d" % producer.disconnects)
    for rid, pc in report["per_consumer"].items():
        print("  consumer on %-12s %d deliveries, %d reconnects" % (rid, pc["deliveries"], pc["reconnects"]))
    print()
    print("  %-16s %7s %6s %7s %9s %8s %9s %9s" % (
        "fault", "at (s)", "down", "docker", "resume", "max gap", "answers", "consumer") + "  clients cut")
    fmt = lambda v: "-" if v is None else "%.2fs" % v
    for f in faults_out:
        print("  %-16s %7.1f %5ds %7s %9s %8s %9s %9s" % (
            f["fault"], f["at_s"], f["down_s"], fmt(f["docker_cmd_s"]), fmt(f["resume_s"]), fmt(f["longest_gap_s"]),
            fmt(f["router_answers_s"]), fmt(f["consumer_back_s"])) + "  " + (", ".join(f["clients_cut"]) or "-"))
    print()
    print("  docker: how long the docker kill/disconnect command took; resume: from then")
    print("  to the first acceptance of a message sent after it (producer reconnected")
    print("  if it had to, mesh routed around); max gap: longest time without any")
    print("  acceptance, from the fault to 5 s after the repair; answers: repair (docker")
    print("  start/connect returned) -> the router's client port answers AMQP;")
    print("  consumer: repair -> that router's consumer receives again.")
    print()
    if failures:
        for f in failures:
            print("FAIL: " + f)
    else:
        print("PASS: lost 0, every message accepted")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())

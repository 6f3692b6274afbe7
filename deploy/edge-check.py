#!/usr/bin/python3
"""Traffic through compose's edge routers (deploy/edge-test.sh).

A consumer on one edge router, an at-least-once producer on another: the
messages cross edge -> interior mesh -> edge. The producer sends --count
messages at --rate per second, unsettled; whatever comes back released or
modified (an uplink lost under it) is sent again. With --at K --run CMD,
CMD runs (in the background, by the shell) once K messages are accepted:
e.g. `docker stop` of the producer's edge's interior router, to see the
edge fail over under load.

Prints one line: sent, accepted, received (distinct), duplicates,
released/modified (resent) and lost (accepted, never received). Exit
status 0 when every message was accepted and received, 1 otherwise (or on
--timeout).

Usage: edge-check.py --producer HOST:PORT --consumer HOST:PORT [--count N]
                     [--rate R] [--at K --run CMD] [--timeout S]
Needs python3-qpid-proton (Debian).
"""

import argparse
import subprocess
import sys
import threading
import time

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container

ADDRESS = "edge-check"


class Check(MessagingHandler):
    def __init__(self, a):
        super().__init__(prefetch=500, auto_accept=True)
        self.a = a
        self.received = set()
        self.deliveries = 0
        self.accepted = set()
        self.pending = []  # message numbers waiting to be (re)sent
        self.next = 0  # next new message number
        self.sent = 0
        self.resent = 0
        self.started = None
        self.fault = None
        self.sender = None
        self.ready = False
        self.done = False

    def on_start(self, event):
        self.container = event.container
        conn = event.container.connect("amqp://" + self.a.consumer, heartbeat=2)
        self.receiver = event.container.create_receiver(conn, ADDRESS)
        self.deadline = time.monotonic() + self.a.timeout
        event.container.schedule(0.1, self)

    def on_link_opened(self, event):
        if event.receiver is not None and event.receiver == self.receiver and self.sender is None:
            # The consumer's address needs a moment to reach the producer's
            # edge (edge -> interior -> mesh): the producer only gets credit
            # then, so starting now is safe.
            conn = event.container.connect("amqp://" + self.a.producer, heartbeat=2)
            self.sender = event.container.create_sender(conn, ADDRESS)
            self.started = time.monotonic()

    def on_timer_task(self, event):
        now = time.monotonic()
        if self.done:
            return
        if now > self.deadline:
            print("edge-check: timed out", flush=True)
            self.finish()
            return
        self.pump()
        event.container.schedule(0.02, self)

    def on_sendable(self, event):
        self.pump()

    def pump(self):
        if self.sender is None or self.started is None:
            return
        allowed = int((time.monotonic() - self.started) * self.a.rate)
        while self.sender.credit > 0:
            if self.pending:
                n = self.pending.pop(0)
                self.resent += 1
            elif self.next < self.a.count and self.next < allowed:
                n = self.next
                self.next += 1
            else:
                break
            d = self.sender.send(Message(body=n, id=n, durable=False))
            d.number = n
            self.sent += 1

    def on_accepted(self, event):
        n = event.delivery.number
        self.accepted.add(n)
        if self.a.run and self.fault is None and len(self.accepted) >= self.a.at:
            print("edge-check: %d accepted; running: %s" % (len(self.accepted), self.a.run), flush=True)
            self.fault = threading.Thread(target=subprocess.run, args=(self.a.run,), kwargs={"shell": True})
            self.fault.start()
        self.check_done()

    def on_released(self, event):
        # released, and modified (delivery-failed: the uplink was lost with it)
        self.pending.append(event.delivery.number)

    def on_rejected(self, event):
        print("edge-check: message %d rejected" % event.delivery.number, flush=True)

    def on_message(self, event):
        self.deliveries += 1
        self.received.add(event.message.body)
        self.check_done()

    def check_done(self):
        if len(self.accepted) == self.a.count and len(self.received) == self.a.count:
            self.finish()

    def finish(self):
        if self.done:
            return
        self.done = True
        self.receiver.connection.close()
        if self.sender is not None:
            self.sender.connection.close()

    def on_transport_error(self, event):
        cond = event.transport.condition
        print("edge-check: connection error: %s" % (cond and cond.description), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--producer", required=True, help="HOST:PORT of the producer's edge router")
    ap.add_argument("--consumer", required=True, help="HOST:PORT of the consumer's edge router")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=1000.0, help="new messages per second")
    ap.add_argument("--at", type=int, default=0, help="run --run once this many are accepted")
    ap.add_argument("--run", help="a shell command to run at --at")
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    h = Check(a)
    t0 = time.monotonic()
    Container(h).run()
    if h.fault is not None:
        h.fault.join()
    lost = len(h.accepted - h.received)
    ok = len(h.accepted) == a.count and len(h.received) == a.count and lost == 0
    print("edge-check: %s: sent %d, accepted %d of %d, received %d (%d deliveries, %d duplicates), "
          "resent %d (released or modified), lost %d, in %.1f s" % (
              "ok" if ok else "FAIL", h.sent, len(h.accepted), a.count, len(h.received), h.deliveries,
              h.deliveries - len(h.received), h.resent, lost, time.monotonic() - t0), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Qpid Proton producer and consumer for the brokered-address tests
(tests/tests/broker.rs): an independent AMQP 1.0 client against Ferry.

    broker_clients.py URL send ADDRESS COUNT [TIMEOUT] [RATE]
        Sends COUNT messages (at most RATE a second if given and not 0) (message-id "m-<i>", durable) and resends
        every one that comes back released or modified, until each is
        accepted (or TIMEOUT seconds pass). Summary: accepted ids, how
        many outcomes of each kind came back, resends.

    broker_clients.py URL receive ADDRESS COUNT [TIMEOUT] [QUIET]
        Receives and accepts until COUNT distinct ids arrived, then keeps
        listening QUIET seconds more (default 2) to catch duplicates
        (COUNT 0: listens QUIET seconds).
        Summary: every id received, in order (duplicates included).

Each prints one JSON line; "timeout": true when it gave up.
"""
import json
import sys

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Ticker:
    """Lets a paced sender send one more message every tick."""

    def __init__(self, sender, interval):
        self.sender, self.interval = sender, interval

    def on_timer_task(self, event):
        if self.sender.finished:
            return
        self.sender.tokens = min(self.sender.tokens + 1, 5)
        self.sender.send()
        event.container.schedule(self.interval, self)


class Sender(MessagingHandler):
    def __init__(self, url, address, count, timeout, rate):
        super().__init__(auto_settle=True)
        self.url, self.address, self.count, self.timeout = url, address, count, timeout
        self.rate = rate
        self.tokens = 0 if rate else float("inf")
        self.queue = ["m-%d" % i for i in range(count)]
        self.pending = {}
        self.accepted = set()
        self.outcomes = {"accepted": 0, "released": 0, "modified": 0, "rejected": 0}
        self.resent = 0
        self.timed_out = False
        self.finished = False

    def on_start(self, event):
        self.timer = event.container.schedule(self.timeout, self)
        self.conn = event.container.connect(self.url, reconnect=False)
        self.sender = event.container.create_sender(self.conn, self.address)
        if self.rate:
            event.container.schedule(1.0 / self.rate, Ticker(self, 1.0 / self.rate))

    def on_sendable(self, event):
        self.send()

    def send(self):
        while self.queue and self.sender.credit > 0 and self.tokens >= 1:
            self.tokens -= 1
            mid = self.queue.pop(0)
            d = self.sender.send(Message(id=mid, durable=True, body="order " + mid))
            self.pending[d.tag] = mid

    def outcome(self, event, kind):
        mid = self.pending.pop(event.delivery.tag, None)
        self.outcomes[kind] += 1
        if mid is None:
            return
        if kind == "accepted":
            self.accepted.add(mid)
        elif kind in ("released", "modified"):
            self.resent += 1
            self.queue.append(mid)
            self.send()
        if len(self.accepted) == self.count:
            self.done()

    def on_accepted(self, event):
        self.outcome(event, "accepted")

    def on_released(self, event):
        # Proton reports modified as released too; tell them apart.
        kind = "modified" if event.delivery.remote_state == event.delivery.MODIFIED else "released"
        self.outcome(event, kind)

    def on_rejected(self, event):
        self.outcome(event, "rejected")

    def on_timer_task(self, event):
        self.timed_out = True
        self.done()

    def on_transport_error(self, event):
        self.done()

    def done(self):
        if self.finished:
            return
        self.finished = True
        self.timer.cancel()
        self.conn.close()
        print(json.dumps({
            "timeout": self.timed_out,
            "accepted": sorted(self.accepted),
            "outcomes": self.outcomes,
            "resent": self.resent,
        }))
        sys.stdout.flush()
        self.container.stop()


class Receiver(MessagingHandler):
    def __init__(self, url, address, count, timeout, quiet):
        super().__init__(auto_accept=True, prefetch=20)
        self.url, self.address, self.count = url, address, count
        self.timeout, self.quiet = timeout, quiet
        self.ids = []
        self.timed_out = False
        self.closing = False

    def on_start(self, event):
        self.container = event.container
        self.timer = event.container.schedule(self.timeout, self)
        self.conn = event.container.connect(self.url, reconnect=False)
        event.container.create_receiver(self.conn, self.address)
        if self.count == 0:
            self.closing = True
            self.timer.cancel()
            self.timer = event.container.schedule(self.quiet, self)

    def on_message(self, event):
        self.ids.append(event.message.id)
        if not self.closing and len(set(self.ids)) >= self.count:
            self.closing = True
            self.timer.cancel()
            self.timer = self.container.schedule(self.quiet, self)

    def on_timer_task(self, event):
        if not self.closing:
            self.timed_out = True
        self.conn.close()
        print(json.dumps({"timeout": self.timed_out, "ids": self.ids}))
        sys.stdout.flush()
        self.container.stop()


def main():
    url, mode, address, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
    if mode == "send":
        rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
        handler = Sender(url, address, count, timeout, rate)
    else:
        quiet = float(sys.argv[6]) if len(sys.argv) > 6 else 2.0
        handler = Receiver(url, address, count, timeout, quiet)
    container = Container(handler)
    handler.container = container
    container.run()


if __name__ == "__main__":
    main()

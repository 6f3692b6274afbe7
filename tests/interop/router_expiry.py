"""Message expiry through a ferry router, with Qpid Proton. A consumer
(its own connection) attaches to ADDRESS; a producer (another connection)
sends, in order: a message whose absolute-expiry-time passed a minute ago,
one with a ttl of an hour, and one with no expiry at all. The expired one
must not reach the consumer and its producer must get an outcome saying so.

usage: router_expiry.py URL ADDRESS

Summary: {"outcomes": {body: {"state", "condition"}}, "consumer_got":
[body...], "timeout": bool}
"""
import sys
import time

from proton import Delivery, Message

from router_common import Scenario, condition_json, run


def plan():
    now = time.time()
    expired = Message(body="expired", expiry_time=now - 60, creation_time=now - 120)
    live_ttl = Message(body="live-ttl", ttl=3600.0)
    live = Message(body="live")
    return [expired, live_ttl, live]


class Expiry(Scenario):
    def __init__(self, url, address):
        super().__init__(url)
        self.address = address
        self.plan = plan()
        self.sent = 0
        self.by_tag = {}
        self.outcomes = {}
        self.consumer_got = []
        self.producing = False

    def setup(self, container):
        container.create_receiver(self.connect(), self.address, name="consumer")

    def on_link_opened(self, event):
        if event.link.name == "consumer" and not self.producing:
            self.producing = True
            self.container.create_sender(self.connect(), self.address, name="producer")

    def on_sendable(self, event):
        while event.sender.credit and self.sent < len(self.plan):
            msg = self.plan[self.sent]
            self.by_tag[event.sender.send(msg).tag] = msg.body
            self.sent += 1

    def on_message(self, event):
        self.consumer_got.append(event.message.body)
        self.check()

    def record(self, event):
        dlv = event.delivery
        state = {
            Delivery.ACCEPTED: "accepted",
            Delivery.REJECTED: "rejected",
            Delivery.RELEASED: "released",
            Delivery.MODIFIED: "modified",
        }.get(dlv.remote_state, str(dlv.remote_state))
        entry = {"state": state, "condition": None}
        if state == "rejected":
            entry["condition"] = condition_json(dlv.remote.condition)
        if state == "modified":
            entry["failed"] = dlv.remote.failed
            entry["undeliverable"] = dlv.remote.undeliverable
        self.outcomes[self.by_tag.get(dlv.tag, repr(dlv.tag))] = entry
        self.check()

    on_accepted = record
    on_rejected = record
    on_released = record

    def check(self):
        live = len(self.plan) - 1
        if len(self.outcomes) >= len(self.plan) and len(self.consumer_got) >= live:
            self.summarise()
            self.finish()

    def summarise(self):
        self.result.update(outcomes=self.outcomes, consumer_got=self.consumer_got)

    def progress(self):
        self.summarise()
        return {"sent": self.sent}


if __name__ == "__main__":
    run(Expiry(*sys.argv[1:3]))

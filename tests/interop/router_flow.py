"""Qpid Proton producer and consumers through a ferry router: C consumers
(each on its own connection) attach to ADDRESS; once all are attached a
producer (on another connection) sends N messages, each carrying its
sequence number. Consumers accept everything.

usage: router_flow.py URL ADDRESS N CONSUMERS anycast|multicast [presettled]

Done when every message has reached a consumer (anycast) or every consumer
(multicast) and, unless pre-settled, the producer has every outcome.
Summary: {"received": [[seq...] per consumer], "arrived_settled": [count
per consumer], "outcomes": {state: count}, "sent": N, "timeout": bool}
"""
import sys

from proton import Message
from proton.reactor import AtMostOnce

from router_common import Scenario, run


class Flow(Scenario):
    def __init__(self, url, address, n, consumers, mode, presettled):
        super().__init__(url, prefetch=50)
        self.address = address
        self.n = n
        self.consumers = consumers
        self.multicast = mode == "multicast"
        self.presettled = presettled
        self.receivers = {}
        self.opened = 0
        self.sent = 0
        self.received = [[] for _ in range(consumers)]
        self.arrived_settled = [0] * consumers
        self.outcomes = {}

    def setup(self, container):
        for i in range(self.consumers):
            rcv = container.create_receiver(self.connect(), self.address, name=f"consumer-{i}")
            self.receivers[rcv.name] = i

    def on_link_opened(self, event):
        if event.link.is_receiver and event.link.name in self.receivers:
            self.opened += 1
            if self.opened == self.consumers:
                options = [AtMostOnce()] if self.presettled else None
                self.container.create_sender(
                    self.connect(), self.address, name="producer", options=options
                )

    def on_sendable(self, event):
        while event.sender.credit and self.sent < self.n:
            event.sender.send(Message(body=f"m{self.sent}", properties={"seq": self.sent}))
            self.sent += 1

    def on_message(self, event):
        i = self.receivers[event.link.name]
        self.received[i].append(event.message.properties["seq"])
        if event.delivery.settled:
            self.arrived_settled[i] += 1
        self.check()

    def outcome(self, name):
        self.outcomes[name] = self.outcomes.get(name, 0) + 1
        self.check()

    def on_accepted(self, event):
        self.outcome("accepted")

    def on_rejected(self, event):
        self.outcome("rejected")

    def on_released(self, event):
        # Proton reports released and modified here; tell them apart.
        state = event.delivery.remote_state
        self.outcome("modified" if state == event.delivery.MODIFIED else "released")

    def check(self):
        if self.multicast:
            arrived = all(len(r) >= self.n for r in self.received)
        else:
            arrived = sum(len(r) for r in self.received) >= self.n
        settled = self.presettled or sum(self.outcomes.values()) >= self.n
        if arrived and settled:
            self.summarise()
            self.finish()

    def summarise(self):
        self.result.update(
            sent=self.sent,
            received=self.received,
            arrived_settled=self.arrived_settled,
            outcomes=self.outcomes,
        )

    def progress(self):
        self.summarise()
        return {"consumers_attached": self.opened}


if __name__ == "__main__":
    url, address, n, consumers, mode = sys.argv[1:6]
    presettled = sys.argv[6:7] == ["presettled"]
    run(Flow(url, address, int(n), int(consumers), mode, presettled))

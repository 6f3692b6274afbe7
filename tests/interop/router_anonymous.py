"""An anonymous Qpid Proton sender (null target) through a ferry router:
each message goes where its properties.to says. Two consumers (own
connections) attach to ADDR_A and ADDR_B. Once the router has their credit
(proved by a probe sender on each address receiving credit) the anonymous
sender sends N messages alternately to ADDR_A and ADDR_B, then one to
NOWHERE, which has no consumer. With CONSUMER_URL_A and CONSUMER_URL_B,
the consumers connect there (other routers of the mesh) instead.

usage: router_anonymous.py URL ADDR_A ADDR_B NOWHERE N [CONSUMER_URL_A CONSUMER_URL_B]

Summary: {"received": {address: [body...]}, "outcomes": {body: state},
"anonymous_target": address or null (as the router answered the attach),
"timeout": bool}
"""
import sys

from proton import Delivery, Message

from router_common import Scenario, run


class Anonymous(Scenario):
    def __init__(self, url, addr_a, addr_b, nowhere, n, consumer_urls):
        super().__init__(url, prefetch=n)
        self.addresses = [addr_a, addr_b]
        self.consumer_urls = consumer_urls or [None, None]
        self.nowhere = nowhere
        self.n = n
        self.plan = [(f"m{i}", self.addresses[i % 2]) for i in range(n)] + [
            ("lost", nowhere)
        ]
        self.received = {a: [] for a in self.addresses}
        self.outcomes = {}
        self.by_tag = {}
        self.consumers_open = 0
        self.credited = set()
        self.producer_conn = None
        self.anonymous = None
        self.sent = 0

    def setup(self, container):
        for address, url in zip(self.addresses, self.consumer_urls):
            container.create_receiver(self.connect(url), address, name=f"consumer {address}")

    def on_link_opened(self, event):
        link = event.link
        if link.name.startswith("consumer "):
            self.consumers_open += 1
            if self.consumers_open == len(self.addresses):
                # A sender to an address gets credit only once the router
                # holds consumer credit for it.
                self.producer_conn = self.connect()
                for address in self.addresses:
                    self.container.create_sender(
                        self.producer_conn, address, name=f"probe {address}"
                    )
        elif link.name == "anonymous":
            self.result["anonymous_target"] = link.remote_target.address

    def on_sendable(self, event):
        link = event.link
        if link.name.startswith("probe "):
            if link.name not in self.credited:
                self.credited.add(link.name)
                link.close()
                if len(self.credited) == len(self.addresses):
                    self.anonymous = self.container.create_sender(
                        self.producer_conn, None, name="anonymous"
                    )
        elif link.name == "anonymous":
            while link.credit and self.sent < len(self.plan):
                body, to = self.plan[self.sent]
                dlv = link.send(Message(address=to, body=body))
                self.by_tag[dlv.tag] = body
                self.sent += 1

    def on_message(self, event):
        address = event.link.name[len("consumer "):]
        self.received[address].append(event.message.body)
        self.check()

    def record(self, event):
        state = {
            Delivery.ACCEPTED: "accepted",
            Delivery.REJECTED: "rejected",
            Delivery.RELEASED: "released",
            Delivery.MODIFIED: "modified",
        }.get(event.delivery.remote_state, str(event.delivery.remote_state))
        self.outcomes[self.by_tag.get(event.delivery.tag, repr(event.delivery.tag))] = state
        self.check()

    on_accepted = record
    on_rejected = record
    on_released = record

    def check(self):
        arrived = sum(len(v) for v in self.received.values())
        if len(self.outcomes) >= len(self.plan) and arrived >= self.n:
            self.summarise()
            self.finish()

    def summarise(self):
        self.result.update(received=self.received, outcomes=self.outcomes)

    def progress(self):
        self.summarise()
        return {"consumers_open": self.consumers_open, "credited": sorted(self.credited)}


if __name__ == "__main__":
    url, a, b, nowhere, n = sys.argv[1:6]
    run(Anonymous(url, a, b, nowhere, int(n), sys.argv[6:8]))

"""Outcomes chosen by a Qpid Proton consumer, seen by a Qpid Proton
producer through a ferry router. The consumer (its own connection) settles
each message as its "action" application property says; the producer
(another connection) records the outcome each delivery is settled with.

usage: router_outcomes.py URL ADDRESS

Summary: {"outcomes": {action: {"state", "settled", "condition", "failed",
"undeliverable", "annotations"}}, "consumer_saw": [action...], "timeout"}
"""
import sys

from proton import Condition, Delivery, Message, symbol

from router_common import Scenario, condition_json, plain, run

REJECT_CONDITION = Condition(
    "amqp:precondition-failed",
    "rejected by the test consumer",
    {symbol("reason"): "test", symbol("code"): 42},
)
ANNOTATIONS = {symbol("x-opt-test"): "annotated", symbol("x-opt-count"): 7}

# action -> what the consumer does with the delivery.
ACTIONS = [
    "accept",
    "reject",
    "release",
    "modify-failed-undeliverable-annotated",
    "modify-failed",
    "modify-undeliverable",
]


class Outcomes(Scenario):
    def __init__(self, url, address):
        super().__init__(url, auto_accept=False, prefetch=len(ACTIONS))
        self.address = address
        self.sent = 0
        self.by_tag = {}
        self.outcomes = {}
        self.consumer_saw = []
        self.producing = False

    def setup(self, container):
        container.create_receiver(self.connect(), self.address, name="consumer")

    def on_link_opened(self, event):
        if event.link.name == "consumer" and not self.producing:
            self.producing = True
            self.container.create_sender(self.connect(), self.address, name="producer")

    def on_sendable(self, event):
        while event.sender.credit and self.sent < len(ACTIONS):
            action = ACTIONS[self.sent]
            dlv = event.sender.send(Message(body=action, properties={"action": action}))
            self.by_tag[dlv.tag] = action
            self.sent += 1

    def on_message(self, event):
        action = event.message.properties["action"]
        self.consumer_saw.append(action)
        dlv = event.delivery
        if action == "accept":
            dlv.update(Delivery.ACCEPTED)
        elif action == "reject":
            dlv.local.condition = REJECT_CONDITION
            dlv.update(Delivery.REJECTED)
        elif action == "release":
            dlv.update(Delivery.RELEASED)
        else:
            dlv.local.failed = "failed" in action
            dlv.local.undeliverable = "undeliverable" in action
            if "annotated" in action:
                dlv.local.annotations = ANNOTATIONS
            dlv.update(Delivery.MODIFIED)
        dlv.settle()

    def record(self, event):
        dlv = event.delivery
        remote = dlv.remote
        state = {
            Delivery.ACCEPTED: "accepted",
            Delivery.REJECTED: "rejected",
            Delivery.RELEASED: "released",
            Delivery.MODIFIED: "modified",
        }.get(dlv.remote_state, str(dlv.remote_state))
        entry = {"state": state, "settled": dlv.settled}
        if state == "rejected":
            entry["condition"] = condition_json(remote.condition)
        if state == "modified":
            entry["failed"] = remote.failed
            entry["undeliverable"] = remote.undeliverable
            entry["annotations"] = plain(remote.annotations)
        self.outcomes[self.by_tag.get(dlv.tag, repr(dlv.tag))] = entry
        if len(self.outcomes) >= len(ACTIONS):
            self.summarise()
            self.finish()

    def on_accepted(self, event):
        self.record(event)

    def on_rejected(self, event):
        self.record(event)

    def on_released(self, event):
        self.record(event)

    def summarise(self):
        self.result.update(outcomes=self.outcomes, consumer_saw=self.consumer_saw)

    def progress(self):
        self.summarise()
        return {"sent": self.sent}


if __name__ == "__main__":
    run(Outcomes(*sys.argv[1:3]))

"""Request/reply through a ferry router with a dynamic reply address, all
in Qpid Proton. A server (its own connection) consumes SERVICE and answers
each request on an anonymous sender, to the request's reply_to, with the
request's id as correlation id. A requester (another connection) attaches a
dynamic receiver, and once the router has assigned its address sends N
requests to SERVICE with that address as reply_to.

usage: router_request_reply.py URL SERVICE N [external-server]

With `external-server` the script runs only the requester: the test
provides the server (another client library).

Summary: {"reply_address": str, "request_outcomes" and "reply_outcomes":
{state: count},
"replies": [{"correlation_id", "body", "to"}...], "server_saw_reply_to":
[str...], "timeout": bool}
"""
import sys

from proton import Message

from router_common import Scenario, run


class RequestReply(Scenario):
    def __init__(self, url, service, n, external_server=False):
        super().__init__(url)
        self.external_server = external_server
        self.service = service
        self.n = n
        self.reply_address = None
        self.server_ready = False
        self.requester = None
        self.server_sender = None
        self.requesting = False
        self.sent = 0
        self.replies = []
        self.request_outcomes = {}
        self.reply_outcomes = {}
        self.server_saw_reply_to = []
        self.pending_replies = []

    def setup(self, container):
        if self.external_server:
            self.server_ready = True
        else:
            self.start_server(container)
        self.requester = self.connect()
        container.create_receiver(self.requester, None, dynamic=True, name="replies")

    def start_server(self, container):
        server = self.connect()
        container.create_receiver(server, self.service, name="server-in")
        # Anonymous sender: each reply is routed by its `to`.
        self.server_sender = container.create_sender(server, None, name="server-out")

    def on_link_opened(self, event):
        link = event.link
        if link.name == "server-in":
            self.server_ready = True
        elif link.name == "replies":
            self.reply_address = link.remote_source.address
        if self.server_ready and self.reply_address and not self.requesting:
            self.requesting = True
            self.container.create_sender(self.requester, self.service, name="requests")

    def on_sendable(self, event):
        if event.link.name == "requests":
            while event.sender.credit and self.sent < self.n:
                event.sender.send(
                    Message(
                        id=f"req-{self.sent}",
                        reply_to=self.reply_address,
                        body=f"question {self.sent}",
                    )
                )
                self.sent += 1
        elif event.link.name == "server-out":
            self.flush_replies()

    def on_message(self, event):
        msg = event.message
        if event.link.name == "server-in":
            self.server_saw_reply_to.append(msg.reply_to)
            self.pending_replies.append(
                Message(address=msg.reply_to, correlation_id=msg.id, body=f"answer to {msg.body}")
            )
            self.flush_replies()
        elif event.link.name == "replies":
            self.replies.append(
                {"correlation_id": msg.correlation_id, "body": msg.body, "to": msg.address}
            )
            self.check()

    def flush_replies(self):
        while self.pending_replies and self.server_sender.credit:
            self.server_sender.send(self.pending_replies.pop(0))

    def outcome(self, event, name):
        if event.link.name == "requests":
            self.request_outcomes[name] = self.request_outcomes.get(name, 0) + 1
        else:
            self.reply_outcomes[name] = self.reply_outcomes.get(name, 0) + 1
        self.check()

    def on_accepted(self, event):
        self.outcome(event, "accepted")

    def on_rejected(self, event):
        self.outcome(event, "rejected")

    def on_released(self, event):
        modified = event.delivery.remote_state == event.delivery.MODIFIED
        self.outcome(event, "modified" if modified else "released")

    def check(self):
        settled = sum(self.request_outcomes.values()) + sum(self.reply_outcomes.values())
        expected = self.n if self.external_server else 2 * self.n
        if len(self.replies) >= self.n and settled >= expected:
            self.summarise()
            self.finish()

    def summarise(self):
        self.result.update(
            reply_address=self.reply_address,
            sent=self.sent,
            request_outcomes=self.request_outcomes,
            reply_outcomes=self.reply_outcomes,
            replies=self.replies,
            server_saw_reply_to=self.server_saw_reply_to,
        )

    def progress(self):
        self.summarise()
        return {"server_ready": self.server_ready}


if __name__ == "__main__":
    url, service, n = sys.argv[1:4]
    run(RequestReply(url, service, int(n), sys.argv[4:5] == ["external-server"]))

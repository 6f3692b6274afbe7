"""Qpid Proton as a server: accepts every message sent to it, and sends N
messages ("from proton i") to any receiver that attaches. Prints READY once
listening, and a JSON summary of what it received when the client
disconnects.

usage: proton_server.py PORT N
"""
import json
import sys

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Server(MessagingHandler):
    def __init__(self, port, n):
        super().__init__()
        self.url = f"127.0.0.1:{port}"
        self.n = n
        self.sent = 0
        self.received = []
        self.outcomes = []

    def on_start(self, event):
        self.acceptor = event.container.listen(self.url)
        print("READY", flush=True)

    def on_message(self, event):
        self.received.append(event.message.body)  # auto-accepted

    def on_sendable(self, event):
        while event.sender.credit and self.sent < self.n:
            event.sender.send(Message(body=f"from proton {self.sent}"))
            self.sent += 1

    def on_accepted(self, event):
        self.outcomes.append("accepted")

    def on_rejected(self, event):
        self.outcomes.append("rejected")

    def on_released(self, event):
        self.outcomes.append("released")

    def on_transport_closed(self, event):
        print(json.dumps({"received": self.received, "outcomes": self.outcomes}), flush=True)
        self.acceptor.close()
        event.container.stop()


Container(Server(int(sys.argv[1]), int(sys.argv[2]))).run()

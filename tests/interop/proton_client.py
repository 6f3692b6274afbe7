"""Qpid Proton as a client: send N messages to an address (each must be
accepted), then receive N from it and accept them. Prints a JSON summary.

usage: proton_client.py URL ADDRESS N
"""
import json
import sys

from proton import Message
from proton.utils import BlockingConnection

url, address, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = BlockingConnection(url, timeout=20)
snd = conn.create_sender(address)
for i in range(n):
    # Blocks until the delivery is settled; raises unless accepted.
    snd.send(Message(body=f"p{i}", subject="interop", properties={"i": i}))
rcv = conn.create_receiver(address, credit=n)
received = []
for _ in range(n):
    m = rcv.receive(timeout=20)
    received.append({"body": m.body, "subject": m.subject, "i": m.properties["i"]})
    rcv.accept()
conn.close()
print(json.dumps({"received": received}))

"""Qpid Proton as a management client changing a router at run time:
listeners and address prefixes CREATEd, UPDATEd and DELETEd through raw
AMQP management requests (as Qpid Dispatch Router's qdmanage sends them),
each change checked by what a client then sees.

Listener: CREATE on PORT, a client served there; UPDATE to role
inter-router: a client connecting afterwards is refused while the one
accepted before carries on; UPDATEs that break a rule or rename it are
refused (400); DELETE, and nothing more is accepted on PORT.

Address prefix: CREATE `news` multicast: two receivers of news.sport both
get one message; DELETE: two receivers of news.weather (an address the
router has not seen yet) share it (one gets it). CREATE twice (409), a
bad distribution (400), and DELETE of a prefix of the configuration file
(403). Prints one JSON summary line.

usage: management_changes.py URL PORT
"""
import faulthandler
import json
import socket
import sys

from proton import Message
from proton.reactor import AtMostOnce
from proton.utils import BlockingConnection, SyncRequestResponse

faulthandler.dump_traceback_later(50, exit=True)
url, port = sys.argv[1:3]
result = {"timeout": False}
D = "org.apache.qpid.dispatch."


def call(client, operation, body=None, **props):
    props["operation"] = operation
    r = client.call(Message(body=body if body is not None else {}, properties=props))
    body = r.body if isinstance(r.body, dict) else {}
    return r.properties["statusCode"], r.properties.get("statusDescription"), body


def exchange(connection, address):
    """One message through a receiver and a sender of `connection`
    (pre-settled: a blocking sender waiting for its outcome would hold up
    the receiver of its own connection)."""
    rx = connection.create_receiver(address, credit=10)
    tx = connection.create_sender(address, options=AtMostOnce())
    tx.send(Message(body="hello"), timeout=10)
    got = rx.receive(timeout=10).body
    rx.close()
    tx.close()
    return got


def attempt(address):
    """Opens a connection and a receiver: 'served', or why not."""
    try:
        c = BlockingConnection(address, timeout=5)
        try:
            c.create_receiver("probe", credit=1)
            return "served", c
        except Exception as e:  # the router's close, as Proton reports it
            return str(e), None
    except Exception as e:
        return str(e), None


conn = BlockingConnection(url, timeout=20)
client = SyncRequestResponse(conn, "$management")
extra = "amqp://127.0.0.1:%s" % port

# --- listeners
attrs = {"host": "127.0.0.1", "port": port, "role": "normal"}
status, why, body = call(client, "CREATE", attrs, type=D + "listener", name="extra")
result["listener_create"] = [status, body.get("name"), body.get("identity")]
early, early_conn = attempt(extra)
result["listener_served"] = early
result["listener_exchange"] = exchange(early_conn, "greetings") if early_conn else None
status, why, _ = call(client, "CREATE", attrs, type=D + "listener", name="again")
result["listener_again"] = status

status, why, body = call(client, "UPDATE", {"saslMechanisms": "PLAIN"},
                         type=D + "listener", name="extra")
result["listener_update_plain"] = [status, why]
status, why, body = call(client, "UPDATE", {"port": "1"}, type=D + "listener", name="extra")
result["listener_update_port"] = status
status, why, body = call(client, "UPDATE", {"role": "inter-router"},
                         type=D + "listener", name="extra")
result["listener_update"] = [status, body.get("role")]
result["listener_update_why"] = why
status, _, body = call(client, "READ", type=D + "listener", name="extra")
result["listener_read"] = [status, body.get("role")]
late, _ = attempt(extra)
result["listener_late"] = late
# The connection accepted before the UPDATE keeps its settings.
result["listener_early_carries_on"] = exchange(early_conn, "greetings") if early_conn else None

status, why, _ = call(client, "DELETE", type=D + "listener", name="extra")
result["listener_delete"] = [status, why]
status, why, _ = call(client, "DELETE", type=D + "listener", identity="listener/127.0.0.1:%s" % port)
result["listener_delete_again"] = status
try:
    socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
    result["listener_after_delete"] = "connected"
except OSError:
    result["listener_after_delete"] = "refused"
if early_conn:
    early_conn.close()
status, _, body = call(client, "QUERY", {"attributeNames": ["port"]}, entityType=D + "listener")
result["listeners_left"] = len(body["results"])

# --- address prefixes
status, why, body = call(client, "CREATE", {"prefix": "news", "distribution": "multicast"},
                         type=D + "router.config.address", name="news")
result["prefix_create"] = [status, body.get("distribution")]
status, why, _ = call(client, "CREATE", {"prefix": "news"},
                      type=D + "router.config.address", name="news2")
result["prefix_again"] = status
status, why, _ = call(client, "CREATE", {"prefix": "x", "distribution": "everywhere"},
                      type=D + "router.config.address")
result["prefix_bad"] = status


def copies(address):
    """Two receivers of `address`, one message sent: how many got it."""
    # Named apart: Proton names a link after its address, and two receivers
    # of one name on a connection break AMQP 1.0 §2.6.1.
    r1 = conn.create_receiver(address, credit=10, name="first-" + address)
    r2 = conn.create_receiver(address, credit=10, name="second-" + address)
    tx = conn.create_sender(address, options=AtMostOnce())
    tx.send(Message(body="news"), timeout=10)
    got = 0
    for r in (r1, r2):
        try:
            r.receive(timeout=2)
            got += 1
        except Exception:
            pass
    for link in (r1, r2, tx):
        link.close()
    return got


result["multicast_copies"] = copies("news.sport")
status, why, _ = call(client, "DELETE", type=D + "router.config.address", name="news")
result["prefix_delete"] = status
result["balanced_copies"] = copies("news.weather")
status, why, _ = call(client, "DELETE", type=D + "router.config.address", name="address/configured")
result["prefix_delete_configured"] = status

conn.close()
print(json.dumps(result))

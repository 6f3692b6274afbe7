"""Qpid Proton as a management client: raw AMQP management requests
(OASIS AMQP Management, as Qpid Dispatch Router's tools send them) to a
router's $management node, over a blocking request/response client.

QUERYs the router, its mesh, connections, links and addresses, READs the
router, then CREATEs a connector to HOST:PORT (with TLS profile PROFILE),
waits until the mesh has NODES routers, READs the connector, DELETEs it and
READs it again (404). Prints one JSON summary line.

usage: management.py URL HOST PORT PROFILE NODES
"""
import faulthandler
import json
import sys
import time

from proton import Message
from proton.utils import BlockingConnection, SyncRequestResponse

faulthandler.dump_traceback_later(50, exit=True)
url, host, port, profile, nodes = sys.argv[1:6]
nodes = int(nodes)
result = {"timeout": False}


def call(client, operation, body=None, **props):
    props["operation"] = operation
    r = client.call(Message(body=body if body is not None else {}, properties=props))
    return r.properties["statusCode"], r.properties.get("statusDescription"), r.body


def query(client, entity_type, names=()):
    status, why, body = call(client, "QUERY", {"attributeNames": list(names)},
                             entityType=entity_type, type="org.amqp.management",
                             name="self", offset=0, count=500)
    assert status == 200, (entity_type, status, why)
    return [dict(zip(body["attributeNames"], row)) for row in body["results"]]


conn = BlockingConnection(url, timeout=20)
client = SyncRequestResponse(conn, "$management")
D = "org.apache.qpid.dispatch."

result["router"] = query(client, D + "router", ["id", "mode"])
result["nodes"] = sorted(n["id"] for n in query(client, D + "router.node"))
result["connections"] = [(c["role"], c["dir"]) for c in query(client, D + "connection")]
result["link_types"] = sorted({l["linkType"] for l in query(client, D + "router.link")})
result["addresses"] = sorted(a["address"] for a in query(client, D + "router.address"))
status, _, body = call(client, "READ", type=D + "router")
result["read_router"] = [status, body.get("id")]
status, _, body = call(client, "GET-TYPES", type="org.amqp.management")
result["types"] = status == 200 and D + "router.node" in body

attrs = {"host": host, "port": port, "role": "inter-router", "sslProfile": profile}
status, why, body = call(client, "CREATE", attrs, type=D + "connector", name="to-D")
body = body if isinstance(body, dict) else {}
result["create"] = [status, why, body.get("name"), body.get("identity")]
name = result["create"][2]

deadline = time.monotonic() + 20
seen = []
while time.monotonic() < deadline:
    seen = sorted(n["id"] for n in query(client, D + "router.node"))
    if len(seen) >= nodes:
        break
    time.sleep(0.1)
else:
    result["timeout"] = True
result["nodes_after_create"] = seen

status, _, body = call(client, "READ", type=D + "connector", name=name)
result["read_connector"] = [status, body.get("host") if isinstance(body, dict) else None]
status, why, _ = call(client, "DELETE", type=D + "connector", name=name)
result["delete"] = [status, why]
status, why, _ = call(client, "READ", type=D + "connector", name=name)
result["read_deleted"] = status
status, why, _ = call(client, "DELETE", type=D + "router.node", name="A")
result["delete_node"] = status
conn.close()
print(json.dumps(result))

"""Full-fidelity messages through a ferry router, Qpid Proton at both ends.

The producer sends three messages carrying every section AMQP 1.0 defines:
header (every field), delivery-annotations, message-annotations,
properties (every field), application-properties (a value of every simple
type), a body (amqp-value, data, amqp-sequence: one message each) and a
footer (appended by hand: Proton's Message has no footer field). The
consumer reads each delivery's raw bytes, splits them into sections and
compares them with what was sent: field by field, value and AMQP type, and
byte for byte. The router may add message annotations of its own (reported,
not a mismatch); nothing else may differ.

usage: router_fidelity.py URL ADDRESS

Summary: {"messages": [{"name", "mismatches": [str...],
"identical_sections": [str...], "router_annotations": [str...],
"arrived_settled": bool}], "outcomes": [state...], "timeout": bool}
"""
import sys
import time
import uuid

from proton import (
    Data,
    Delivery,
    Described,
    Message,
    byte,
    char,
    decimal32,
    decimal64,
    float32,
    int32,
    short,
    symbol,
    timestamp,
    ubyte,
    uint,
    ulong,
    ushort,
)
from proton.handlers import FlowController
from proton import Handler

from router_common import Scenario, run

SECTION_NAMES = {
    0x70: "header",
    0x71: "delivery-annotations",
    0x72: "message-annotations",
    0x73: "properties",
    0x74: "application-properties",
    0x75: "data",
    0x76: "amqp-sequence",
    0x77: "amqp-value",
    0x78: "footer",
}
HEADER_FIELDS = ["durable", "priority", "ttl", "first-acquirer", "delivery-count"]
PROPERTY_FIELDS = [
    "message-id",
    "user-id",
    "to",
    "subject",
    "reply-to",
    "correlation-id",
    "content-type",
    "content-encoding",
    "absolute-expiry-time",
    "creation-time",
    "group-id",
    "group-sequence",
    "reply-to-group-id",
]


def full_message(address, name, body, inferred):
    now = time.time()
    msg = Message(body=body, inferred=inferred)
    # header, every field away from its default
    msg.durable = True
    msg.priority = 9
    msg.ttl = 120.0
    msg.first_acquirer = True
    msg.delivery_count = 5
    msg.instructions = {
        symbol("x-opt-delivery-note"): "for the next hop",
        symbol("x-opt-delivery-number"): ulong(77),
    }
    msg.annotations = {
        symbol("x-opt-name"): name,
        symbol("x-opt-int"): int32(-12),
        symbol("x-opt-list"): ["a", 1, True],
        symbol("x-opt-map"): {symbol("k"): "v"},
    }
    # properties, every field
    msg.id = uuid.UUID("6b1d5f2a-3c4e-4f60-8a9b-0c1d2e3f4a5b")
    msg.user_id = b"ferry-test-user"
    msg.address = address
    msg.subject = f"subject of {name}"
    msg.reply_to = "replies/here"
    msg.correlation_id = ulong(9_876_543_210)
    msg.content_type = symbol("application/x-ferry-test")
    msg.content_encoding = symbol("identity")
    msg.expiry_time = now + 3600
    msg.creation_time = now
    msg.group_id = "group-1"
    msg.group_sequence = 42
    msg.reply_to_group_id = "reply-group-1"
    # application-properties: every simple type
    msg.properties = {
        "null": None,
        "bool": True,
        "ubyte": ubyte(200),
        "ushort": ushort(60000),
        "uint": uint(4_000_000_000),
        "ulong": ulong(18_000_000_000_000_000_000),
        "byte": byte(-100),
        "short": short(-30000),
        "int": int32(-2_000_000_000),
        "long": -9_000_000_000_000_000_000,
        "float": float32(1.5),
        "double": 3.141592653589793,
        "decimal32": decimal32(0x2233_4455),
        "decimal64": decimal64(0x1122_3344_5566_7788),
        "char": char("\u00e9"),
        "timestamp": timestamp(1_700_000_000_123),
        "uuid": uuid.UUID("00112233-4455-6677-8899-aabbccddeeff"),
        "binary": b"\x00\x01\xfe\xff",
        "string": "h\u00e9llo \u2603",
        "symbol": symbol("a-symbol"),
    }
    raw = msg.encode()
    footer = Data()
    footer.put_object(
        Described(
            ulong(0x78),
            {symbol("x-opt-checksum"): "0123abcd", symbol("x-opt-signed-by"): name},
        )
    )
    return raw + footer.encode()


MESSAGES = [
    ("amqp-value", {"text": "a map body", "n": 7, "nested": [1, "two", {"three": 3.0}]}, False),
    ("data", b"\x00binary payload\xff" * 20, True),
    ("amqp-sequence", ["first", 2, 3.5, None], True),
]


class Raw:
    """Pre-encoded message bytes that Sender.send() streams as one delivery."""

    def __init__(self, encoded):
        self.encoded = encoded

    def send(self, sender, tag=None):
        dlv = sender.delivery(tag or sender.delivery_tag())
        sender.stream(self.encoded)
        sender.advance()
        return dlv


def split_sections(raw):
    """[(code, raw bytes, decoded value)] of an encoded message, in order."""
    sections = []
    pos = 0
    while pos < len(raw):
        data = Data()
        used = data.decode(raw[pos:])
        data.rewind()
        data.next()
        value = data.get_object()
        code = int(value.descriptor) if isinstance(value, Described) else None
        sections.append((code, raw[pos : pos + used], value.value if code is not None else value))
        pos += used
    return sections


def typed(value):
    """A value with the AMQP type of every part spelled out, so that equal
    numbers of different AMQP types compare unequal."""
    if isinstance(value, dict):
        return ("map", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, Described):
        return ("described", typed(value.descriptor), typed(value.value))
    return (type(value).__name__, value)


def compare(sent, got):
    """(mismatches, identical section names, router-added annotation keys)."""
    mismatches = []
    identical = []
    router_keys = []
    sent_by = {code: (blob, value) for code, blob, value in sent}
    got_by = {code: (blob, value) for code, blob, value in got}
    sent_order = [SECTION_NAMES.get(c, str(c)) for c, _, _ in sent]
    got_order = [SECTION_NAMES.get(c, str(c)) for c, _, _ in got]
    if sent_order != got_order:
        mismatches.append(f"sections: sent {sent_order}, received {got_order}")
    for code, (blob, value) in sent_by.items():
        name = SECTION_NAMES.get(code, str(code))
        if code not in got_by:
            mismatches.append(f"{name}: missing")
            continue
        got_blob, got_value = got_by[code]
        if got_blob == blob:
            identical.append(name)
        if code == 0x72:
            # Message annotations: ours must all arrive unchanged; the
            # router may add its own.
            for key, v in value.items():
                if key not in got_value:
                    mismatches.append(f"{name}[{key}]: missing")
                elif typed(got_value[key]) != typed(v):
                    mismatches.append(f"{name}[{key}]: sent {typed(v)!r}, received {typed(got_value[key])!r}")
            router_keys = [str(k) for k in got_value if k not in value]
        elif code in (0x70, 0x73):
            fields = HEADER_FIELDS if code == 0x70 else PROPERTY_FIELDS
            got_list = list(got_value) + [None] * (len(fields) - len(got_value))
            sent_list = list(value) + [None] * (len(fields) - len(value))
            for field, a, b in zip(fields, sent_list, got_list):
                if typed(a) != typed(b):
                    mismatches.append(f"{name}.{field}: sent {typed(a)!r}, received {typed(b)!r}")
        elif code in (0x71, 0x74, 0x78):
            for key in set(value) | set(got_value):
                a, b = value.get(key, "<absent>"), got_value.get(key, "<absent>")
                if typed(a) != typed(b):
                    mismatches.append(f"{name}[{key}]: sent {typed(a)!r}, received {typed(b)!r}")
            if list(value) != list(got_value):
                mismatches.append(f"{name}: key order sent {list(value)}, received {list(got_value)}")
        elif typed(value) != typed(got_value):
            mismatches.append(f"{name}: sent {typed(value)!r}, received {typed(got_value)!r}")
        if code != 0x72 and got_blob != blob and not any(m.startswith(name) for m in mismatches):
            mismatches.append(f"{name}: same values but different bytes: sent {blob.hex()}, received {got_blob.hex()}")
    for code in got_by:
        if code not in sent_by:
            mismatches.append(f"{SECTION_NAMES.get(code, str(code))}: added by the router")
    return mismatches, identical, router_keys


class RawConsumer(Handler):
    """Link handler for the consumer: reads each delivery's bytes itself."""

    def __init__(self, scenario):
        super().__init__()
        self.handlers = [FlowController(10)]
        self.scenario = scenario

    def on_link_remote_open(self, event):
        self.scenario.consumer_ready()

    def on_delivery(self, event):
        dlv = event.delivery
        if dlv.readable and not dlv.partial:
            arrived_settled = dlv.settled
            raw = dlv.link.recv(dlv.pending)
            dlv.link.advance()
            dlv.update(Delivery.ACCEPTED)
            dlv.settle()
            self.scenario.received(raw, arrived_settled)


class Fidelity(Scenario):
    def __init__(self, url, address):
        super().__init__(url)
        self.address = address
        self.producing = False
        self.sent = []
        self.messages = []
        self.outcomes = []

    def setup(self, container):
        container.create_receiver(
            self.connect(), self.address, name="consumer", handler=RawConsumer(self)
        )

    def consumer_ready(self):
        if not self.producing:
            self.producing = True
            self.container.create_sender(self.connect(), self.address, name="producer")

    def on_sendable(self, event):
        while event.sender.credit and len(self.sent) < len(MESSAGES):
            name, body, inferred = MESSAGES[len(self.sent)]
            raw = full_message(self.address, name, body, inferred)
            self.sent.append((name, split_sections(raw)))
            event.sender.send(Raw(raw))

    def received(self, raw, arrived_settled):
        index = len(self.messages)
        name, sent = self.sent[index] if index < len(self.sent) else (f"unexpected {index}", [])
        try:
            mismatches, identical, router_keys = compare(sent, split_sections(raw))
        except Exception as error:  # report undecodable input, do not crash
            mismatches, identical, router_keys = [f"cannot decode: {error!r}: {raw.hex()}"], [], []
        self.messages.append(
            {
                "name": name,
                "mismatches": mismatches,
                "identical_sections": identical,
                "router_annotations": router_keys,
                "arrived_settled": arrived_settled,
            }
        )
        self.check()

    def on_accepted(self, event):
        self.outcomes.append("accepted")
        self.check()

    def on_rejected(self, event):
        self.outcomes.append("rejected")
        self.check()

    def on_released(self, event):
        self.outcomes.append(
            "modified" if event.delivery.remote_state == Delivery.MODIFIED else "released"
        )
        self.check()

    def check(self):
        if len(self.messages) >= len(MESSAGES) and len(self.outcomes) >= len(MESSAGES):
            self.summarise()
            self.finish()

    def summarise(self):
        self.result.update(messages=self.messages, outcomes=self.outcomes)

    def progress(self):
        self.summarise()
        return {"sent": len(self.sent)}


if __name__ == "__main__":
    run(Fidelity(*sys.argv[1:3]))

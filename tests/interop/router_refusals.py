"""Links a ferry router cannot serve, attached by Qpid Proton on one
connection: a transaction controller (a sender whose target is a
coordinator), a sender with a dynamic target, and a receiver asking for
distribution-mode copy (browsing). Each must be refused: the router answers
the attach and detaches with an error. Afterwards a plain receiver on the
same connection must still attach (the connection carries on).

usage: router_refusals.py URL

Summary: {"links": {name: {"remote_opened": bool, "remote_closed": bool,
"condition": {name, description, info} or null, "remote_terminus_type":
"null" | "source" | "target" | "coordinator", "remote_terminus_address"}},
"after": {"opened": bool, "source": address}, "connection_error": condition
(only if the connection was closed), "timeout": bool}
"""
import sys

from proton import Terminus, symbol
from proton.reactor import Copy, LinkOption

from router_common import Scenario, condition_json, run


class CoordinatorTarget(LinkOption):
    """What Proton's own declare_transaction() sets on its controller."""

    def apply(self, link):
        link.target.type = Terminus.COORDINATOR
        link.target.capabilities.put_object(symbol("amqp:local-transactions"))


class DynamicTarget(LinkOption):
    def apply(self, link):
        link.target.address = None
        link.target.dynamic = True


REFUSED = ["coordinator", "dynamic-target", "copy-source"]


class Refusals(Scenario):
    def __init__(self, url):
        super().__init__(url)
        self.links = {name: {"remote_opened": False, "remote_closed": False, "condition": None}
                      for name in REFUSED}
        self.conn = None
        self.after_started = False

    def setup(self, container):
        self.conn = self.connect()
        container.create_sender(self.conn, None, name="coordinator", options=CoordinatorTarget())
        container.create_sender(self.conn, None, name="dynamic-target", options=DynamicTarget())
        container.create_receiver(self.conn, "browse-me", name="copy-source", options=Copy())

    def on_link_opened(self, event):
        link = event.link
        if link.name in self.links:
            entry = self.links[link.name]
            entry["remote_opened"] = True
            terminus = link.remote_target if link.is_sender else link.remote_source
            entry["remote_terminus_type"] = {
                Terminus.UNSPECIFIED: "null",
                Terminus.SOURCE: "source",
                Terminus.TARGET: "target",
                Terminus.COORDINATOR: "coordinator",
            }.get(terminus.type, str(terminus.type))
            entry["remote_terminus_address"] = terminus.address
        elif link.name == "after":
            self.result["after"] = {"opened": True, "source": link.remote_source.address}
            self.summarise()
            self.finish()

    def closed(self, event):
        link = event.link
        if link.name in self.links:
            entry = self.links[link.name]
            entry["remote_closed"] = True
            entry["condition"] = condition_json(link.remote_condition)
            if all(e["remote_closed"] for e in self.links.values()) and not self.after_started:
                self.after_started = True
                self.container.create_receiver(self.conn, "still-serving", name="after")
        elif link.name == "after":
            self.result["after"] = {"opened": False, "condition": condition_json(link.remote_condition)}
            self.summarise()
            self.finish()

    # Proton calls on_link_error for a detach with an error, else on_link_closed.
    on_link_error = closed
    on_link_closed = closed

    def on_connection_error(self, event):
        self.result["connection_error"] = condition_json(event.connection.remote_condition)
        self.summarise()
        self.finish()

    def summarise(self):
        self.result["links"] = self.links

    def progress(self):
        self.summarise()
        return {"after_started": self.after_started}


if __name__ == "__main__":
    run(Refusals(sys.argv[1]))

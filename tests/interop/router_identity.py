"""What a ferry router says it is, as Qpid Proton reads it: the connection
properties of the router's open (tools such as interop suites read
`product` and `version` to tell which broker or router they talk to, as
Qpid Dispatch Router sends them).

usage: router_identity.py URL

Summary: {"properties": {key: value} or null (the router's open
properties), "container": the router's container id, "timeout": bool}
"""
import sys

from router_common import Scenario, plain, run


class Identity(Scenario):
    def setup(self, container):
        self.connect()

    def on_connection_opened(self, event):
        conn = event.connection
        props = conn.remote_properties
        self.result["properties"] = (
            {str(k): plain(v) for k, v in props.items()} if props is not None else None
        )
        self.result["container"] = conn.remote_container
        self.finish()


if __name__ == "__main__":
    run(Identity(sys.argv[1]))

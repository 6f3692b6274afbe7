"""A Qpid Proton client in a virtual host of a ferry router: the vhost is
the hostname of its open (`virtual_host`).

usage: router_vhost.py URL receive VHOST ADDRESS N
       router_vhost.py URL send VHOST ADDRESS N PREFIX

receive: takes N messages from ADDRESS (accepting each), then waits one
second more for any extra; summary {"received": [bodies], "timeout"}.
send: sends N messages "PREFIX-i" to ADDRESS; summary
{"outcomes": {"accepted": n, ...}, "timeout"}.
A refused link or connection is reported as {"refused": condition}.
"""
import sys

from proton import Message

from router_common import Scenario, run


class Vhost(Scenario):
    def __init__(self, url, mode, vhost, address, n, prefix=None):
        super().__init__(url)
        self.mode, self.vhost, self.address = mode, vhost, address
        self.n, self.prefix = n, prefix
        self.sent = 0
        if mode == "receive":
            self.result["received"] = []
        else:
            self.result["outcomes"] = {}

    def setup(self, container):
        conn = container.connect(self.url, virtual_host=self.vhost, reconnect=False)
        self.connections.append(conn)
        if self.mode == "receive":
            container.create_receiver(conn, self.address)
        else:
            container.create_sender(conn, self.address)

    def on_link_opened(self, event):
        if self.mode == "receive" and event.receiver:
            print("attached", flush=True)

    def on_sendable(self, event):
        while event.sender.credit and self.sent < self.n:
            event.sender.send(Message(body=f"{self.prefix}-{self.sent}"))
            self.sent += 1

    def on_message(self, event):
        self.result["received"].append(event.message.body)
        if len(self.result["received"]) == self.n:
            self.container.schedule(1.0, self.Stop(self))

    class Stop:
        def __init__(self, scenario):
            self.scenario = scenario

        def on_timer_task(self, event):
            self.scenario.finish()

    def outcome(self, name):
        o = self.result["outcomes"]
        o[name] = o.get(name, 0) + 1
        if sum(o.values()) == self.n:
            self.finish()

    def on_accepted(self, event):
        self.outcome("accepted")

    def on_rejected(self, event):
        self.outcome("rejected")

    def on_released(self, event):
        self.outcome("released")

    def on_link_error(self, event):
        self.result["refused"] = str(event.link.remote_condition.name)
        self.finish()

    def on_connection_error(self, event):
        self.result["refused"] = str(event.connection.remote_condition.name)
        self.done = True
        self.container.stop()


if __name__ == "__main__":
    url, mode, vhost, address, n = sys.argv[1:6]
    prefix = sys.argv[6] if len(sys.argv) > 6 else None
    run(Vhost(url, mode, vhost, address, int(n), prefix))

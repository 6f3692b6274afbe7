"""Shared plumbing for the router_*.py scripts: Qpid Proton clients driven
against a running `ferry` router by tests/tests/router_proton.rs.

Every script prints exactly one JSON summary line on stdout when it ends,
whether it finished or gave up. Every wait is bounded: a scenario that does
not complete within its timeout stops, reports `"timeout": true` and what
it saw so far; a hard watchdog ends the process if even that hangs.
"""
import faulthandler
import json
import sys

from proton.handlers import MessagingHandler
from proton.reactor import Container

# Seconds a scenario may take before it gives up (the Rust side waits longer).
TIMEOUT = 20.0


class Scenario(MessagingHandler):
    """A MessagingHandler with a deadline, a result dict and a clean finish.

    Subclasses implement `setup(container)` and call `self.finish()` once
    they have what they need; `self.result` is printed as JSON.
    """

    def __init__(self, url, timeout=TIMEOUT, **kwargs):
        super().__init__(**kwargs)
        self.url = url
        self.timeout = timeout
        self.result = {"timeout": False}
        self.connections = []
        self.done = False
        self.container = None
        self.timer = None

    # -- lifecycle -------------------------------------------------------

    def on_start(self, event):
        self.container = event.container
        self.timer = event.container.schedule(self.timeout, self)
        self.setup(event.container)

    def connect(self, url=None):
        """A new connection to the router (each one a separate AMQP client),
        or to the router at `url`."""
        conn = self.container.connect(url or self.url, reconnect=False)
        self.connections.append(conn)
        return conn

    def on_timer_task(self, event):
        if not self.done:
            self.result["timeout"] = True
            self.result["state"] = self.progress()
        self.container.stop()

    def progress(self):
        """What to report about the scenario's state when it times out."""
        return None

    def finish(self):
        """Records completion and closes every connection; the container
        stops once they are all closed (or at the deadline)."""
        if self.done:
            return
        self.done = True
        for conn in self.connections:
            conn.close()
        # Do not wait on a peer that never answers the close for long.
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.container.schedule(5.0, self)

    def on_connection_closed(self, event):
        if self.done and all(c.state & c.REMOTE_CLOSED for c in self.connections):
            if self.timer is not None:
                self.timer.cancel()
            self.container.stop()

    def on_transport_error(self, event):
        cond = event.transport.condition
        self.result.setdefault("transport_errors", []).append(
            f"{cond.name}: {cond.description}" if cond else "transport error"
        )
        if not self.done:
            self.done = True
            self.result["failed"] = True
            self.result["state"] = self.progress()
            self.container.stop()


def condition_json(cond):
    """An AMQP error condition as a JSON-friendly dict (or None)."""
    if cond is None:
        return None
    info = cond.info
    return {
        "name": str(cond.name) if cond.name is not None else None,
        "description": cond.description,
        "info": {str(k): plain(v) for k, v in info.items()} if info else None,
    }


def plain(value):
    """A Proton value as plain JSON (str() for anything exotic)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)


def run(scenario):
    """Runs `scenario` to completion and prints its summary line."""
    # Watchdog: dump the stacks and exit if the reactor itself hangs.
    faulthandler.dump_traceback_later(scenario.timeout + 15, exit=True)
    Container(scenario).run()
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps(scenario.result), flush=True)
    sys.stdout.flush()

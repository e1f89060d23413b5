"""An actor with a plain ``def receive`` that asks another actor with ``ask_sync``.

    actorcluster run examples.counter:handler --actor counter=examples.counter:Counter \\
        --actor report=examples.report:Report
    curl http://127.0.0.1:8000/                      # {"hits":1}
    actorcluster ask report '"summary"'              # "the counter is at 1"
"""

from actorcluster import Actor, ask_sync


class Report(Actor):
    def receive(self, message):  # plain def: its process waits for the counter's reply in place
        if message == "summary":
            return f"the counter is at {ask_sync('counter', 'get', timeout=2.0)}"
        raise ValueError(f"unknown message {message!r}")

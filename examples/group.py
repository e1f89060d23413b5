"""An HTTP handler that is also an actor: each worker of the pool is the actor web/N.

    actorcluster run examples.group:Web --workers 2 --name group
    curl http://127.0.0.1:8000/          # web/1: 0 pings (or web/2: the next worker in turn)
    python examples/group_client.py      # broadcast, ask_all, lookup from a script
"""

from actorcluster import Actor


class Web(Actor):
    def on_start(self):  # in each worker, before its first connection
        self.pings = 0

    def receive(self, message):  # messages to web/N, or to the group web (one member, in turn)
        if message == "ping":
            self.pings += 1
        elif message == "pings":
            return [self.ref.base_name, self.pings]

    async def handle(self, request):  # the HTTP side
        return f"{self.ref.base_name}: {self.pings} pings\n"

"""A counter actor and an HTTP handler that talks to it.

    actorcluster run examples.counter:handler --actor counter=examples.counter:Counter
    curl http://127.0.0.1:8000/          # {"hits":1}, then 2, 3 ... across every worker
"""

from actorcluster import Actor, ask, tell


class Counter(Actor):
    def on_start(self):  # runs in the actor's own process before the first message
        self.count = 0

    def receive(self, message):  # its return value answers an ask
        match message:
            case ("add", n):
                self.count += n
            case "get":
                return self.count


async def handler(request):  # any worker of the HTTP pool may talk to any actor
    tell("counter", ("add", 1))
    return {"hits": await ask("counter", "get", timeout=2.0)}

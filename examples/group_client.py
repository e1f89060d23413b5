"""Talk to the cluster of examples/group.py from a script (docs/messages.md, "Groups")."""

import actorcluster
from actorcluster import ActorNotFound, ClusterNotFound, broadcast, lookup

try:
    cluster = actorcluster.connect("group")  # an actorcluster.Client
except ClusterNotFound as exc:  # not running: the message lists the clusters that are
    raise SystemExit(f"{exc}\nstart it: actorcluster run examples.group:Web --name group") from None

with cluster:
    broadcast("web", "ping")  # every live member of the group web
    print(cluster.ask_all("web", "pings"))  # [['web/1', 1], ['web/2', 1]], in member order
    print(lookup("web/2").ask_sync("pings"))  # ['web/2', 1]
    try:
        cluster.ask("web/9", "pings")
    except ActorNotFound as exc:  # an ActorError, as every messaging failure
        print(exc)  # cannot deliver to 'web/9': no such actor

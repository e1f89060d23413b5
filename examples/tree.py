"""The supervision tree of examples/actorcluster.toml, built in Python.

    actorcluster run examples.tree:tree

Targets may be given as "MODULE:ATTR" strings or as the objects themselves (a handler function,
an Actor subclass defined at a module's top level).
"""

from actorcluster import ActorSpec, Pool, Supervisor
from examples.counter import Counter, handler

tree = Supervisor(
    strategy="one_for_one",
    max_restarts=5,
    within=10,
    children=[
        ActorSpec("counter", Counter, restart="permanent", shutdown=5),
        Pool("web", handler, workers="auto"),
        Supervisor(
            "pipeline",
            strategy="rest_for_one",
            max_restarts=3,
            within=5,
            backoff=None,
            children=[
                ActorSpec("source", "examples.pipeline:Source"),
                ActorSpec("sink", "examples.pipeline:Sink", restart="transient"),
            ],
        ),
    ],
)

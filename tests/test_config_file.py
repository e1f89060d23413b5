"""Supervision trees from TOML files, mappings and Python objects: the checks and their messages.

Pure: no cluster, no processes. Every error names the file, the line (where the locator knows it),
the path in the tree, the bad value and what is allowed.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from actorcluster import Actor, ConfigError
from actorcluster.config_file import (
    FileConfig,
    check_targets,
    check_tree,
    child_from_mapping,
    load_file,
    locate_lines,
    render_tree,
    tree_from_mapping,
)
from actorcluster.specs import ActorSpec, Backoff, Pool, Supervisor

EXAMPLE = """\
# actorcluster.toml
[cluster]                      # optional: cluster settings
name = "shop"

[http]                         # optional: the listening socket and HTTP settings
bind = "127.0.0.1:8000"

[supervisor]                   # the root; the primary is this supervisor
strategy = "one_for_one"       # one_for_one | one_for_all | rest_for_one
max_restarts = 5               # intensity ...
within = 10                    # ... per this many seconds

[[supervisor.children]]
name = "counter"
actor = "examples.counter:Counter"
restart = "permanent"          # permanent | transient | temporary
shutdown = 5                   # seconds, or "brutal_kill", or "infinity"

[[supervisor.children]]
name = "web"
http = "examples.counter:handler"
workers = "auto"               # or a number

[[supervisor.children]]
name = "pipeline"              # a nested supervisor
strategy = "rest_for_one"
max_restarts = 3
within = 5
backoff = { initial = 0.1, max = 5.0 }
children = [
  { name = "source", actor = "examples.pipeline:Source" },
  { name = "sink",   actor = "examples.pipeline:Sink", restart = "transient" },
]
"""

EXAMPLE_TREE = Supervisor(
    name="root", strategy="one_for_one", max_restarts=5, within=10.0, backoff=Backoff(0.05, 5.0),
    restart="permanent", shutdown="infinity", children=(
        ActorSpec("counter", "examples.counter:Counter", "permanent", 5.0),
        Pool("web", "examples.counter:handler", "auto", "permanent", None),
        Supervisor(
            name="pipeline", strategy="rest_for_one", max_restarts=3, within=5.0,
            backoff=Backoff(0.1, 5.0), restart="permanent", shutdown="infinity", children=(
                ActorSpec("source", "examples.pipeline:Source", "permanent", 5.0),
                ActorSpec("sink", "examples.pipeline:Sink", "transient", 5.0),
            )),
    ))

EXAMPLE_RENDERED = """\
root  supervisor one_for_one, 5 restarts / 10 s, backoff 0.05-5 s
├── counter  actor examples.counter:Counter, permanent, shutdown 5 s
├── web  http examples.counter:handler, 2 workers (auto), permanent, shutdown graceful-timeout
└── pipeline  supervisor rest_for_one, 3 restarts / 5 s, backoff 0.1-5 s, permanent
    ├── source  actor examples.pipeline:Source, permanent, shutdown 5 s
    └── sink  actor examples.pipeline:Sink, transient, shutdown 5 s
"""

PIPELINE_MODULE = "ac_cf_pipeline"  # stands in for examples.pipeline (written to tmp_path)


def write(tmp_path: Path, text: str, name: str = "actorcluster.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_file(path)
    return str(info.value)


def assert_has(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# -- the example -----------------------------------------------------------------------------------

def test_the_example_loads_into_a_normalized_tree(tmp_path):
    path = write(tmp_path, EXAMPLE)
    config = load_file(path)
    assert config == FileConfig(path=str(path), tree=EXAMPLE_TREE,
                                settings={"name": "shop", "bind": "127.0.0.1:8000"})
    assert isinstance(config.tree.children, tuple)
    assert isinstance(config.tree.children[2].children, tuple)
    assert type(config.tree.children[0].shutdown) is float
    assert type(config.tree.children[2].within) is float
    assert load_file(str(path)).path == str(path)  # the path as given, str or PathLike


def test_locator_maps_the_example(tmp_path):
    lines = locate_lines(EXAMPLE)
    assert lines["cluster.name"] == 3
    assert lines["supervisor"] == 8
    assert lines["supervisor.within"] == 11
    assert lines["supervisor.children[0]"] == 13
    assert lines["supervisor.children[0].restart"] == 16
    assert lines["supervisor.children[1].workers"] == 22
    assert lines["supervisor.children[2].backoff.max"] == 29
    assert lines["supervisor.children[2].children[1]"] == 32
    assert lines["supervisor.children[2].children[1].restart"] == 32


def test_settings_are_checked_and_typed(tmp_path):
    path = write(tmp_path, """
        [cluster]
        name = "shop"
        log_level = "debug"
        graceful_timeout = 3
        timeout = 2.5
        loop = "asyncio"
        standby = false
        hold_messages = 10
        hold_seconds = 1

        [http]
        bind = "unix:/tmp/shop.sock"
        keepalive = 7
        max_body = 1024
        threads = 4

        [supervisor]
    """)
    config = load_file(path)
    assert config.settings == {
        "name": "shop", "log_level": "debug", "graceful_timeout": 3.0, "timeout": 2.5,
        "loop": "asyncio", "standby": False, "hold_messages": 10, "hold_seconds": 1.0,
        "bind": "unix:/tmp/shop.sock", "keepalive": 7.0, "max_body": 1024, "threads": 4}
    assert type(config.settings["graceful_timeout"]) is float
    assert config.tree == Supervisor()  # an empty root: children may be empty


# -- reading and parsing ---------------------------------------------------------------------------

def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.toml"
    assert_has(error_of(path), f"{path}: cannot read the config file", "No such file")


def test_a_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, """
        [supervisor]
        strategy = "one_for_one"
        max_restarts = = 5
    """)
    message = error_of(path)
    assert message.startswith(f"{path}:3: invalid TOML: ")


def test_the_supervisor_table_is_required(tmp_path):
    path = write(tmp_path, """
        [cluster]
        name = "shop"
    """)
    assert_has(error_of(path), f"{path}: supervisor: missing", "[supervisor]")


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, """
        [supervisor]

        [supervisr]
        strategy = "one_for_all"
    """)
    message = error_of(path)
    assert message.startswith(f"{path}:3: supervisr: ")
    assert_has(message, 'unknown key "supervisr"', 'did you mean "supervisor"?',
               "allowed: cluster, http, supervisor")


# -- every rule, one case each: (file, line, path, what the message must also say) -----------------

CASES = {
    "strategy": ("""
        [supervisor]
        strategy = "one_for_many"
        """, 2, "supervisor.strategy",
        ['"one_for_many" is not a restart strategy',
         "allowed: one_for_one, one_for_all, rest_for_one"]),
    "restart-in-array-of-tables": ("""
        [supervisor]

        [[supervisor.children]]
        name = "counter"
        actor = "examples.counter:Counter"
        restart = "sometimes"
        """, 6, "supervisor.children[0].restart",
        ['"sometimes" is not a restart type; allowed: permanent, transient, temporary']),
    "restart-in-inline-table": ("""
        [supervisor]

        [[supervisor.children]]
        name = "pipeline"
        children = [
          { name = "source", actor = "m:Source" },
          { name = "sink", actor = "m:Sink", restart = "always" },
        ]
        """, 7, "supervisor.children[0].children[1].restart",
        ['"always" is not a restart type; allowed: permanent, transient, temporary']),
    "restart-type": ("""
        [supervisor]
        children = [{ name = "a", actor = "m:A", restart = 1 }]
        """, 2, "supervisor.children[0].restart",
        ["an integer 1 is not a restart type", "allowed: permanent, transient, temporary"]),
    "shutdown-infinity-for-an-actor": ("""
        [supervisor]

        [[supervisor.children]]
        name = "counter"
        actor = "m:Counter"
        shutdown = "infinity"
        """, 6, "supervisor.children[0].shutdown",
        ['"infinity" is only for supervisors', 'a number of seconds >= 0 or "brutal_kill"']),
    "shutdown-infinity-for-a-pool": ("""
        [supervisor]
        children = [{ name = "web", http = "m:handler", shutdown = "infinity" }]
        """, 2, "supervisor.children[0].shutdown",
        ['"infinity" is only for supervisors', "an HTTP pool must stop in a bounded time"]),
    "shutdown-negative": ("""
        [supervisor]

        [[supervisor.children]]
        name = "counter"
        actor = "m:Counter"
        shutdown = -1
        """, 6, "supervisor.children[0].shutdown",
        ["-1 is negative", 'allowed: a number of seconds >= 0 or "brutal_kill"']),
    "shutdown-word": ("""
        [supervisor]

        [[supervisor.children]]
        name = "pipeline"
        strategy = "one_for_all"
        shutdown = "soon"
        """, 6, "supervisor.children[0].shutdown",
        ['"soon" is not a shutdown',
         'allowed: a number of seconds >= 0, "brutal_kill" or "infinity"']),
    "shutdown-boolean": ("""
        [supervisor]
        children = [{ name = "a", actor = "m:A", shutdown = true }]
        """, 2, "supervisor.children[0].shutdown",
        ["a boolean (true) is not a shutdown", 'a number of seconds >= 0 or "brutal_kill"']),
    "max-restarts-type": ("""
        [supervisor]
        max_restarts = "five"
        """, 2, "supervisor.max_restarts",
        ['expected an integer >= 0, found a string "five"']),
    "max-restarts-negative": ("""
        [supervisor]

        [[supervisor.children]]
        name = "pipeline"
        max_restarts = -3
        children = []
        """, 5, "supervisor.children[0].max_restarts",
        ["-3 is negative; allowed: an integer >= 0"]),
    "within-boolean": ("""
        [supervisor]
        within = true
        """, 2, "supervisor.within",
        ["expected a number of seconds > 0, found a boolean (true)"]),
    "within-zero": ("""
        [supervisor]
        within = 0
        """, 2, "supervisor.within",
        ["0 is not allowed; allowed: a number of seconds > 0"]),
    "backoff-true": ("""
        [supervisor]
        backoff = true
        """, 2, "supervisor.backoff",
        ["a boolean (true) is not a backoff",
         "allowed: a table { initial = SECONDS, max = SECONDS } or false for none"]),
    "backoff-negative": ("""
        [supervisor]
        backoff = { initial = -0.5 }
        """, 2, "supervisor.backoff.initial",
        ["-0.5 is negative; allowed: a number of seconds >= 0"]),
    "backoff-max-below-initial": ("""
        [supervisor]

        [supervisor.backoff]
        initial = 10
        """, None, "supervisor.backoff.max",
        ["5 is less than initial 10", "allowed: a number of seconds >= initial"]),
    "backoff-unknown-key": ("""
        [supervisor]

        [supervisor.backoff]
        inital = 1
        """, 4, "supervisor.backoff.inital",
        ['unknown key "inital" in a backoff (did you mean "initial"?)', "allowed: initial, max"]),
    "workers-zero": ("""
        [supervisor]

        [[supervisor.children]]
        name = "web"
        http = "m:handler"
        workers = 0
        """, 6, "supervisor.children[0].workers",
        ['an integer 0 is not a worker count; allowed: "auto"', "or an integer from 1 to 1024"]),
    "workers-too-many": ("""
        [supervisor]
        children = [{ name = "web", http = "m:handler", workers = 1000000 }]
        """, 2, "supervisor.children[0].workers",
        ["an integer 1000000 is not a worker count", "or an integer from 1 to 1024"]),
    "workers-word": ("""
        [supervisor]
        children = [{ name = "web", http = "m:handler", workers = "many" }]
        """, 2, "supervisor.children[0].workers",
        ['"many" is not a worker count; allowed: "auto"', "or an integer from 1 to 1024"]),
    "name-invalid": ("""
        [supervisor]

        [[supervisor.children]]
        name = "my counter!"
        actor = "m:Counter"
        """, 4, "supervisor.children[0].name",
        ['"my counter!" is not a valid name', "use 1-64 ASCII letters, digits"]),
    "name-primary": ("""
        [supervisor]
        children = [{ name = "primary", actor = "m:A" }]
        """, 2, "supervisor.children[0].name",
        ['"primary" is reserved', "reserved: primary, root"]),
    "name-root": ("""
        [supervisor]

        [[supervisor.children]]
        name = "root"
        strategy = "one_for_one"
        """, 4, "supervisor.children[0].name",
        ['"root" is reserved', "the root supervisor's name", "reserved: primary, root"]),
    "name-missing": ("""
        [supervisor]

        [[supervisor.children]]
        actor = "m:Counter"
        """, 3, "supervisor.children[0]",
        ['missing "name": an actor needs a name', "use 1-64 ASCII letters"]),
    "name-type": ("""
        [supervisor]
        children = [{ name = 7, actor = "m:A" }]
        """, 2, "supervisor.children[0].name",
        ["expected a name (a string), found an integer 7"]),
    "actor-target": ("""
        [supervisor]

        [[supervisor.children]]
        name = "counter"
        actor = "examples.counter.Counter"
        """, 5, "supervisor.children[0].actor",
        ['"examples.counter.Counter" is not a target',
         'allowed: "MODULE:ATTR", e.g. "examples.counter:Counter"']),
    "http-target": ("""
        [supervisor]
        children = [{ name = "web", http = ":handler" }]
        """, 2, "supervisor.children[0].http",
        ['":handler" is not a target', 'allowed: "MODULE:ATTR", e.g. "examples.counter:handler"']),
    "target-type": ("""
        [supervisor]
        children = [{ name = "web", http = 3 }]
        """, 2, "supervisor.children[0].http",
        ['expected a target "MODULE:ATTR"', "found an integer 3"]),
    "kind-none": ("""
        [supervisor]

        [[supervisor.children]]
        name = "counter"
        restart = "transient"
        """, 3, "supervisor.children[0]",
        ["cannot tell what kind of child this is (keys: name, restart)",
         '"actor" makes an actor, "http" makes an HTTP pool, "children" or "strategy" makes a '
         "supervisor"]),
    "kind-none-typo": ("""
        [supervisor]
        children = [{ name = "counter", actr = "m:Counter" }]
        """, 2, "supervisor.children[0].actr",
        ['unknown key "actr" (did you mean "actor"?)', '"actor" makes an actor']),
    "kind-many": ("""
        [supervisor]

        [[supervisor.children]]
        name = "both"
        actor = "m:Counter"
        http = "m:handler"
        """, 3, "supervisor.children[0]",
        ["a child of more than one kind (an actor and an HTTP pool; keys: name, actor, http)",
         '"actor" makes an actor, "http" makes an HTTP pool']),
    "unknown-key-did-you-mean": ("""
        [supervisor]

        [[supervisor.children]]
        name = "counter"
        actor = "m:Counter"
        restrat = "transient"
        """, 6, "supervisor.children[0].restrat",
        ['unknown key "restrat" in an actor (did you mean "restart"?)',
         "allowed: name, actor, restart, shutdown"]),
    "unknown-key-of-another-kind": ("""
        [supervisor]
        children = [{ name = "counter", actor = "m:Counter", workers = 2 }]
        """, 2, "supervisor.children[0].workers",
        ['unknown key "workers" in an actor ("workers" is a key of an HTTP pool)',
         "allowed: name, actor, restart, shutdown"]),
    "root-restart": ("""
        [supervisor]
        restart = "permanent"
        """, 2, "supervisor.restart",
        ["the root supervisor has no supervisor above it", '"permanent"',
         "allowed: strategy, max_restarts, within, backoff, children"]),
    "root-shutdown": ("""
        [supervisor]
        strategy = "one_for_all"
        shutdown = 5
        """, 3, "supervisor.shutdown",
        ["the root supervisor has no supervisor above it", "(found 5)"]),
    "root-name": ("""
        [supervisor]
        name = "main"
        """, 2, "supervisor.name",
        ['the root supervisor is always named "root" (found "main")', 'remove "name"']),
    "children-not-an-array": ("""
        [supervisor]
        children = "counter"
        """, 2, "supervisor.children",
        ['expected an array of children, found a string "counter"']),
    "child-not-a-table": ("""
        [supervisor]
        children = [
          1,
        ]
        """, 3, "supervisor.children[0]",
        ["expected a table (an actor, an HTTP pool or a supervisor), found an integer 1"]),
    "supervisor-not-a-table": ("""
        supervisor = "root"
        """, 1, "supervisor",
        ['expected a table (the root supervisor), found a string "root"']),
    "cluster-unknown-key": ("""
        [cluster]
        nme = "shop"

        [supervisor]
        """, 2, "cluster.nme",
        ['unknown key "nme" in [cluster] (did you mean "name"?)', "allowed: name, log_level"]),
    "http-workers-hint": ("""
        [http]
        workers = 4

        [supervisor]
        """, 2, "http.workers",
        ['unknown key "workers" in [http] (set "workers" on the HTTP pool',
         "allowed: bind, keepalive, max_body, request_timeout, threads"]),
    "setting-type": ("""
        [cluster]
        timeout = "5s"

        [supervisor]
        """, 2, "cluster.timeout", ['expected a number, found a string "5s"']),
    "setting-boolean-is-not-a-number": ("""
        [cluster]
        graceful_timeout = true

        [supervisor]
        """, 2, "cluster.graceful_timeout", ["expected a number, found a boolean (true)"]),
    "setting-bool": ("""
        [cluster]
        standby = 1

        [supervisor]
        """, 2, "cluster.standby", ["expected true or false, found an integer 1"]),
    "setting-choices": ("""
        [cluster]
        log_level = "loud"

        [supervisor]
        """, 2, "cluster.log_level",
        ['"loud" is not allowed; allowed: critical, error, warning, info, debug']),
    "setting-minimum": ("""
        [http]
        threads = 0

        [supervisor]
        """, 2, "http.threads", ["0 is less than 1; allowed: an integer >= 1"]),
    "setting-bind": ("""
        [http]
        bind = "localhost"

        [supervisor]
        """, 2, "http.bind",
        ['"localhost" is not an address; allowed: HOST:PORT (e.g. 127.0.0.1:8000) or unix:/path']),
    "setting-name": ("""
        [cluster]
        name = "my shop"

        [supervisor]
        """, 2, "cluster.name", ['"my shop" is not a valid cluster name', "1-64 ASCII letters"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_mistake_is_named_with_file_line_path_value_and_what_is_allowed(tmp_path, case):
    text, line, tree_path, parts = case
    path = write(tmp_path, text)
    message = error_of(path)
    where = f"{path}:{line}" if line else str(path)
    assert message.startswith(f"{where}: {tree_path}: "), message
    assert_has(message, *parts)


def test_did_you_mean_strategy(tmp_path):
    path = write(tmp_path, """
        [supervisor]
        stratgy = "one_for_all"
    """)
    assert error_of(path) == (
        f'{path}:2: supervisor.stratgy: unknown key "stratgy" in the root supervisor '
        '(did you mean "strategy"?); allowed: strategy, max_restarts, within, backoff, children')


def test_every_mistake_in_the_file_is_reported_at_once_in_line_order(tmp_path):
    path = write(tmp_path, """
        [supervisor]
        stratgy = "one_for_all"
        within = -1

        [[supervisor.children]]
        name = "counter"
        actor = "m:Counter"
        restart = "sometimes"
        shutdwn = 5

        [[supervisor.children]]
        name = "inner"
        strategy = "all_for_one"
        children = [{ name = "web", http = "m:handler", workers = "many" }]
    """)
    lines = error_of(path).split("\n")
    assert [line.split(": ")[0:2] for line in lines] == [
        [f"{path}:2", "supervisor.stratgy"],
        [f"{path}:3", "supervisor.within"],
        [f"{path}:8", "supervisor.children[0].restart"],
        [f"{path}:9", "supervisor.children[0].shutdwn"],
        [f"{path}:13", "supervisor.children[1].strategy"],
        [f"{path}:14", "supervisor.children[1].children[0].workers"],
    ], lines
    assert 'did you mean "strategy"' in lines[0] and 'did you mean "shutdown"' in lines[3]


def test_duplicate_names_across_nesting_levels(tmp_path):
    path = write(tmp_path, """
        [supervisor]

        [[supervisor.children]]
        name = "counter"
        actor = "m:Counter"

        [[supervisor.children]]
        name = "pipeline"
        children = [
          { name = "source", actor = "m:Source" },
          { name = "inner", children = [{ name = "counter", http = "m:handler" }] },
        ]
    """)
    message = error_of(path)
    assert message.startswith(f"{path}:11: supervisor.children[1].children[1].children[0].name: ")
    assert_has(message, '"counter" is used twice', "also at supervisor.children[0].name",
               "share one namespace")


def test_a_supervisor_and_an_actor_may_not_share_a_name(tmp_path):
    path = write(tmp_path, """
        [supervisor]
        children = [
          { name = "pipeline", strategy = "one_for_one" },
          { name = "pipeline", actor = "m:A" },
        ]
    """)
    assert_has(error_of(path), f"{path}:4: supervisor.children[1].name",
               "also at supervisor.children[0].name")


def test_one_http_pool_per_cluster(tmp_path):
    path = write(tmp_path, """
        [supervisor]

        [[supervisor.children]]
        name = "web"
        http = "m:handler"

        [[supervisor.children]]
        name = "inner"

        [[supervisor.children.children]]
        name = "api"
        http = "m:api"
    """)
    message = error_of(path)
    assert message.startswith(f"{path}:10: supervisor.children[1].children[0]: ")
    assert_has(message, 'a second HTTP pool "api"', "the first is at supervisor.children[0]",
               "one HTTP pool per cluster for now")


def test_accepted_values(tmp_path):
    path = write(tmp_path, """
        [supervisor]
        strategy = "one_for_all"
        backoff = false
        max_restarts = 0
        within = 0.5

        [[supervisor.children]]
        name = "a"
        actor = "m:A"
        shutdown = "brutal_kill"
        restart = "temporary"

        [[supervisor.children]]
        http = "m:handler"  # a pool's name defaults to "web"
        workers = 3
        shutdown = 0

        [[supervisor.children]]
        name = "sub"
        strategy = "one_for_one"
        shutdown = 2
        backoff = { max = 1 }
    """)
    tree = load_file(path).tree
    assert tree == Supervisor(
        strategy="one_for_all", backoff=None, max_restarts=0, within=0.5, children=(
            ActorSpec("a", "m:A", "temporary", "brutal_kill"),
            Pool("web", "m:handler", 3, "permanent", 0.0),
            Supervisor("sub", "one_for_one", (), backoff=Backoff(0.05, 1.0), shutdown=2.0),
        ))


# -- the locator -----------------------------------------------------------------------------------

def test_locator_follows_nested_arrays_of_tables(tmp_path):
    text = textwrap.dedent("""\
        [supervisor]

        [[supervisor.children]]
        name = "a"
        actor = "m:A"

        [[supervisor.children]]
        name = "outer"

        [[supervisor.children.children]]
        name = "x"
        actor = "m:X"

        [[supervisor.children.children]]
        name = "y"
        actor = "m:Y"
        restart = "never"

        [supervisor.children.backoff]
        initial = 1
    """)
    lines = locate_lines(text)
    assert lines["supervisor.children[1]"] == 7
    assert lines["supervisor.children[1].children[0]"] == 10
    assert lines["supervisor.children[1].children[1].restart"] == 17
    assert lines["supervisor.children[1].backoff.initial"] == 20
    path = write(tmp_path, text)
    assert error_of(path).startswith(f"{path}:17: supervisor.children[1].children[1].restart: ")


def test_locator_is_not_fooled_by_strings_and_comments():
    text = textwrap.dedent('''\
        [supervisor]   # [[supervisor.children]] in a comment
        strategy = "one_for_one" # = {
        note = """
        [[supervisor.children]]
        restart = "x"
        """
        other = 'a # b [c] {d}'
        "quoted key" = "\\" ]"
        children = [ # a comment [ {
          { name = "a", actor = "m:A" },  # }
          # { name = "commented" },

          {
            name = "b",
            actor = "m:B",
          },
        ]
        dotted.key = 1
    ''')
    lines = locate_lines(text)
    assert lines["supervisor.strategy"] == 2
    assert lines["supervisor.note"] == 3
    assert lines["supervisor.other"] == 7
    assert lines["supervisor.quoted key"] == 8
    assert lines["supervisor.children[0]"] == 10
    assert lines["supervisor.children[1]"] == 13
    assert lines["supervisor.children[1].actor"] == 15
    assert lines["supervisor.dotted.key"] == 18
    assert "supervisor.children[2]" not in lines
    assert "supervisor.children[0].restart" not in lines


def test_locator_gives_up_rather_than_guessing():
    assert locate_lines("[supervisor\nstrategy = 1") == {}


# -- mappings --------------------------------------------------------------------------------------

def test_tree_from_mapping_uses_the_lines_given():
    data = {"children": [{"name": "a", "actor": "m:A", "restart": "nope"}]}
    with pytest.raises(ConfigError) as info:
        tree_from_mapping(data, source="app.toml",
                          lines={"supervisor.children[0].restart": 12})
    assert str(info.value).startswith("app.toml:12: supervisor.children[0].restart: ")
    with pytest.raises(ConfigError) as info:
        tree_from_mapping(data, source="app.toml")
    assert str(info.value).startswith("app.toml: supervisor.children[0].restart: ")


def test_child_from_mapping_builds_each_kind():
    assert child_from_mapping({"name": "c", "actor": "m:C"}, source="api",
                              path="start_child") == ActorSpec("c", "m:C")
    assert child_from_mapping({"name": "w", "http": "m:h", "workers": 2, "shutdown": 3},
                              source="api", path="start_child") == Pool("w", "m:h", 2,
                                                                        shutdown=3.0)
    sub = child_from_mapping(
        {"name": "s", "strategy": "one_for_all", "backoff": None,
         "children": [{"name": "c", "actor": "m:C", "shutdown": None}][:0]},
        source="api", path="start_child")
    assert sub == Supervisor("s", "one_for_all", (), backoff=None)


def test_child_from_mapping_errors_carry_its_path():
    with pytest.raises(ConfigError) as info:
        child_from_mapping({"name": "s", "children": [{"name": "c", "actor": "m:C",
                                                       "shutdown": None}]},
                           source="start_child request", path="start_child")
    assert str(info.value).startswith(
        "start_child request: start_child.children[0].shutdown: nothing (null) is not a shutdown")
    with pytest.raises(ConfigError) as info:
        child_from_mapping({"name": "s", "children": [{"name": "s", "actor": "m:C"}]},
                           source="api", path="start_child")
    assert_has(str(info.value), "api: start_child.children[0].name:", '"s" is used twice',
               "also at start_child.name")
    with pytest.raises(ConfigError) as info:
        child_from_mapping(["name"], source="api", path="start_child")
    assert_has(str(info.value), "api: start_child: expected a table", "found an array of 1 item")


# -- trees built in Python -------------------------------------------------------------------------

class Greeter(Actor):
    def receive(self, message):
        return message


def hello(request):
    return "hello"


def test_check_tree_names_python_targets_and_normalizes():
    tree = Supervisor(children=[
        Pool(http=hello, workers=2, shutdown=1),
        ActorSpec("greeter", Greeter, shutdown=2),
        Supervisor("inner", "rest_for_one", [ActorSpec("g2", "tests.x:G")], within=3),
    ])
    checked = check_tree(tree, source="app:tree")
    assert checked == Supervisor(children=(
        Pool("web", f"{__name__}:hello", 2, "permanent", 1.0),
        ActorSpec("greeter", f"{__name__}:Greeter", "permanent", 2.0),
        Supervisor("inner", "rest_for_one", (ActorSpec("g2", "tests.x:G"),), within=3.0),
    ))
    assert isinstance(checked.children[2].children, tuple)


def test_check_tree_refuses_a_lambda_and_a_nested_function():
    with pytest.raises(ConfigError) as info:
        check_tree(Supervisor(children=[Pool(http=lambda request: "hi")]), source="app:tree")
    message = str(info.value)
    assert message.startswith("app:tree: supervisor.children[0].http: the function ")
    assert_has(message, "<lambda>", 'cannot be named as "MODULE:ATTR"',
               "define it at a module's top level")

    class Local(Actor):
        pass

    with pytest.raises(ConfigError) as info:
        check_tree(Supervisor(children=[Supervisor("s", children=[ActorSpec("a", Local)])]),
                   source="app:tree")
    assert_has(str(info.value), "supervisor.children[0].children[0].actor: the class ",
               "<locals>.Local", "define it at a module's top level")


def test_check_tree_applies_the_same_rules():
    with pytest.raises(ConfigError) as info:
        check_tree(Supervisor(children=[ActorSpec("a", Greeter), ActorSpec("a", Greeter)]),
                   source="t")
    assert_has(str(info.value), "t: supervisor.children[1].name: ", "also at")
    with pytest.raises(ConfigError) as info:
        check_tree(Supervisor(restart="transient"), source="t")
    assert_has(str(info.value), "t: supervisor.restart: ", "no supervisor above it")
    with pytest.raises(ConfigError) as info:
        check_tree(Supervisor(name="main"), source="t")
    assert_has(str(info.value), "t: supervisor.name: ", 'always named "root"')
    with pytest.raises(ConfigError) as info:
        check_tree(Supervisor(max_restarts=2.0), source="t")
    assert_has(str(info.value), "t: supervisor.max_restarts: expected an integer >= 0, "
                                "found a number 2.0")
    with pytest.raises(ConfigError) as info:
        check_tree(Supervisor(children=[Pool(http=hello), "web"]), source="t")
    assert_has(str(info.value), "t: supervisor.children[1]: expected a table",
               'found a string "web"')
    with pytest.raises(ConfigError) as info:
        check_tree(Pool(http=hello), source="t")
    assert_has(str(info.value), "t: supervisor: expected a Supervisor")


# -- importing targets -----------------------------------------------------------------------------

@pytest.fixture
def pipeline_module(tmp_path, monkeypatch):
    """A tiny module with the example's pipeline actors, importable as PIPELINE_MODULE."""
    (tmp_path / f"{PIPELINE_MODULE}.py").write_text(textwrap.dedent("""
        from actorcluster import Actor

        class Source(Actor):
            def receive(self, message):
                return message

        class Sink(Actor):
            def receive(self, message):
                return None

        NOT_CALLABLE = 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield PIPELINE_MODULE
    sys.modules.pop(PIPELINE_MODULE, None)


def test_check_targets_of_the_good_example(tmp_path, pipeline_module):
    path = write(tmp_path, EXAMPLE.replace("examples.pipeline", pipeline_module))
    assert check_targets(load_file(path).tree, source=str(path)) == []


def test_check_targets_reports_each_bad_target(pipeline_module):
    tree = check_tree(Supervisor(children=[
        ActorSpec("missing", "ac_cf_no_such_module:Thing"),
        ActorSpec("not_actor", "examples.counter:handler"),
        Pool("web", f"{pipeline_module}:NOT_CALLABLE"),
        Supervisor("sub", children=[ActorSpec("ok", f"{pipeline_module}:Sink"),
                                    ActorSpec("no_attr", f"{pipeline_module}:Nope")]),
    ]), source="app.toml")
    errors = check_targets(tree, source="app.toml")
    assert len(errors) == 4, errors
    assert_has(errors[0], "app.toml: supervisor.children[0].actor: ",
               "no module named 'ac_cf_no_such_module'")
    assert_has(errors[1], "app.toml: supervisor.children[1].actor: ",
               "'examples.counter:handler' is not an Actor subclass")
    assert_has(errors[2], "app.toml: supervisor.children[2].http: ",
               f"'{pipeline_module}:NOT_CALLABLE' is not callable (its type is int)")
    assert_has(errors[3], "app.toml: supervisor.children[3].children[1].actor: ",
               "has no attribute 'Nope'")


# -- rendering -------------------------------------------------------------------------------------

def test_render_tree_of_the_example(tmp_path):
    tree = load_file(write(tmp_path, EXAMPLE)).tree
    assert render_tree(tree, auto_workers=2) == EXAMPLE_RENDERED


def test_render_tree_details():
    tree = Supervisor(max_restarts=1, within=0.5, backoff=None, children=(
        Supervisor("a", children=(
            Supervisor("b", shutdown=3.0, restart="transient", backoff=None,
                       children=(ActorSpec("c", "m:C", "temporary", "brutal_kill"),)),
        )),
        Pool("web", "m:h", 1, shutdown=2.5),
    ))
    assert render_tree(tree, auto_workers=8) == textwrap.dedent("""\
        root  supervisor one_for_one, 1 restart / 0.5 s, no backoff
        ├── a  supervisor one_for_one, 5 restarts / 10 s, backoff 0.05-5 s, permanent
        │   └── b  supervisor one_for_one, 5 restarts / 10 s, no backoff, transient, shutdown 3 s
        │       └── c  actor m:C, temporary, shutdown brutal_kill
        └── web  http m:h, 1 worker, permanent, shutdown 2.5 s
    """)

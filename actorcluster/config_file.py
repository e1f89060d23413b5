"""Supervision trees from a TOML file (or a dict, or a Python tree) into checked ``specs`` objects.

    [cluster]                      # optional: cluster settings (name, log_level, timeout ...)
    name = "shop"

    [http]                         # optional: the listening socket and HTTP settings
    bind = "127.0.0.1:8000"

    [supervisor]                   # the root of the tree
    strategy = "one_for_one"

    [[supervisor.children]]
    name = "counter"
    actor = "examples.counter:Counter"

Every mistake is a :class:`ConfigError` that names the file, the line when it is known, the path
in the tree (``supervisor.children[2].restart``), the bad value and what is allowed. tomllib gives
no line numbers for values, so a small scanner of the file text (:func:`locate_lines`) maps each
path to its line; where it is not sure, the message has no line rather than a wrong one.

The same rules check a mapping (``start_child`` specs arriving as JSON: :func:`child_from_mapping`)
and a tree built in Python (:func:`check_tree`).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from .config import SETTING_BY_NAME, parse_bind
from .errors import ConfigError, TargetImportError
from .importer import import_actor, import_handler, split_target
from .rundir import NAME_RULE as _NAME_RULE
from .rundir import check_name
from .specs import (
    BRUTAL_KILL,
    INFINITY,
    MAX_WORKERS,
    RESTARTS,
    ROOT,
    STRATEGIES,
    ActorSpec,
    Backoff,
    Pool,
    Supervisor,
    target_string,
)
from .toml_lines import locate_lines

Spec = ActorSpec | Pool | Supervisor

TOP_KEYS = ("cluster", "http", "supervisor")
HTTP_KEYS = ("bind", "keepalive", "max_body", "request_timeout", "threads", "access_log")
CLUSTER_KEYS = ("name", "log_level", "graceful_timeout", "timeout", "loop", "standby",
                "hold_messages", "hold_seconds", "max_requests", "max_requests_jitter",
                "max_memory", "metrics_bind")
ACTOR_KEYS = ("name", "actor", "restart", "shutdown")
POOL_KEYS = ("name", "http", "workers", "restart", "shutdown")
SUPERVISOR_KEYS = ("name", "strategy", "max_restarts", "within", "backoff", "children", "restart",
                   "shutdown")
ROOT_KEYS = ("strategy", "max_restarts", "within", "backoff", "children")
BACKOFF_KEYS = ("initial", "max")
RESERVED = ("primary",)  # and "root", for anything but the root

_KIND_KEYS = {"actor": ACTOR_KEYS, "pool": POOL_KEYS, "supervisor": SUPERVISOR_KEYS}
_KIND_WORDS = {"actor": "an actor", "pool": "an HTTP pool", "supervisor": "a supervisor"}
_KIND_RULE = ('"actor" makes an actor, "http" makes an HTTP pool, "children" or "strategy" '
              "makes a supervisor")
_HINTS = {
    "http.workers": 'set "workers" on the HTTP pool, a child in [supervisor]',
    "cluster.workers": 'set "workers" on the HTTP pool, a child in [supervisor]',
    "cluster.max_restarts": 'set "max_restarts" in [supervisor]',
    "cluster.within": 'set "within" in [supervisor]',
    "cluster.bind": 'set "bind" in [http]',
}


@dataclass(frozen=True)
class FileConfig:
    path: str  # the file as given
    tree: Supervisor  # validated, normalized
    settings: dict[str, Any]  # cluster/http settings from the file, keyed by config.SETTINGS names


# -- public API ------------------------------------------------------------------------------------

def load_file(path: str | os.PathLike[str]) -> FileConfig:
    """Read, parse and check a TOML config file."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config file: "
                          f"{exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{source}:{line}: the file is not UTF-8 text ({exc.reason})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        where = f"{source}:{found.group(1)}" if found else source
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    lines = locate_lines(text)
    ctx = _Context(source, lines)
    for key in data:
        if key not in TOP_KEYS:
            ctx.unknown(key, key, TOP_KEYS, "the top level of the file")
    if "supervisor" not in data:
        raise ConfigError(f"{source}: supervisor: missing; the file needs a [supervisor] table, "
                          "the root of the supervision tree")
    settings: dict[str, Any] = {}
    for table, allowed in (("cluster", CLUSTER_KEYS), ("http", HTTP_KEYS)):
        if table not in data:
            continue
        values = data[table]
        if not isinstance(values, Mapping):
            ctx.fail(table, f"expected a table [{table}], found {describe(values)}")
        for key, value in values.items():
            if key not in allowed:
                ctx.unknown(f"{table}.{key}", key, allowed, f"[{table}]")
            settings[key] = _setting(ctx, f"{table}.{key}", key, value)
    tree = _root(data["supervisor"], ctx, "supervisor", python=False)
    return FileConfig(path=source, tree=tree, settings=settings)


def tree_from_mapping(data: Mapping[str, Any], *, source: str, path: str = "supervisor",
                      lines: dict[str, int] | None = None) -> Supervisor:
    """The root supervisor described by ``data`` (the ``[supervisor]`` table), checked whole.
    ``lines`` maps paths (``supervisor.children[0].restart``) to line numbers for the messages."""
    return _root(data, _Context(source, lines or {}), path, python=False)


def child_from_mapping(data: Mapping[str, Any], *, source: str, path: str) -> Spec:
    """One child of any kind (e.g. a ``start_child`` spec arriving as JSON), with its subtree
    checked like a file's: values, and names unique within it."""
    ctx = _Context(source, {})
    node = _node(data, ctx, path)
    _check_names(node, ctx, path, include_self=True)
    return node


def check_tree(tree: Supervisor, *, source: str) -> Supervisor:
    """Check a tree built in Python by the rules of a file; returns it normalized, with every
    target a ``MODULE:ATTR`` string."""
    ctx = _Context(source, {})
    if not isinstance(tree, Supervisor):
        ctx.fail("supervisor", f"expected a Supervisor (the root of the tree), "
                               f"found {describe(tree)}")
    return _root(_python_data(tree), ctx, "supervisor", python=True)


def check_targets(tree: Supervisor, *, source: str) -> list[str]:
    """Import every target of ``tree`` in this process; the errors, one string each (empty when
    every target is usable)."""
    errors = []
    for path, target, kind in tree.targets():
        try:
            if kind == "actor":
                import_actor(target)
            else:
                import_handler(target)
        except TargetImportError as exc:
            errors.append(f"{source}: {path}: {exc}")
        except Exception as exc:  # noqa: BLE001 - e.g. a module __getattr__ that raises
            errors.append(f"{source}: {path}: cannot import {target!r}: "
                          f"{type(exc).__name__}: {exc}")
    return errors


def render_tree(tree: Supervisor, *, auto_workers: int) -> str:
    """The tree for a terminal, one line per node::

        root  supervisor one_for_one, 5 restarts / 10 s, backoff 0.05-5 s
        ├── counter  actor examples.counter:Counter, permanent, shutdown 5 s
        ├── web  http examples.counter:handler, 2 workers (auto), permanent, shutdown ...
        └── jobs  supervisor rest_for_one, 3 restarts / 5 s, no backoff, permanent
            └── sink  actor examples.pipeline:Sink, transient, shutdown 5 s

    A supervisor's shutdown is shown when it is not "infinity"; a pool's "graceful-timeout" is
    the cluster's --graceful-timeout.
    """
    out: list[str] = []

    def visit(node: Any, lead: str, branch: str, is_root: bool) -> None:
        out.append(f"{lead}{branch}{_describe_node(node, auto_workers, is_root)}")
        if isinstance(node, Supervisor):
            children = list(node.children)
            inner = lead + ("" if is_root else ("    " if branch == "└── " else "│   "))
            for i, child in enumerate(children):
                visit(child, inner, "└── " if i == len(children) - 1 else "├── ", False)

    visit(tree, "", "", True)
    return "\n".join(out) + "\n"


# -- describing values -----------------------------------------------------------------------------

def show(value: Any) -> str:
    """A value as a config file would spell it: ``"five"``, ``true``, ``5``, ``0.5``."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return describe(value)


def describe(value: Any) -> str:
    """What a value is, for "found ..." in messages: ``a string "five"``, ``a boolean (true)``."""
    if isinstance(value, bool):
        return f"a boolean ({show(value)})"
    if isinstance(value, str):
        return f"a string {show(value)}"
    if isinstance(value, int):
        return f"an integer {value}"
    if isinstance(value, float):
        return f"a number {value!r}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, list | tuple):
        return f"an array of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, type):
        return f"the class {value.__module__}.{value.__qualname__}"
    qualname = getattr(value, "__qualname__", None)
    if callable(value) and isinstance(qualname, str):
        return f"the function {getattr(value, '__module__', '?')}.{qualname}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"a {type(value).__name__} ({text})"


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


# -- building and checking -------------------------------------------------------------------------

class _Mistakes(ConfigError):
    """The mistakes found in a file's tree, each with its line (0 when not known), so that
    those of several tables can be put back in the file's order."""

    def __init__(self, found: list[tuple[int, str]]) -> None:
        super().__init__("\n".join(message for _, message in found))
        self.found = found


class _Context:
    """Where the data came from: the source for messages and the path -> line map."""

    def __init__(self, source: str, lines: Mapping[str, int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, path: str, problem: str) -> NoReturn:
        line = self.lines.get(path)
        where = f"{self.source}:{line}" if line else self.source
        raise _Mistakes([(line or 0, f"{where}: {path}: {problem}")])

    def unknown(self, path: str, key: Any, allowed: tuple[str, ...], what: str,
                hint: str | None = None) -> NoReturn:
        problem = f"unknown key {show(key)} in {what}"
        close = difflib.get_close_matches(str(key), allowed, n=1) if isinstance(key, str) else []
        if close:
            problem += f' (did you mean "{close[0]}"?)'
        elif hint or path in _HINTS:
            problem += f" ({hint or _HINTS[path]})"
        self.fail(path, f"{problem}; allowed: {', '.join(allowed)}")


class _Problems:
    """Mistakes found so far in one table: each setting and each child is checked on its own,
    so a mistake in one does not hide the mistakes in the others; all are reported together,
    one line each, in the order of their lines in the file."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []

    def check(self, check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``check(*args, **kwargs)``, or None with its mistakes noted."""
        try:
            return check(*args, **kwargs)
        except _Mistakes as exc:  # one, or a nested table's
            self.found += exc.found
        except ConfigError as exc:
            self.found.append((0, str(exc)))
        return None

    def raise_any(self) -> None:
        found = self.found
        if found:
            if all(line for line, _ in found):  # a tree given in Python has no lines: as found
                found = sorted(found, key=lambda item: item[0])
            raise _Mistakes(found)


def _root(data: Any, ctx: _Context, path: str, *, python: bool) -> Supervisor:
    if not isinstance(data, Mapping):
        ctx.fail(path, f"expected a table (the root supervisor), found {describe(data)}")
    problems = _Problems()
    for key, value in data.items():
        problems.check(_root_key, key, value, ctx, path, python=python)
    tree = problems.check(_supervisor, data, ctx, path, ROOT)
    problems.raise_any()
    _check_names(tree, ctx, path, include_self=False)
    return tree


def _root_key(key: Any, value: Any, ctx: _Context, path: str, *, python: bool) -> None:
    if key in ROOT_KEYS:
        return
    defaults = {"name": ROOT, "restart": "permanent", "shutdown": INFINITY}
    if key in defaults and python and value == defaults[key] and not isinstance(value, bool):
        return
    if key == "name":
        ctx.fail(f"{path}.name", f'the root supervisor is always named "root" (found '
                                 f'{show(value)}); remove "name"; allowed: '
                                 + ", ".join(ROOT_KEYS))
    if key in ("restart", "shutdown"):
        ctx.fail(f"{path}.{key}", f'the root supervisor has no supervisor above it, so it has '
                                  f'no "{key}" (found {show(value)}); remove it; allowed: '
                                  + ", ".join(ROOT_KEYS))
    hint = _other_kinds(key, "supervisor")
    ctx.unknown(f"{path}.{key}", key, ROOT_KEYS, "the root supervisor", hint)


def _kind(data: Mapping[str, Any], ctx: _Context, path: str) -> str:
    kinds = []
    if "actor" in data:
        kinds.append("actor")
    if "http" in data:
        kinds.append("pool")
    if "children" in data or "strategy" in data:
        kinds.append("supervisor")
    if len(kinds) == 1:
        return kinds[0]
    keys = ", ".join(str(k) for k in data)
    if kinds:
        what = " and ".join(_KIND_WORDS[k] for k in kinds)
        ctx.fail(path, f"a child of more than one kind ({what}; keys: {keys}); {_KIND_RULE}, "
                       "and a child is exactly one of them")
    everything = sorted({k for kind_keys in _KIND_KEYS.values() for k in kind_keys})
    for key in data:
        if isinstance(key, str) and key not in everything:
            close = difflib.get_close_matches(key, everything, n=1)
            if close:
                ctx.fail(f"{path}.{key}", f'unknown key {show(key)} (did you mean "{close[0]}"?); '
                                          f"{_KIND_RULE}")
    ctx.fail(path, f"cannot tell what kind of child this is (keys: {keys or 'none'}); {_KIND_RULE}")


def _other_kinds(key: Any, kind: str) -> str | None:
    others = [_KIND_WORDS[k] for k, keys in _KIND_KEYS.items() if k != kind and key in keys]
    return f"{show(key)} is a key of {' and '.join(others)}" if others else None


def _node(data: Any, ctx: _Context, path: str) -> Spec:
    if not isinstance(data, Mapping):
        ctx.fail(path, f"expected a table (an actor, an HTTP pool or a supervisor), "
                       f"found {describe(data)}")
    kind = _kind(data, ctx, path)  # which keys are allowed: without it nothing can be checked
    allowed = _KIND_KEYS[kind]
    problems = _Problems()
    for key in data:
        if key not in allowed:
            problems.check(ctx.unknown, f"{path}.{key}", key, allowed, _KIND_WORDS[kind],
                           _other_kinds(key, kind))
    if kind == "pool" and "name" not in data:
        data = {"name": Pool.name, **data}  # specs.Pool's default, "web"
    name = problems.check(_name, data, ctx, path, _KIND_WORDS[kind])
    if kind == "supervisor":
        tree = problems.check(_supervisor, data, ctx, path, name)
        problems.raise_any()
        return tree
    restart = problems.check(_restart, data, ctx, path)
    if kind == "actor":
        actor = problems.check(_target, data["actor"], ctx, f"{path}.actor", "actor")
        shutdown = problems.check(_shutdown, data, ctx, path, kind, 5.0)
        problems.raise_any()
        return ActorSpec(name=name, actor=actor, restart=restart, shutdown=shutdown)
    http = problems.check(_target, data["http"], ctx, f"{path}.http", "http")
    workers = problems.check(_workers, data, ctx, path)
    shutdown = problems.check(_shutdown, data, ctx, path, kind, None)
    problems.raise_any()
    return Pool(name=name, http=http, workers=workers, restart=restart, shutdown=shutdown)


def _supervisor(data: Mapping[str, Any], ctx: _Context, path: str, name: str) -> Supervisor:
    problems = _Problems()
    strategy = problems.check(_strategy, data, ctx, path)
    max_restarts = problems.check(_integer, data.get("max_restarts", 5), ctx,
                                  f"{path}.max_restarts", 0)
    within = problems.check(_seconds, data.get("within", 10.0), ctx, f"{path}.within",
                            positive=True)
    backoff = problems.check(_backoff, data.get("backoff", Backoff()), ctx, f"{path}.backoff")
    children_data = data.get("children", [])
    if not isinstance(children_data, list | tuple):
        problems.check(ctx.fail, f"{path}.children", f"expected an array of children, "
                                                     f"found {describe(children_data)}")
        children_data = ()
    children = tuple(problems.check(_node, child, ctx, f"{path}.children[{i}]")
                     for i, child in enumerate(children_data))
    restart = problems.check(_restart, data, ctx, path) if name != ROOT else "permanent"
    shutdown = (problems.check(_shutdown, data, ctx, path, "supervisor", INFINITY)
                if name != ROOT else INFINITY)
    problems.raise_any()
    return Supervisor(name=name, strategy=strategy, children=children, max_restarts=max_restarts,
                      within=within, backoff=backoff, restart=restart, shutdown=shutdown)


def _strategy(data: Mapping[str, Any], ctx: _Context, path: str) -> str:
    strategy = data.get("strategy", "one_for_one")
    if strategy not in STRATEGIES or not isinstance(strategy, str):
        ctx.fail(f"{path}.strategy", f"{_bad(strategy)} is not a restart strategy; allowed: "
                                     + ", ".join(STRATEGIES))
    return strategy


def _bad(value: Any) -> str:
    """The bad value at the start of a message: ``"sometimes"`` or ``an integer 5``."""
    return show(value) if isinstance(value, str) else describe(value)


def _name(data: Mapping[str, Any], ctx: _Context, path: str, what: str) -> str:
    if "name" not in data:
        ctx.fail(path, f'missing "name": {what} needs a name ({_NAME_RULE})')
    name = data["name"]
    if not isinstance(name, str):
        ctx.fail(f"{path}.name", f"expected a name (a string), found {describe(name)}; "
                                 f"{_NAME_RULE}")
    try:
        check_name(name)
    except ConfigError:
        ctx.fail(f"{path}.name", f"{show(name)} is not a valid name; {_NAME_RULE}")
    if name in RESERVED or name == ROOT:
        why = "the root supervisor's" if name == ROOT else "the cluster's primary process'"
        ctx.fail(f"{path}.name", f"{show(name)} is reserved (it is {why} name); choose another "
                                 f"name; reserved: {', '.join((*RESERVED, ROOT))}")
    return name


def _restart(data: Mapping[str, Any], ctx: _Context, path: str) -> str:
    restart = data.get("restart", "permanent")
    if not isinstance(restart, str) or restart not in RESTARTS:
        ctx.fail(f"{path}.restart", f"{_bad(restart)} is not a restart type; allowed: "
                                    + ", ".join(RESTARTS))
    return restart


def _shutdown(data: Mapping[str, Any], ctx: _Context, path: str, kind: str,
              default: float | str | None) -> float | str | None:
    value = data.get("shutdown", default)
    path = f"{path}.shutdown"
    if kind == "supervisor":
        allowed = f'a number of seconds >= 0, "{BRUTAL_KILL}" or "{INFINITY}"'
    else:
        allowed = f'a number of seconds >= 0 or "{BRUTAL_KILL}"'
    if value is None and kind == "pool":
        return None  # the cluster's graceful timeout
    if isinstance(value, str):
        if value == BRUTAL_KILL or (value == INFINITY and kind == "supervisor"):
            return value
        if value == INFINITY:
            ctx.fail(path, f'"{INFINITY}" is only for supervisors (which wait for their '
                           f"children); {_KIND_WORDS[kind]} must stop in a bounded time; "
                           f"allowed: {allowed}")
        ctx.fail(path, f"{show(value)} is not a shutdown; allowed: {allowed}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        ctx.fail(path, f"{describe(value)} is not a shutdown; allowed: {allowed}")
    return _seconds(value, ctx, path, allowed=allowed)


def _integer(value: Any, ctx: _Context, path: str, minimum: int) -> int:
    allowed = f"an integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        ctx.fail(path, f"expected {allowed}, found {describe(value)}")
    if value < minimum:
        problem = "is negative" if value < 0 else f"is less than {minimum}"
        ctx.fail(path, f"{value} {problem}; allowed: {allowed}")
    return value


def _seconds(value: Any, ctx: _Context, path: str, *, positive: bool = False,
             allowed: str = "") -> float:
    allowed = allowed or "a number of seconds " + ("> 0" if positive else ">= 0")
    if isinstance(value, bool) or not isinstance(value, int | float):
        ctx.fail(path, f"expected {allowed}, found {describe(value)}")
    if not math.isfinite(value):
        ctx.fail(path, f"{show(value)} is not a number of seconds; allowed: {allowed}")
    if value < 0:
        ctx.fail(path, f"{show(value)} is negative; allowed: {allowed}")
    if positive and value == 0:
        ctx.fail(path, f"{show(value)} is not allowed; allowed: {allowed}")
    return float(value)


def _backoff(value: Any, ctx: _Context, path: str) -> Backoff | None:
    allowed = "a table { initial = SECONDS, max = SECONDS } or false for none"
    if value is False or value is None:
        return None
    if isinstance(value, Backoff):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        ctx.fail(path, f"{_bad(value)} is not a backoff; allowed: {allowed}")
    for key in value:
        if key not in BACKOFF_KEYS:
            ctx.unknown(f"{path}.{key}", key, BACKOFF_KEYS, "a backoff")
    default = Backoff()
    initial = _seconds(value.get("initial", default.initial), ctx, f"{path}.initial")
    maximum = _seconds(value.get("max", default.max), ctx, f"{path}.max")
    if maximum < initial:
        ctx.fail(f"{path}.max", f"{_number(maximum)} is less than initial {_number(initial)}; "
                                f"allowed: a number of seconds >= initial")
    return Backoff(initial=initial, max=maximum)


def _workers(data: Mapping[str, Any], ctx: _Context, path: str) -> int | str:
    value = data.get("workers", "auto")
    if value == "auto" and isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
        return value
    ctx.fail(f"{path}.workers", f'{_bad(value)} is not a worker count; allowed: "auto" '
                                f"(the CPUs this process may use) or an integer from 1 to "
                                f"{MAX_WORKERS}")


def _target(value: Any, ctx: _Context, path: str, key: str) -> str:
    example = "examples.counter:Counter" if key == "actor" else "examples.counter:handler"
    allowed = f'"MODULE:ATTR", e.g. "{example}"'
    value = target_string(value)
    if isinstance(value, str):
        try:
            split_target(value)
        except TargetImportError:
            ctx.fail(path, f"{show(value)} is not a target; allowed: {allowed}")
        return value
    if callable(value):
        ctx.fail(path, f'{describe(value)} cannot be named as "MODULE:ATTR" (the cluster imports '
                       "targets by name); define it at a module's top level")
    ctx.fail(path, f"expected a target {allowed}, found {describe(value)}")


def _check_names(tree: Spec, ctx: _Context, path: str, *, include_self: bool) -> None:
    """Names are one namespace across the tree; one HTTP pool per cluster."""
    names: dict[str, str] = {}
    pools: list[str] = []

    def visit(node: Spec, node_path: str, counted: bool) -> None:
        if counted:
            first = names.get(node.name)
            if first is not None:
                ctx.fail(f"{node_path}.name", f"{show(node.name)} is used twice: also at "
                                              f"{first}.name; supervisors, pools and actors share "
                                              "one namespace, so every name must be unique")
            names[node.name] = node_path
        if isinstance(node, Pool):
            if pools:
                ctx.fail(node_path, f"a second HTTP pool {show(node.name)} (the first is at "
                                    f"{pools[0]}); one HTTP pool per cluster for now")
            pools.append(node_path)
        if isinstance(node, Supervisor):
            for i, child in enumerate(node.children):
                visit(child, f"{node_path}.children[{i}]", True)

    visit(tree, path, include_self)


def _setting(ctx: _Context, path: str, key: str, value: Any) -> Any:
    setting = SETTING_BY_NAME[key]
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    wanted = words.get(setting.type, setting.type.__name__)
    if setting.type is bool:
        ok = isinstance(value, bool)
    elif setting.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif setting.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
    else:
        ok = isinstance(value, setting.type)
    if not ok:
        ctx.fail(path, f"expected {wanted}, found {describe(value)} ({setting.help})")
    if setting.choices and value not in setting.choices:
        ctx.fail(path, f"{show(value)} is not allowed; allowed: {', '.join(setting.choices)}")
    if setting.minimum is not None and value < setting.minimum:
        ctx.fail(path, f"{show(value)} is less than {_number(setting.minimum)}; allowed: "
                       f"{wanted} >= {_number(setting.minimum)}")
    if key == "bind":
        try:
            parse_bind(value)
        except ConfigError:
            ctx.fail(path, f"{show(value)} is not an address; allowed: HOST:PORT "
                           "(e.g. 127.0.0.1:8000) or unix:/path")
    if key == "name":
        try:
            check_name(value)
        except ConfigError:
            ctx.fail(path, f"{show(value)} is not a valid cluster name; {_NAME_RULE}")
    return float(value) if setting.type is float else value


def _python_data(node: Any) -> Any:
    """A Python-built node as the mapping a file would give (targets as strings where they can
    be named); anything unexpected is left for the checks to report."""
    if isinstance(node, Supervisor):
        children = node.children
        if isinstance(children, list | tuple):
            children = [_python_data(child) for child in children]
        backoff = node.backoff.to_dict() if isinstance(node.backoff, Backoff) else node.backoff
        return {"name": node.name, "strategy": node.strategy, "max_restarts": node.max_restarts,
                "within": node.within, "backoff": backoff, "restart": node.restart,
                "shutdown": node.shutdown, "children": children}
    if isinstance(node, ActorSpec | Pool):
        return node.to_dict()
    return node


# -- rendering -------------------------------------------------------------------------------------

def _describe_node(node: Any, auto_workers: int, is_root: bool) -> str:
    def secs(value: Any) -> str:
        return f"{_number(value)} s" if isinstance(value, int | float) else str(value)

    def stop(value: Any) -> str:
        return "shutdown graceful-timeout" if value is None else f"shutdown {secs(value)}"

    if isinstance(node, Supervisor):
        n = node.max_restarts
        parts = [node.strategy, f"{n} restart{'' if n == 1 else 's'} / {secs(node.within)}"]
        if isinstance(node.backoff, Backoff):
            parts.append(f"backoff {_number(node.backoff.initial)}-{secs(node.backoff.max)}")
        else:
            parts.append("no backoff")
        if not is_root:
            parts.append(node.restart)
            if node.shutdown != INFINITY:
                parts.append(stop(node.shutdown))
        return f"{node.name}  supervisor {', '.join(parts)}"
    if isinstance(node, Pool):
        if node.workers == "auto":
            count, note = auto_workers, " (auto)"
        else:
            count, note = node.workers, ""
        workers = f"{count} worker{'' if count == 1 else 's'}{note}"
        return (f"{node.name}  http {target_string(node.http)}, {workers}, {node.restart}, "
                f"{stop(node.shutdown)}")
    if isinstance(node, ActorSpec):
        return (f"{node.name}  actor {target_string(node.actor)}, {node.restart}, "
                f"{stop(node.shutdown)}")
    return repr(node)

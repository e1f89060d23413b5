"""Cluster settings: each one declared once, feeding the CLI, the environment and the docs.

The command line (cli.py) builds its options from SETTINGS, so a setting's flag, environment
variable (ACTORCLUSTER_<NAME>), default, check and help text live in one place.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigError, TargetImportError
from .importer import split_target
from .logs import LEVELS
from .rundir import NAME_PATTERN, NAME_RULE, check_name
from .specs import MAX_WORKERS

LOOPS = ("auto", "asyncio", "uvloop")


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def envvar(self) -> str:
        return "ACTORCLUSTER_" + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("workers", int, None, "HTTP worker processes [default: the CPUs this process may use]",
            minimum=1, maximum=MAX_WORKERS),
    Setting("bind", str, "127.0.0.1:8000", "HOST:PORT or unix:/path to listen on"),
    Setting("name", str, None, "cluster name, used by other commands to find it "
            "[default: from the target]"),
    Setting("log_level", str, "info", "log level", choices=LEVELS),
    Setting("graceful_timeout", float, 30.0,
            "seconds in-flight requests get to finish on stop", minimum=0),
    Setting("timeout", float, 30.0,
            "seconds without a heartbeat before a worker is killed and replaced", minimum=0.1),
    Setting("max_restarts", int, 5,
            "restarts allowed within --within seconds before the supervisor gives up", minimum=0),
    Setting("within", float, 10.0, "seconds of the restart-intensity window", minimum=0.001),
    Setting("loop", str, "auto", "event loop (auto: uvloop when installed)", choices=LOOPS),
    Setting("threads", int, 32, "threads per worker for plain (sync) handlers", minimum=1),
    Setting("keepalive", float, 5.0, "seconds an idle keep-alive connection is kept", minimum=0),
    Setting("max_body", int, 1 << 20, "largest request body in bytes (larger: 413)", minimum=0),
    Setting("request_timeout", float, 300.0, "seconds a request may take to arrive, headers and "
            "body (longer: 408); its headers must arrive within min(60, this)", minimum=0.1),
    Setting("standby", bool, True, "keep one forked, ready HTTP worker out of rotation to "
            "replace a dead worker at once"),
    Setting("hold_messages", int, 1000,
            "messages held for an actor that is restarting (more: dead letters)", minimum=0),
    Setting("hold_seconds", float, 5.0,
            "seconds a message is held for an actor that is restarting", minimum=0),
    Setting("max_requests", int, 0, "replace a worker gracefully after it served this many "
            "requests (0: never)", minimum=0),
    Setting("max_requests_jitter", int, 0, "add 0..J to each worker's --max-requests so they "
            "are not all replaced at once", minimum=0),
    Setting("max_memory", int, 0, "replace a worker gracefully when its RSS goes above this "
            "many MB (0: never)", minimum=0),
    Setting("access_log", bool, False, "log a line per HTTP response (client, request line, "
            "status, milliseconds) at info level, logger actorcluster.access"),
    Setting("metrics_bind", str, None, "HOST:PORT to serve Prometheus metrics on "
            "[default: none]"),
)
RESERVED_NAMES = ("primary", "web")
SETTING_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Bind:
    """Where the listening socket is: a TCP host and port, or a Unix socket path."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @property
    def url(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def check_actor_name(name: str, target: str) -> str:
    """An actor's name is an address: letters, digits, '.', '_' and '-' ('/' and '#' are the
    router's). The error names --actor, not --name, which is the cluster's option."""
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"--actor {f'{name}={target}'!r}: the name {name!r} is not valid; "
                          f"{NAME_RULE}")
    return name


def parse_actor(text: str) -> tuple[str, str]:
    """``NAME=MODULE:Class`` from --actor."""
    name, sep, target = text.partition("=")
    if not sep or not name or not target:
        raise ConfigError(f"--actor {text!r}: expected NAME=MODULE:Class, e.g. "
                          "counter=examples.counter:Counter")
    return name.strip(), target.strip()


def parse_bind(text: str) -> Bind:
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ConfigError("--bind unix:PATH needs a path, e.g. unix:/tmp/app.sock")
        return Bind(path=path)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--bind {text!r}: expected HOST:PORT (e.g. 127.0.0.1:8000) or "
                          "unix:/path")
    host = host.strip("[]") or "0.0.0.0"
    return Bind(host=host, port=int(port))


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ClusterConfig:
    """Everything `actorcluster run` needs, built by the CLI from its options and, with --config,
    a TOML file. ``target`` is MODULE:ATTR: a handler (served by the pool "web") or a supervision
    tree built in Python; ``tree`` is a tree already read from a file (``source``)."""

    target: str | None = None
    workers: int = field(default_factory=available_cpus)
    bind: str = "127.0.0.1:8000"
    name: str = ""
    log_level: str = "info"
    graceful_timeout: float = 30.0
    timeout: float = 30.0
    max_restarts: int = 5
    within: float = 10.0
    loop: str = "auto"
    threads: int = 32
    keepalive: float = 5.0
    max_body: int = 1 << 20
    request_timeout: float = 300.0
    standby: bool = True
    hold_messages: int = 1000
    hold_seconds: float = 5.0
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_memory: int = 0
    access_log: bool = False
    metrics_bind: str | None = None
    actors: tuple[tuple[str, str], ...] = ()  # (name, MODULE:Class), started before the pool
    tree: Any = None  # an actorcluster.specs.Supervisor read from ``source``
    source: str = ""  # the config file the tree came from
    # --max-restarts / --within given on the command line or in the environment: they win over
    # a tree's own (a file's or a Python tree's root supervisor), as every option wins over the
    # file; the default tree takes them anyway
    root_intensity: tuple[tuple[str, Any], ...] = ()
    # --workers given so: it sizes a tree's pool over the tree's own `workers = N` likewise
    workers_given: bool = False

    def __post_init__(self) -> None:
        if (self.target is None) == (self.tree is None):
            raise ConfigError("give TARGET (MODULE:ATTR) or --config FILE, not both or neither")
        if self.target is not None:
            split_target(self.target)
        seen = set(RESERVED_NAMES)
        for name, target in self.actors:
            check_actor_name(name, target)
            if name in seen:
                raise ConfigError(f"--actor {name}={target}: the name {name!r} is "
                                  + ("reserved" if name in RESERVED_NAMES else "used twice"))
            seen.add(name)
            try:
                split_target(target)
            except TargetImportError:
                raise ConfigError(f"--actor {name}={target}: the class must be given as "
                                  "MODULE:Class, e.g. counter=examples.counter:Counter") from None
        if not self.name:
            if self.target is not None:
                name = self.target.partition(":")[0].rpartition(".")[2]
            else:
                name = os.path.splitext(os.path.basename(self.source))[0] or "actorcluster"
            object.__setattr__(self, "name", name)
        check_name(self.name)
        parse_bind(self.bind)
        if self.metrics_bind is not None:
            metrics = parse_bind(self.metrics_bind)
            if metrics.path is not None:
                raise ConfigError("--metrics-bind takes HOST:PORT, not a unix: path")
        for f in fields(self):
            setting = SETTING_BY_NAME.get(f.name)
            if setting is None:
                continue
            value = getattr(self, f.name)
            if setting.choices and value not in setting.choices:
                raise ConfigError(
                    f"{setting.flag} {value!r}: allowed values are {', '.join(setting.choices)}"
                )
            if setting.type is float and not math.isfinite(value):  # NaN passes any "<" check
                raise ConfigError(f"{setting.flag} {value!r}: must be a finite number of seconds")
            if setting.minimum is not None and value < setting.minimum:
                raise ConfigError(f"{setting.flag} {value!r}: must be at least {setting.minimum}")
            if setting.maximum is not None and value > setting.maximum:
                raise ConfigError(f"{setting.flag} {value!r}: must be at most {setting.maximum}")
        if self.loop == "uvloop":
            from .loops import uvloop  # imported only when asked for, as the primary would

            if uvloop is None:
                raise ConfigError("--loop uvloop: uvloop is not installed (pip install "
                                  "'actorcluster[fast]', or --loop auto)")

    @property
    def listen(self) -> Bind:
        return parse_bind(self.bind)

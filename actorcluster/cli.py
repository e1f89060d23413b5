"""The `actorcluster` command: a thin layer that turns options into a ClusterConfig.

Options are generated from actorcluster.config.SETTINGS, so each one reads its ACTORCLUSTER_*
environment variable and has one default and one help text.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from . import __version__
from .config import SETTINGS, ClusterConfig, Setting, parse_actor
from .errors import ActorClusterError, ConfigError
from .specs import MAX_WORKERS


class _StartError(click.ClickException):
    """`run` cannot start for a reason that is not an option (its run directory): one line,
    exit code 2 as for a bad option (docs/getting-started.md)."""

    exit_code = 2


class _Seconds(click.FloatRange):
    """A finite number of seconds above 0 (or at least 0 with ``zero_ok``), at most an ask's
    longest timeout: a bad value is a usage error (exit 2) here, not a timeout or a traceback
    later."""

    name = "number of seconds"

    def __init__(self, zero_ok: bool = False) -> None:
        super().__init__(min=0, min_open=not zero_ok)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        from .messenger import MAX_TIMEOUT

        if seconds > MAX_TIMEOUT:
            self.fail(f"{value!r} is more than {MAX_TIMEOUT:g} seconds", param, ctx)
        return seconds


def _option(setting: Setting) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if setting.type is bool:
        return click.option(
            f"{setting.flag}/--no-{setting.flag[2:]}",
            setting.name,
            default=setting.default,
            envvar=setting.envvar,
            show_envvar=True,
            show_default=True,
            help=setting.help,
        )
    kind: Any = click.Choice(setting.choices) if setting.choices else setting.type
    return click.option(
        setting.flag,
        setting.name,
        type=kind,
        default=setting.default,
        envvar=setting.envvar,
        show_envvar=True,
        show_default=setting.default is not None,
        help=setting.help,
    )


def settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for setting in reversed(SETTINGS):
        command = _option(setting)(command)
    return command


class _Commands(click.Group):
    """Commands are spelled with dashes (start-child); OTP's underscores work too."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name.replace("_", "-"))


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="actorcluster")
def main() -> None:
    """actorcluster: process actors, supervision trees and a round-robin HTTP cluster."""
    # Every command imports user code (MODULE:ATTR) from the current directory, as `python -m
    # actorcluster` and the zygote of `run` do: the console script's sys.path[0] is its bin/.
    try:
        here = os.getcwd()
    except FileNotFoundError:  # a deploy removed the directory this shell still stands in
        raise click.ClickException(
            "the current directory no longer exists (removed since this shell entered it): "
            "cd to the application's directory and run the command again") from None
    if sys.path[:1] != [here]:
        sys.path.insert(0, here)


@main.command()
@click.argument("target", envvar="ACTORCLUSTER_TARGET", required=False)
@click.option("--config", "config_file", metavar="FILE", envvar="ACTORCLUSTER_CONFIG",
              show_envvar=True, type=click.Path(dir_okay=False),
              help="a TOML file describing the supervision tree (instead of TARGET)")
@click.option("--actor", "actors", multiple=True, metavar="NAME=MODULE:Class",
              envvar="ACTORCLUSTER_ACTOR", show_envvar=True,
              help="run a user actor as its own supervised process, a child of the root "
                   "supervisor: before the HTTP pool of a TARGET, after the children of a "
                   "--config tree (repeatable)")
@settings_options
@click.pass_context
def run(ctx: click.Context, target: str | None, config_file: str | None,
        actors: tuple[str, ...], **options: Any) -> None:
    """Run a cluster: TARGET is MODULE:ATTR, an HTTP handler (e.g. examples.hello:handler)
    served by a pool of --workers, or a supervision tree built in Python (e.g.
    examples.tree:tree); or give the tree as a TOML file with --config FILE.

    Options given on the command line or in the environment win over the file's settings.
    """
    if (target is None) == (config_file is None):
        raise click.UsageError("give TARGET (MODULE:ATTR) or --config FILE (one of them)")
    try:
        tree, source = None, ""
        if config_file is not None:
            from .config_file import load_file

            loaded = load_file(config_file)
            tree, source = loaded.tree, loaded.path
            for key, value in loaded.settings.items():
                if ctx.get_parameter_source(key) in (None, click.core.ParameterSource.DEFAULT):
                    options[key] = value
        options = {k: v for k, v in options.items() if v is not None}
        given = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
        root_intensity = tuple((key, options[key]) for key in ("max_restarts", "within")
                               if key in options and ctx.get_parameter_source(key) in given)
        parsed = tuple(parse_actor(a) for a in actors)
        config = ClusterConfig(target=target, actors=parsed, tree=tree, source=source,
                               root_intensity=root_intensity,
                               workers_given=ctx.get_parameter_source("workers") in given,
                               **options)
    except ActorClusterError as exc:  # ConfigError, and TargetImportError for a TARGET's form
        raise click.UsageError(str(exc)) from None
    from . import rundir

    try:
        rundir.base_dir()  # refused here, with one line, rather than in the primary's log
    except ActorClusterError as exc:
        raise _StartError(str(exc)) from None
    from .primary.zygote_launch import discard_early, launch_early

    launch_early()  # the zygote's start-up overlaps the primary's own (imports, set-up)
    try:
        from .primary.runtime import run as run_primary

        code = run_primary(config)
    finally:
        discard_early()  # still there only if the primary stopped before it needed one
    sys.exit(code)


@main.command()
# the variables `run` reads: `tree` checks and shows the tree `run` would start in this shell
@click.argument("target", envvar="ACTORCLUSTER_TARGET", required=False)
@click.option("--config", "config_file", metavar="FILE", type=click.Path(dir_okay=False),
              envvar="ACTORCLUSTER_CONFIG", show_envvar=True, help="the TOML file to check")
@click.option("--workers", type=click.IntRange(min=1, max=MAX_WORKERS), default=None,
              envvar="ACTORCLUSTER_WORKERS", show_envvar=True,
              help="the pool's size, as run --workers gives it (over the tree's workers = N) "
                   '[default: the tree\'s; workers = "auto": the CPUs this process may use]')
def tree(target: str | None, config_file: str | None, workers: int | None) -> None:
    """Check a supervision tree (values, names, targets) and print it: a TOML file
    (--config FILE) or a tree built in Python (TARGET, e.g. examples.tree:tree)."""
    from . import specs
    from .config import available_cpus
    from .config_file import check_targets, check_tree, load_file, render_tree
    from .importer import import_target

    if (target is None) == (config_file is None):
        raise click.UsageError("give TARGET (MODULE:ATTR) or --config FILE (one of them)")
    try:
        if config_file is not None:
            loaded = load_file(config_file)
            checked, source = loaded.tree, loaded.path
        else:
            assert target is not None
            obj = import_target(target)
            if not isinstance(obj, specs.Supervisor):
                raise ConfigError(f"{target!r} is a {type(obj).__name__}, not a Supervisor")
            checked, source = check_tree(obj, source=target), target
    except ActorClusterError as exc:
        raise click.ClickException(str(exc)) from None
    errors = check_targets(checked, source=source)
    if workers is not None:
        checked = checked.with_workers(workers)
    click.echo(render_tree(checked, auto_workers=workers or available_cpus()))
    if errors:
        raise click.ClickException("\n".join(errors))


def _client(name: str | None):  # noqa: ANN202 - click helper
    from .client import connect

    try:
        return connect(name)
    except ActorClusterError as exc:  # no such cluster, or a run directory that is not private
        raise click.ClickException(str(exc)) from None


def _json_argument(text: str, name: str = "MESSAGE") -> Any:
    import json

    def refuse(constant: str) -> Any:  # Python's json takes them; JSON (RFC 8259) does not
        raise ValueError(f"{constant} is not a JSON number")

    def finite(number: str) -> float:  # 1e400 is JSON syntax, but Python would read it as inf
        value = float(number)
        if not math.isfinite(value):
            raise ValueError(f"{number} is not a finite JSON number")
        return value

    try:
        return json.loads(text, parse_constant=refuse, parse_float=finite)
    except ValueError as exc:
        hint = ""
        word = text.strip()
        if name == "MESSAGE" and word and word[0] not in '"[{-0123456789':
            # `ask counter get`: the shell ate no quotes, JSON wants them for a string
            hint = f"; a string is JSON in double quotes: '{json.dumps(word)}'"
        raise click.BadParameter(f"not JSON: {exc}{hint}", param_hint=name) from None


_cluster_name = click.option("--name", "cluster", envvar="ACTORCLUSTER_NAME", show_envvar=True,
                             help="the cluster (its --name) [default: the only one running]")


@main.command()
@click.argument("actor")
@click.argument("message")
@_cluster_name
def send(actor: str, message: str, cluster: str | None) -> None:
    """Tell ACTOR the JSON MESSAGE (fire and forget)."""
    from .errors import ActorError

    value = _json_argument(message)
    with _client(cluster) as client:
        try:
            # A typo'd name is an error here, as Erlang's `!` to an unregistered name is, not
            # exit 0 and a dead letter in the cluster's log (an incarnation id is not checked)
            if actor != "primary" and "#" not in actor:
                tree = client.ask("primary", "status", timeout=10.0)["tree"]
                if actor not in _names(tree):
                    raise click.ClickException(
                        f"ActorNotFound: no actor or group is named {actor!r}; nothing was sent")
            client.tell(actor, value)
        except ActorError as exc:  # the cluster stopping meanwhile, ...
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


def _names(node: Any) -> set[str]:
    """Every name in a status tree: actors, supervisors, pools (groups) and their members."""
    names: set[str] = set()
    todo = [node]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if isinstance(node.get("name"), str):
                names.add(node["name"])
            todo.extend(node.get("children") or ())
    return names


@main.command()
@click.argument("actor")
@click.argument("message")
@_cluster_name
@click.option("--timeout", type=_Seconds(), metavar="SECONDS", default=5.0, show_default=True)
def ask(actor: str, message: str, cluster: str | None, timeout: float) -> None:
    """Ask ACTOR the JSON MESSAGE and print the reply as JSON."""
    import json

    from .errors import ActorError

    value = _json_argument(message)
    with _client(cluster) as client:
        try:
            reply = client.ask(actor, value, timeout)
        except ActorError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    try:
        text = json.dumps(reply_json(reply), allow_nan=False)
    except (ValueError, RecursionError) as exc:  # a list that holds itself, a 5000-digit int
        raise click.ClickException(
            f"the reply (type {type(reply).__name__}) cannot be printed as JSON: {exc}") from None
    click.echo(text)


def reply_json(value: Any, _path: tuple[int, ...] = ()) -> Any:
    """An actor's reply as something JSON holds, so that `ask` prints valid JSON (`jq` reads
    it): tuples become lists, `tolist()` turns NumPy arrays and scalars (and array.array) into
    lists and numbers, and what JSON cannot hold (a set, bytes, NaN, a key that is not a str,
    int, float, bool or None) is written as its repr(). Before, a tuple key or a circular list
    was a traceback and NaN was printed as `NaN`, which is not JSON. ValueError for a value
    that contains itself (RecursionError for one too deep)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else float.__repr__(value)  # np.float64 too
    if id(value) in _path:
        raise ValueError("it contains itself")
    path = (*_path, id(value))
    if isinstance(value, dict):  # loops, not comprehensions: one frame per level of nesting
        out: dict[Any, Any] = {}
        for k, v in value.items():
            plain = k is None or isinstance(k, (str, int, bool)) or (
                isinstance(k, float) and math.isfinite(k))
            out[k if plain else _repr(k)] = reply_json(v, path)
        return out
    if isinstance(value, (list, tuple)):
        items = []
        for v in value:
            items.append(reply_json(v, path))
        return items
    tolist = getattr(type(value), "tolist", None)
    if callable(tolist):
        try:
            converted = value.tolist()
        except Exception:  # noqa: BLE001 - any object's tolist(): fall back to its repr
            return _repr(value)
        return reply_json(converted, path)
    return _repr(value)


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # noqa: BLE001 - a user's __repr__ may raise anything
        return f"<{type(value).__name__} object (its repr failed: {exc})>"


@main.command()
@_cluster_name
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON (for machines)")
def status(cluster: str | None, as_json: bool) -> None:
    """Show the live supervision tree: name, pid, state, uptime and restarts of every child."""
    import json

    from .status_view import render_status

    reply = _primary(cluster, "status")
    click.echo(json.dumps(reply, indent=2, sort_keys=True) if as_json else render_status(reply))


def _primary(cluster: str | None, request: Any, timeout: float = 10.0) -> Any:
    from .errors import ActorError

    with _client(cluster) as client:
        try:
            return client.ask("primary", request, timeout)
        except ActorError as exc:
            raise click.ClickException(str(exc)) from None


@main.command("start-child")
@click.argument("supervisor")
@click.argument("spec")
@_cluster_name
@click.option("--timeout", type=_Seconds(), metavar="SECONDS", default=60.0, show_default=True)
def start_child(supervisor: str, spec: str, cluster: str | None, timeout: float) -> None:
    """Start a new child of SUPERVISOR; SPEC is JSON, as a child in the TOML file:
    '{"name": "c2", "actor": "examples.counter:Counter", "restart": "transient"}'."""
    import json

    value = _json_argument(spec, "SPEC")
    reply = _primary(cluster, {"op": "start_child", "supervisor": supervisor, "spec": value},
                     timeout)
    click.echo(json.dumps(reply))


def _child_command(op: str, doc: str) -> None:
    @click.argument("supervisor")
    @click.argument("child")
    @_cluster_name
    @click.option("--timeout", type=_Seconds(), metavar="SECONDS", default=120.0, show_default=True)
    def command(supervisor: str, child: str, cluster: str | None, timeout: float) -> None:
        import json

        reply = _primary(cluster, {"op": op, "supervisor": supervisor, "name": child}, timeout)
        if reply is not None:
            click.echo(json.dumps(reply))

    command.__doc__ = doc
    main.command(op.replace("_", "-"))(command)


_child_command("terminate_child", "Stop CHILD of SUPERVISOR; it stays listed, not running.")
_child_command("restart_child", "Start again CHILD of SUPERVISOR after terminate-child.")
_child_command("delete_child", "Forget CHILD of SUPERVISOR (it must not be running).")


@main.command("which-children")
@click.argument("supervisor")
@_cluster_name
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def which_children(supervisor: str, cluster: str | None, as_json: bool) -> None:
    """List the children of SUPERVISOR: name, type, state, pid, restart type."""
    import json

    reply = _primary(cluster, {"op": "which_children", "supervisor": supervisor})
    if as_json:
        click.echo(json.dumps(reply))
        return
    for child in reply:
        click.echo(f"{child['name']}\t{child['type']}\t{child['state']}\t"
                   f"{child['pid'] or '-'}\t{child['restart']}")


@main.command("count-children")
@click.argument("supervisor")
@_cluster_name
def count_children(supervisor: str, cluster: str | None) -> None:
    """Count the children of SUPERVISOR (specs, active, supervisors, workers) as JSON."""
    import json

    click.echo(json.dumps(_primary(cluster, {"op": "count_children",
                                             "supervisor": supervisor})))


@main.command()
@click.argument("child", required=False)
@_cluster_name
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="workers replaced at a time")
@click.option("--ready-timeout", type=_Seconds(), metavar="SECONDS", default=None,
              help="seconds a replacement gets to be ready [default: the cluster's --timeout]")
def reload(child: str | None, cluster: str | None, batch: int, ready_timeout: float | None
           ) -> None:
    """Rolling restart with the code now on disk, without dropping a request: CHILD (any name
    in the tree) or every child. Also on SIGHUP to the primary."""
    reply = _primary(cluster, {"op": "reload", "child": child, "batch": batch,
                               "ready_timeout": ready_timeout}, timeout=3600.0)
    for item in reply["replaced"]:
        click.echo(f"{item['name']}: pid {item['old_pid']} -> {item['pid']}")
    click.echo(f"reloaded {len(reply['replaced'])} process(es)")


@main.command()
@click.argument("pool")
@click.argument("workers", type=click.IntRange(min=1, max=MAX_WORKERS))
@_cluster_name
def scale(pool: str, workers: int, cluster: str | None) -> None:
    """Grow or shrink the HTTP pool POOL to WORKERS (also SIGTTIN / SIGTTOU: one more / one
    fewer); workers that leave finish their requests first."""
    reply = _primary(cluster, {"op": "scale", "pool": pool, "workers": workers},
                     timeout=3600.0)
    plural = "" if reply["workers"] == 1 else "s"
    click.echo(f"{reply['pool']}: {reply['before']} -> {reply['workers']} worker{plural} "
               f"({reply['ready']} ready)")


@main.command()
@_cluster_name
@click.option("--timeout", type=_Seconds(zero_ok=True), metavar="SECONDS", default=None,
              help="seconds in-flight work gets [default: the cluster's --graceful-timeout]")
def stop(cluster: str | None, timeout: float | None) -> None:
    """Stop the cluster gracefully (as SIGTERM does) and wait until it has exited."""
    import time

    import psutil

    pid = _primary(cluster, {"op": "stop", "timeout": timeout})["pid"]
    deadline = time.monotonic() + (timeout if timeout is not None else 3600.0) + 30.0
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(pid)
        except psutil.NoSuchProcess:
            click.echo(f"stopped (primary {pid})")
            return
        time.sleep(0.05)
    raise click.ClickException(f"the primary {pid} is still running")

"""The `actorcluster` command: a thin layer that turns options into a ClusterConfig.

Options are generated from actorcluster.config.SETTINGS, so each one reads its ACTORCLUSTER_*
environment variable and has one default and one help text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from . import __version__
from .config import SETTINGS, ClusterConfig, Setting, parse_actor
from .errors import ConfigError


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="actorcluster")
def main() -> None:
    """actorcluster: process actors, supervision trees and a round-robin HTTP cluster."""


@main.command()
@click.argument("target", envvar="ACTORCLUSTER_TARGET")
@click.option("--actor", "actors", multiple=True, metavar="NAME=MODULE:Class",
              envvar="ACTORCLUSTER_ACTOR", show_envvar=True,
              help="run a user actor as its own supervised process (repeatable)")
@settings_options
def run(target: str, actors: tuple[str, ...], **options: Any) -> None:
    """Serve TARGET (MODULE:ATTR, e.g. examples.hello:handler) with a cluster of workers."""
    options = {k: v for k, v in options.items() if v is not None}
    try:
        parsed = tuple(parse_actor(a) for a in actors)
        config = ClusterConfig(target=target, actors=parsed, **options)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    from .primary.runtime import run as run_primary

    sys.exit(run_primary(config))


def _client(name: str | None):  # noqa: ANN202 - click helper
    from .client import connect
    from .errors import ClusterNotFound

    try:
        return connect(name)
    except ClusterNotFound as exc:
        raise click.ClickException(str(exc)) from None


def _json_argument(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="MESSAGE") from None


_cluster_name = click.option("--name", "cluster", envvar="ACTORCLUSTER_NAME", show_envvar=True,
                             help="the cluster (its --name) [default: the only one running]")


@main.command()
@click.argument("actor")
@click.argument("message")
@_cluster_name
def send(actor: str, message: str, cluster: str | None) -> None:
    """Tell ACTOR the JSON MESSAGE (fire and forget)."""
    value = _json_argument(message)
    with _client(cluster) as client:
        client.tell(actor, value)


@main.command()
@click.argument("actor")
@click.argument("message")
@_cluster_name
@click.option("--timeout", type=float, default=5.0, show_default=True)
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
    click.echo(json.dumps(reply, default=repr))

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

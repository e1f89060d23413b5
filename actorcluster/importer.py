"""Resolve ``module:attr`` targets with errors that say exactly what is wrong.

An ImportError raised *inside* the user's module is told apart from a module that does not exist
(as uvicorn does), so the user is pointed at the right line.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

from .errors import TargetImportError


def split_target(target: str) -> tuple[str, str]:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise TargetImportError(
            f'target {target!r} must be "MODULE:ATTR", for example "examples.hello:handler"'
        )
    return module, attr


def import_target(target: str) -> Any:
    """Import ``module:attr`` (attr may be dotted) and return the object."""
    module_name, attr = split_target(target)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name) and (
            exc.name == module_name or module_name.startswith(exc.name + ".")
        ):
            raise TargetImportError(
                f"cannot import {target!r}: no module named {exc.name!r} "
                f"(searched from {sys.path[0] or '.'!r})"
            ) from None
        raise TargetImportError(
            f"cannot import {target!r}: the module raised while importing:\n"
            + "".join(traceback.format_exception(exc)).rstrip()
        ) from exc
    except BaseException as exc:  # noqa: BLE001 - anything the user's module raises at import
        raise TargetImportError(
            f"cannot import {target!r}: the module raised while importing:\n"
            + "".join(traceback.format_exception(exc)).rstrip()
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetImportError(
                f"cannot import {target!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return obj


def import_handler(target: str) -> Any:
    """Import an HTTP handler target and check that it can be called (an Actor subclass: that
    it has ``handle``, which serves its HTTP requests)."""
    from .actor import Actor

    handler = import_target(target)
    if not callable(handler):
        raise TargetImportError(
            f"{target!r} is not callable (its type is {type(handler).__name__}); "
            "a handler is a function handler(request) or an async def"
        )
    if isinstance(handler, type) and issubclass(handler, Actor) and not callable(
            getattr(handler, "handle", None)):
        raise TargetImportError(
            f"{target!r} is an Actor subclass without handle(self, request), so it cannot "
            "serve HTTP; give it handle(), or run it as an actor (--actor NAME=TARGET, "
            "actor = ... in a tree)"
        )
    return handler


def import_actor(target: str) -> Any:
    """Import an Actor subclass target."""
    from .actor import Actor

    obj = import_target(target)
    if not (isinstance(obj, type) and issubclass(obj, Actor)):
        raise TargetImportError(
            f"{target!r} is not an Actor subclass (it is {obj!r}); an actor is a class "
            "deriving from actorcluster.Actor with a receive(self, message) method"
        )
    return obj

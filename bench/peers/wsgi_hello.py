"""Minimal WSGI apps for the gunicorn peer of bench/http.py.

`app` serves `hello world\\n`; `pid_app` serves the worker's pid (the kill -9 restart test).
"""

import os
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

HELLO = b"hello world\n"


def _respond(start_response: StartResponse, body: bytes) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    return _respond(start_response, HELLO)


def pid_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    return _respond(start_response, str(os.getpid()).encode())

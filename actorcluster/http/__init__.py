"""The HTTP/1.1 server that runs inside each worker: protocol, Request, Response, adapters.

A worker serves every connection socket it is handed with::

    state = HttpServerState(loop, limits)
    state.start()
    serve_handed_off(loop, sock, HttpProtocol(app, state, limits))   # direct.py

(or ``loop.connect_accepted_socket(lambda: HttpProtocol(app, state, limits), sock)``), where
``app = make_app(user_handler)``. See docs/handlers.md for writing handlers.
"""

from .handler import make_app
from .protocol import HttpProtocol
from .request import Headers, QueryParams, Request
from .response import Response
from .state import HttpLimits, HttpServerState

__all__ = [
    "Headers",
    "HttpLimits",
    "HttpProtocol",
    "HttpServerState",
    "QueryParams",
    "Request",
    "Response",
    "make_app",
]

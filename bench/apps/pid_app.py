"""actorcluster app for the kill -9 restart test of bench/http.py: each worker answers its pid."""

import os


async def handler(request: object) -> str:
    return str(os.getpid())

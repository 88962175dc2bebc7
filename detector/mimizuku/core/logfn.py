"""The log callable that I/O classes take: ``log(level, message)``.

Sinks, followers and spools report through a plain function rather than a ``logging`` logger,
so the integration script (one process per alert, its own log file) and the resident scorer
(``logging``) can each route the messages their way without configuring the other's logging.
"""
from __future__ import annotations

from typing import Callable

#: ``log(level, message)``; level is "debug", "info", "warning" or "error".
LogFn = Callable[[str, str], None]


def no_log(level: str, message: str) -> None:
    """The default: say nothing."""

"""``mimizuku serve`` and ``python -m mimizuku.serve``: options, logging, exit codes.

The command line of the resident scorer, apart from the loop it starts (:mod:`mimizuku.serve.server`):
the options come from the settings table (:mod:`mimizuku.serve.config`), the loop gets a checked
configuration, and what went wrong before it could start becomes an exit code.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, List, Optional

from mimizuku.integratord.options import OptionsError
from mimizuku.serve.config import add_arguments, config_from_args
from mimizuku.serve.reload import MATH_THREADS
from mimizuku.serve.server import EXIT_SOCKET, EXIT_USAGE, Server

log = logging.getLogger("mimizuku.serve")

SUMMARY = "The resident scorer: the model stays in memory, each alert costs milliseconds."


# --- command line -------------------------------------------------------------------------------

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``mimizuku serve`` (the lead wires it into cli.py)."""
    p = subparsers.add_parser("serve", help="run the resident scorer (socket, spool, --follow alerts.json)",
                              description=SUMMARY)
    add_arguments(p, verbose=False)  # ``mimizuku -v`` is the top-level flag there
    return p


def _setup_logging(a: argparse.Namespace) -> None:
    handler: logging.Handler
    if getattr(a, "log_file", None):
        handler = logging.FileHandler(a.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s mimizuku-serve[%(process)d] %(levelname)s: %(message)s"))
    root = logging.getLogger("mimizuku")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if getattr(a, "verbose", False) else logging.INFO)
    root.propagate = False


def run(a: argparse.Namespace) -> int:
    """Entry point of ``mimizuku serve``; returns the exit code."""
    for name in MATH_THREADS:
        os.environ.setdefault(name, "1")   # before numpy is imported (by the model loader)
    _setup_logging(a)
    try:
        cfg = config_from_args(a)
    except OptionsError as e:
        log.error("%s", e)
        return EXIT_USAGE
    try:
        server = Server(cfg)
    except OSError as e:
        log.error("cannot set up the state directory %s: %s", cfg.state_dir, e)
        return EXIT_SOCKET
    return server.serve_forever()


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="mimizuku serve", description=SUMMARY)
    add_arguments(p)
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return run(a)


if __name__ == "__main__":
    sys.exit(main())


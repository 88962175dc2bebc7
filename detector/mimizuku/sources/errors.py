"""How a read of alerts goes wrong: the error that stops it, and the tally of what it skipped.

A source that cannot be read at all raises ``AlertSourceError``; everything less (a bad line, a
damaged gzip, an unreadable file in a tree) is counted in a ``ReadStats`` and the read goes on.
Both live here, apart from the reader, so that the other sources (the indexer client) can raise
the same error without importing the reader, which imports them. Standard library only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

from mimizuku.core.text import printable

__all__ = ["AlertSourceError", "IndexerAuthError", "IndexerConfigError", "IndexerError", "IndexerUnavailable",
           "ReadStats", "printable"]


class AlertSourceError(Exception):
    """The source cannot be read at all (missing, unreadable, not alerts, unsupported type)."""


class IndexerError(AlertSourceError):
    """The indexer cannot be read (a clear message; never a credential)."""


class IndexerConfigError(IndexerError):
    """Bad or unsafe configuration (config file permissions, a URL with credentials...)."""


class IndexerAuthError(IndexerError):
    """401/403: the credentials were refused or lack a permission."""


class IndexerUnavailable(IndexerError):
    """Not reachable, TLS failure, or still failing (5xx/429/timeouts) after every retry."""


@dataclass
class ReadStats:
    """What one read saw: counts by outcome, and the files that could not be read whole.

    ``lines`` (records, for non-line sources) = ``alerts`` + ``bad_json`` + ``too_long`` +
    ``too_deep`` + ``not_alert`` + ``bad_encoding`` + ``own_events`` + ``skipped_by_window``;
    blank lines are not counted. ``repaired_encoding``: lines parsed once their bad UTF-8 was
    replaced, and are counted again as what they then were (among ``alerts`` when they are alerts).
    ``damaged_files``: read in part (truncated or corrupt gzip, broken document, read error);
    ``unreadable_files``: not read at all (permission, vanished, FIFO in a tree, unlistable
    directory). ``bytes_read`` counts bytes as stored (compressed for gzip).
    """

    files: int = 0
    lines: int = 0
    alerts: int = 0
    bad_json: int = 0
    too_long: int = 0
    too_deep: int = 0
    not_alert: int = 0
    bad_encoding: int = 0
    repaired_encoding: int = 0
    own_events: int = 0
    skipped_by_window: int = 0
    duplicate_files: int = 0
    bytes_read: int = 0
    damaged_files: List[str] = field(default_factory=list)
    unreadable_files: List[str] = field(default_factory=list)

    @property
    def total_bad(self) -> int:
        """Lines dropped because they were not usable alerts (own events and window skips are
        deliberate, not bad)."""
        return self.bad_json + self.too_long + self.too_deep + self.not_alert + self.bad_encoding

    def as_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["total_bad"] = self.total_bad
        return d

    def __str__(self) -> str:
        parts = [f"{self.alerts} alerts from {self.lines} lines in {self.files} files"]
        skipped = [
            (self.bad_json, "bad JSON"),
            (self.too_long, "too long"),
            (self.too_deep, "too deeply nested"),
            (self.not_alert, "not alerts"),
            (self.bad_encoding, "bad encoding"),
            (self.own_events, "own events"),
            (self.skipped_by_window, "outside window"),
        ]
        s = ", ".join(f"{n} {what}" for n, what in skipped if n)
        if s:
            parts.append("skipped " + s)
        if self.repaired_encoding:
            parts.append(f"{self.repaired_encoding} repaired encoding")
        if self.duplicate_files:
            parts.append(f"{self.duplicate_files} duplicate files")
        for names, what in ((self.damaged_files, "damaged"), (self.unreadable_files, "unreadable")):
            if names:
                shown = ", ".join(printable(n) for n in names[:3])
                more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
                parts.append(f"{len(names)} {what}: {shown}{more}")
        return "; ".join(parts)

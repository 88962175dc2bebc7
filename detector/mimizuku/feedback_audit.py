"""Where a change of an analyst's verdict is told: SQL, syslog and Wazuh (``mimizuku feedback``).

The verdict store (``mimizuku.store.feedback``) is the record: a change is written there first,
and only then told. Each destination is tried on its own; one that fails is reported on standard
error and does not undo the change or stop the others:

* SQL: a row in the ``feedback`` table (``mimizuku.outputs.sql``), when a database is given or
  the nightly job's default SQLite file exists. The row's ``change_id`` makes a retry idempotent.
* syslog: one line (facility ``auth``, ident ``mimizuku``), attacker text escaped (``printable``).
* Wazuh: an event on analysisd's queue (``mimizuku.delivery.events.feedback_message``) that rule
  119020 turns into a level-3 audit alert. When analysisd is down the event waits in the
  scorer's event spool (``<home>/mimizuku/spool/events``), which the scorer drains.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from mimizuku.core.text import printable

__all__ = ["Audit", "change_of"]


def change_of(action: str, entry_json: Mapping[str, Any], changed_at: Optional[str] = None) -> Dict[str, Any]:
    """The change told to every destination: the verdict, what was done to it, a unique id."""
    out = dict(entry_json)
    out["action"] = action
    out["change_id"] = f"{entry_json.get('id')}:{action}"
    at = entry_json.get("revoked_at") if action == "revoke" else entry_json.get("created_at")
    out["changed_at"] = changed_at or at
    return out


def _warn(message: str) -> None:
    print(f"mimizuku feedback: warning: {printable(message, 1000)}", file=sys.stderr)


class Audit:
    """The destinations of one command's changes. ``db_url``: SQLAlchemy URL or None (then the
    nightly default ``sqlite:///<model-root>/mimizuku.db`` when that file exists); ``home``: the
    Wazuh installation (its queue socket and the scorer's spool); ``queue``: another socket."""

    def __init__(self, *, db_url: Optional[str] = None, model_dir: Optional[str] = None,
                 home: Path = Path("/var/ossec"), queue: Optional[Path] = None, syslog: bool = True) -> None:
        self.db_url = db_url
        if db_url is None and model_dir:
            from mimizuku.store.feedback import model_root

            candidate = model_root(model_dir) / "mimizuku.db"
            if candidate.is_file():
                self.db_url = "sqlite:///" + str(candidate)
        self.home = Path(home)
        self.queue = queue
        self.syslog = syslog

    def tell(self, changes: Sequence[Dict[str, Any]]) -> List[str]:
        """Tell every destination; returns the problems met (also printed)."""
        problems: List[str] = []
        if not changes:
            return problems
        for what, fn in (("SQL", self._sql), ("syslog", self._syslog), ("Wazuh", self._wazuh)):
            try:
                fn(changes)
            except Exception as e:  # one destination down must not stop the others
                problems.append(f"{what}: {type(e).__name__}: {e}")
                _warn(f"the verdict is stored, but {what} was not told: {type(e).__name__}: {e}")
        return problems

    def _sql(self, changes: Sequence[Dict[str, Any]]) -> None:
        if not self.db_url:
            return
        from mimizuku.outputs.sql.sink import SqlSink

        sink = SqlSink(self.db_url)
        try:
            sink.write_feedback(changes)
        finally:
            sink.close()

    def _syslog(self, changes: Sequence[Dict[str, Any]]) -> None:
        if not self.syslog:
            return
        import syslog

        syslog.openlog("mimizuku", syslog.LOG_PID, syslog.LOG_AUTH)
        try:
            for c in changes:
                syslog.syslog(syslog.LOG_NOTICE, syslog_line(c))
        finally:
            syslog.closelog()

    def _wazuh(self, changes: Sequence[Dict[str, Any]]) -> None:
        queue = self.queue or self.home / "queue" / "sockets" / "queue"
        if self.queue is None and not self.home.is_dir():
            _warn(f"no Wazuh installation at {self.home}: the audit event was not sent (give --wazuh-home)")
            return
        from mimizuku.delivery.events import feedback_message
        from mimizuku.delivery.queue_socket import QueueSink

        with QueueSink(queue, self.home / "mimizuku" / "spool" / "events") as sink:
            for c in changes:
                if not sink.send(feedback_message(c)):
                    _warn(f"analysisd did not take the audit event of {c.get('id')}: it waits in the "
                          f"scorer's event spool")


def syslog_line(c: Mapping[str, Any]) -> str:
    """One syslog line for a change (every value escaped and capped: imported text is another tool's)."""
    sits = c.get("situations") or [{}]
    first = sits[0] if isinstance(sits[0], Mapping) else {}

    def v(x: Any, n: int = 120) -> str:
        return printable("-" if x in (None, "") else x, n, ellipsis="…")

    return (f"feedback {v(c.get('action'), 16)} id={v(c.get('id'), 40)} verdict={v(c.get('verdict'), 20)} "
            f"scope={v(c.get('scope'), 20)} by={v(c.get('by'))} expires={v(c.get('expires_at'), 30)} "
            f"alert={v(c.get('alert_id'))} agent={v(first.get('agent'))} account={v(first.get('account'))} "
            f"detector={v(first.get('detector'), 16)} note={v(c.get('note'), 300)}")

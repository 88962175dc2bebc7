"""The resident scorer tells its own events by their location too (issue 17 item 3): a JSON line
from an agent's log carrying ``"integration": "mimizuku"`` is scored, not skipped unseen."""
from __future__ import annotations

import json

from test_serve_support import Daemon, Scratch, traffic

from mimizuku.integratord import client


def test_the_scorer_scores_a_forged_own_mark_and_skips_its_own_events():
    scratch = Scratch()
    try:
        scratch.install_version("v1")
        d = Daemon(scratch.config())
        try:
            forged, ours = (dict(a) for a in traffic(2, "own"))
            mark = {"integration": "mimizuku", "mimizuku": {"severity": "critical", "anomaly": "true"}}
            forged.update(location="/var/log/app.json", data=mark)
            ours.update(location="mimizuku", data=mark)
            answers = [client.deliver(str(d.server.cfg.socket), json.dumps(a).encode(), 10.0)
                       for a in (forged, ours)]
            assert [outcome for outcome, _ in answers] == ["acked", "acked"]
            assert b'"skipped"' not in answers[0][1] and b'"skipped"' in answers[1][1]
            assert d.server.counters.skipped_own == 1 and d.server.counters.scored == 1
        finally:
            d.stop()
    finally:
        scratch.close()

"""Reading a scored record (docs/records.md) the same way in every room that receives one.

Records are made by the engine and read by the send policy, the event builder, the flood
control and the outputs, sometimes after a trip through a spool file or another process, so a
field may be missing or of the wrong type. These readers never raise: a bad score is 0, and the
percentage Wazuh rules match on is always an integer in [0, 100].
"""
from __future__ import annotations

import math
from typing import Any, List, Mapping

#: the smallest tail probability a calibrated score tells apart: a record's ``score`` is
#: ``log(p) / log(SCORE_FLOOR)`` (``mimizuku.engine.calibration``), so 1.0 means p <= 1e-6
SCORE_FLOOR = 1e-6

#: the default ``contamination``: the share of benign *alerts* a model may flag (the alert-level
#: budget, ``mimizuku.engine.flag_rule``). 1e-4 puts the threshold at score 0.667 (0.717 for an
#: alert two detectors judge); a training too small to resolve it flags at what it can
#: (``mimizuku.engine.calibration.MIN_TAIL_ALERTS``). Chosen on the tuning sets (generator seed 0,
#: AIT shaw and fox; docs/detection.md): 1e-3, the original library's habit, flagged about half
#: as many benign alerts again on the generated fleet
DEFAULT_CONTAMINATION = 1e-4

#: the most agents a person's story across hosts names in a record (``story.agents``,
#: ``mimizuku.engine.stories``); what passes a record on (event, anomaly document) keeps as many
MAX_STORY_AGENTS = 16


def story_agents(story: Any) -> List[Any]:
    """The agents a record's ``story`` names, as written, at most ``MAX_STORY_AGENTS`` ([] when
    it names none or is not a story); each reader turns them into what it sends."""
    agents = story.get("agents") if isinstance(story, Mapping) else None
    return agents[:MAX_STORY_AGENTS] if isinstance(agents, list) else []


def finite_float(value: Any, default: float = 0.0) -> float:
    """``value`` as a finite float, else ``default``."""
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):   # OverflowError: an int past float's range
        return default
    return f if math.isfinite(f) else default


def score_pct(record: Mapping[str, Any]) -> int:
    """The integer percentage rules match on: the record's ``score_pct``, else ``round(100*score)``."""
    v = record.get("score_pct")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        v = round(100 * min(1.0, max(0.0, finite_float(record.get("score")))))   # 100 * 1e307 is inf
    return int(min(100, max(0, int(v))))

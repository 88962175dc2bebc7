"""Whether a scored alert is flagged: one rule for every place that decides it.

The record builder (``Mimizuku``'s scoring), the nightly anomaly filter (what the next model must
not learn), the day analysis and its validation, and the integration's policy (threshold
overrides from the ``<integration>`` options, applied to records after the fact) all judge with
this rule, so they cannot drift apart. In order:

1. a detector flags an alert when its calibrated score reaches its threshold — the fitted one,
   or an override (``thresholds``: per detector name, or ``"*"`` for all) — and the detector's own
   ignore list does not cover the alert. ``contamination`` is a budget per *alert*: an alert that
   k detectors judge (a file or command alert: its own detector and the context detector) is
   flagged by one of them only when its tail probability is at most ``contamination / k``, so the
   share of benign alerts flagged stays within the budget however many detectors look (the
   fitted threshold raised by ``log(k) / -log(SCORE_FLOOR)``; an override is taken as given).
   A detector may also *defer* an alert it scored to the others (``Detector.defers``: the
   context detector, for what the routine package manager logs and writes): it then flags
   nothing, and when no other detector flags the alert its record says why, as an ignore list's;
2. an alert the model's ignore lists cover (``ignore_users``, ``ignore_files``) is flagged by no
   detector: it is scored, never raised;
3. an abuse file (``abuse_files``) is always flagged, ignored or not, severity ``critical``; its
   record speaks through the files detector when that detector scored it;
4. an analyst's verdict (``mimizuku.engine.feedback``) on the alert's situation: a false
   positive whose scope covers every detector that flagged it unflags it (``suppressed_by``:
   still scored and recorded, not flagged, so the next model learns it as normal; an alert that
   repeats a suppressed one, step 5, is suppressed by the same verdict); a confirmed
   incident flags it whatever its score (``confirmed_by``), ignored or not, and is never
   suppressed. An abuse file is never suppressed;
5. a flagged alert that exactly one detector flagged, and that is not an abuse file, may repeat
   an anomaly of the same situation (``mimizuku.engine.repeats``; the detector's repeat windows
   judge): it is then not raised again (``repeat_of``), but it stays *flagged* — training must
   not learn it and validation counts it, as the anomaly it repeats.

``Verdict.flagged`` is steps 1-4 (what the anomaly filter excludes); ``Verdict.anomaly`` adds
step 5 (the record's ``anomaly``). A record says which ignore list or abuse entry applied in its
reasons (``IGNORED`` and ``ABUSE`` prefixes, written only here), so the policy can judge a record
again with other thresholds without the alert: an ignored record stays unflagged, an abuse file
stays flagged, a repeat stays a repeat, a suppressed record (``suppressed_by``) stays unflagged
and a confirmed one (``confirmed_by``) flagged. A detector's own ignore list (the original API's
``FsNotify(ignore_user_names=...)``) leaves no trace in the record; the policy cannot see it.

Standard library only (the integration's in-process path imports the policy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from mimizuku.core import fields
from mimizuku.core.records import SCORE_FLOOR, finite_float

__all__ = ["FlagRule", "Verdict", "IGNORED", "ABUSE", "SCORE_FLOOR", "record_flagged", "count_flagged",
           "record_score"]

#: how a record's reasons say that an ignore list applied (``FlagRule.ignored``)
IGNORED = "ignored: "
#: how a record's reasons say that the alert is an abuse file (``FlagRule.abuse``)
ABUSE = "abuse file: "


@dataclass
class Verdict:
    """The rule's judgement of one alert (or one record).

    ``detectors``: the detectors that flagged it (step 1), in the model's order; ``best``: the
    detector its record speaks for (the largest margin over its threshold; files for an abuse
    file it scored); ``ignored`` / ``abuse``: the reason, or None; ``repeat_of``: the anomaly it
    repeats (set by whoever asked the detector's repeat windows, step 4)."""

    detectors: Tuple[str, ...]
    best: Optional[str]
    ignored: Optional[str] = None
    abuse: Optional[str] = None
    repeat_of: Optional[str] = None
    suppressed_by: Optional[str] = None
    confirmed_by: Optional[str] = None

    @property
    def flagged(self) -> bool:
        """Steps 1-4: far from normal — what a new model must not learn from."""
        if self.abuse is not None or self.confirmed_by is not None:
            return True
        return bool(self.detectors) and self.ignored is None and self.suppressed_by is None

    @property
    def anomaly(self) -> bool:
        """Raised: flagged and not a repeat (the record's ``anomaly``)."""
        return self.flagged and self.repeat_of is None

    @property
    def repeat_candidate(self) -> Optional[str]:
        """The detector whose repeat windows judge whether this alert repeats an anomaly (step 4),
        or None: it cannot be a repeat."""
        if len(self.detectors) == 1 and self.ignored is None and self.abuse is None:
            return self.detectors[0]   # a suppressed one too: the rest of its burst repeats it
        return None

    @property
    def flagged_by(self) -> Optional[str]:
        """What flagged it: the first detector that did, ``"abuse"``, or None (not flagged)."""
        if self.abuse is not None:
            return "abuse"
        if self.confirmed_by is not None:
            return "confirmed"
        if self.detectors and self.ignored is None and self.suppressed_by is None:
            return self.detectors[0]
        return None


class FlagRule:
    """The flag rule with its lists and thresholds (see the module docstring).

    ``thresholds``: overrides of the fitted thresholds, per detector name or ``"*"`` (the
    integration's ``thresholds`` option); None or empty: the fitted ones. Lists are matched as
    ``Mimizuku`` always matched them: paths by ``path_matches`` (a glob, a prefix or a basename),
    users exactly (the alert's user, the file's owner, the command's user). ``feedback``: the
    analysts' verdicts that apply now (``mimizuku.engine.feedback.ActiveFeedback``), or None.
    """

    def __init__(self, ignore_users: Iterable[str] = (), ignore_files: Iterable[str] = (),
                 abuse_files: Iterable[str] = (), thresholds: Optional[Mapping[str, float]] = None,
                 alert_budget: bool = True, feedback: Any = None):
        self.alert_budget = alert_budget
        self.feedback = feedback
        self.ignore_users = tuple(ignore_users)
        self.ignore_files = tuple(ignore_files)
        self.abuse_files = tuple(abuse_files)
        self.thresholds = dict(thresholds or {})
        self._match = None
        if self.ignore_files or self.abuse_files:
            # the path matcher lives with the files detector (numpy): imported only when a list needs it
            from mimizuku.engine.detectors.files import path_matches

            self._match = path_matches

    # -- inputs ----------------------------------------------------------------------------------
    def threshold(self, detector: Optional[str], fitted: float, judged_by: int = 1) -> float:
        """The threshold a detector's score is held to: an override, else the fitted one, raised
        to the detector's share of the alert's budget when ``judged_by`` detectors judge the alert
        (step 1: tail probability ``contamination / judged_by``)."""
        o = self.override(detector) if self.thresholds else None
        if o is not None:
            return o
        if self.alert_budget and judged_by > 1:
            return min(1.0, fitted + math.log(judged_by) / -math.log(SCORE_FLOOR))
        return fitted

    def override(self, detector: Optional[str]) -> Optional[float]:
        """The override for this detector, or None (the fitted threshold stands)."""
        return self.thresholds.get(str(detector), self.thresholds.get("*"))

    def ignored(self, alert: Dict[str, Any]) -> Optional[str]:
        """Why the model's ignore lists cover this alert (None when they do not)."""
        if self.ignore_files and fields.is_fim(alert):
            m = self._match(fields.file_path(alert) or "", self.ignore_files)
            if m:
                return f"{IGNORED}path matches ignore_files entry {m!r}"
        if self.ignore_users:
            users = {fields.any_user(alert), fields.file_user(alert) if fields.is_fim(alert) else None,
                     fields.command_user(alert) if fields.is_command(alert) else None}
            hit = sorted(u for u in users if u is not None and u in self.ignore_users)
            if hit:
                return f"{IGNORED}user {hit[0]!r} is in ignore_users"
        return None

    def abuse(self, alert: Dict[str, Any]) -> Optional[str]:
        """Why this alert is an abuse file, always flagged (None when it is not)."""
        if self.abuse_files and fields.is_fim(alert):
            m = self._match(fields.file_path(alert) or "", self.abuse_files)
            if m:
                return f"{ABUSE}path matches abuse_files entry {m!r} (always flagged)"
        return None

    # -- the rule --------------------------------------------------------------------------------
    def judge(self, alert: Dict[str, Any], scored: Mapping[str, Tuple[float, Any, Any]]) -> Verdict:
        """The verdict on an alert from what each detector made of it: ``scored`` maps a detector
        name to (calibrated score, key, detector), in the model's detector order (ties of the
        best margin go to the first)."""
        flagged = []
        best, best_margin = None, None
        deferred = None  # why a detector over its threshold left the alert to the others
        k = len(scored)
        plain = not self.thresholds and (k == 1 or not self.alert_budget)  # the hot path: fitted as is
        for name, (s, _k, d) in scored.items():
            margin = s - (d.threshold_ if plain else self.threshold(name, d.threshold_, k))
            if margin >= 0 and d.ignored(alert) is None:
                why = d.defers(alert)
                if why is None:
                    flagged.append(name)
                elif deferred is None:
                    deferred = f"{IGNORED}the {name} detector leaves it to the others: {why}"
            if best_margin is None or margin > best_margin:
                best, best_margin = name, margin
        abuse = self.abuse(alert)
        if abuse is not None and "files" in scored:
            best = "files"
        suppressed = confirmed = None
        if self.feedback is not None:
            # not flagged here: the detector its record speaks for, which a lowered threshold
            # override (the policy, judge_record) would flag
            suppressed, confirmed = self.feedback.match(scored, flagged or ((best,) if best else ()))
            if abuse is not None:
                suppressed = None
        ignored = self.ignored(alert)
        if ignored is None and not flagged:
            # a record over its threshold says why it was not flagged (and a threshold override,
            # judge_record, keeps it unflagged, as an ignore list's)
            ignored = deferred
        return Verdict(tuple(flagged), best, ignored, abuse, None, suppressed, confirmed)

    def judge_record(self, record: Mapping[str, Any]) -> Verdict:
        """The verdict on a scored record with this rule's thresholds: its detector's score
        against the override (or the record's threshold); the ignore list, abuse entry and
        repeat the record carries stand."""
        det = record.get("detector")
        fitted = record_score(record, "threshold", math.inf)
        flagged = (det,) if record_score(record) >= self.threshold(det, fitted) else ()
        ignored = abuse = None
        for r in record.get("reasons") or ():
            if isinstance(r, str):
                if ignored is None and r.startswith(IGNORED):
                    ignored = r
                elif abuse is None and r.startswith(ABUSE):
                    abuse = r
        confirmed = record.get("confirmed_by")
        return Verdict(flagged, det, ignored, abuse, record.get("repeat_of") or None,
                       _text_or_none(record.get("suppressed_by")), _text_or_none(confirmed))


def _text_or_none(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def record_score(record: Mapping[str, Any], key: str = "score", default: float = 0.0) -> float:
    """A record's number (``score`` by default) as a finite float, else ``default``."""
    return finite_float(record.get(key), default)


def record_flagged(record: Mapping[str, Any]) -> bool:
    """Whether a record is flagged (steps 1-3): raised, or a repeat of what was raised."""
    return bool(record.get("anomaly") or record.get("repeat_of"))


def count_flagged(records: Sequence[Mapping[str, Any]]) -> int:
    """How many records are flagged (the anomaly filter's and the validation's count)."""
    return sum(1 for r in records if record_flagged(r))

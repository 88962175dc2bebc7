"""`Mimizuku`: the estimator users import — the original library's API, three detectors inside.

    model = Mimizuku(n_neighbors=5)
    model.fit("./training.json")          # any source mimizuku.sources.reader reads
    model.save_model("./models")
    anomalies = Mimizuku.load_model("./models", ignore_users=["root"]).predict("./test.json")

Training streams the alerts once and keeps only counts of distinct situations per detector, so
memory follows the variety of the data, not its volume. Scoring works in batches and memoises
per situation. Each scored alert becomes a record (docs/records.md); ``predict`` returns the
anomalies as a DataFrame, ``score`` every scored alert. Whether an alert is flagged is the flag
rule's (``mimizuku.engine.flag_rule``); ``iter_scored`` gives, per alert, its record, the rule's
verdict and each detector's key, ``judge_batch`` the verdicts alone (no records built).
"""
from __future__ import annotations

import copy
import datetime as _dt
import gc
import logging
import numbers
import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple

from mimizuku.core import fields
from mimizuku.core.alert_identity import content_id
from mimizuku.core.bounded import make_room
from mimizuku.core.records import DEFAULT_CONTAMINATION
from mimizuku.core.severity import SEVERITIES, SEVERITY_RANK
from mimizuku.engine.calibration import severity as severity_of
from mimizuku.engine.detectors.base import Detector, NotEnoughData
from mimizuku.engine.detectors.commands import CommandDetector
from mimizuku.engine.detectors.context import ContextDetector
from mimizuku.engine.detectors.files import FileIntegrityDetector
from mimizuku.engine.feedback import FeedbackSet
from mimizuku.engine.flag_rule import FlagRule, Verdict
from mimizuku.engine.lineage import ChannelAware, ProcessLineage
from mimizuku.engine.peers import PeerGroups, agent_profiles
from mimizuku.engine.stories import DEFAULT_GAP, StoryWindows, judge_alert, story_key, story_who
from mimizuku.engine.techniques import SCORE_LIFT, Technique
from mimizuku.engine.techniques import as_record as technique_record
from mimizuku.engine.techniques import match as match_technique

log = logging.getLogger("mimizuku")

DETECTORS = ("files", "commands", "context")
ORIGINAL_COLUMNS = ["original_hostname", "original_path", "original_event",
                    "original_effective_user", "original_command", "original_user"]
RECORD_COLUMNS = ["id", "timestamp", "agent_id", "agent_name", "rule_id", "rule_level",
                  "rule_description", "detector", "score", "severity", "anomaly", "reasons"] + ORIGINAL_COLUMNS


def _span(seconds: int) -> str:
    """A duration as a person reads it (an episode's)."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


class Mimizuku:
    """Anomaly detection for Wazuh alerts (file integrity, commands, alert context).

    Parameters are stored as given (scikit-learn style); fitted state ends in ``_``.
    ``detectors`` picks which of ``files``, ``commands``, ``context`` to train; ``add_rule``
    (the original API) replaces that choice with the detector objects given.
    """

    def __init__(self, contamination=DEFAULT_CONTAMINATION, n_neighbors=5, abuse_files=(), ignore_files=(),
                 ignore_users=(), detectors=DETECTORS, eps=0.5, min_samples=5, rate_window=60,
                 context_contamination=None):
        self.contamination = contamination
        self.n_neighbors = n_neighbors
        self.abuse_files = abuse_files
        self.ignore_files = ignore_files
        self.ignore_users = ignore_users
        self.detectors = detectors
        self.eps = eps
        self.min_samples = min_samples
        self.rate_window = rate_window
        self.context_contamination = context_contamination
        self.rules: List[Detector] = []

    def __setstate__(self, state):
        # a model that travelled pickled (to a Dask worker): its detectors dropped the lineage
        # they share (see ChannelJudged.__getstate__); give it back to them
        self.__dict__.update(state)
        lineage = state.get("lineage_")
        if lineage is not None:
            _attach(state.get("detectors_", {}).values(), lineage)

    # -- stories (mimizuku.engine.stories) ---------------------------------------------------
    #: the longest pause (seconds) inside one agent and account's story: an anomaly of it that
    #: brings no news (no higher band, no new detector or rule, no new technique) is not raised
    #: again; 0 raises every anomaly (a class default: a stream setting, not a fitted one)
    story_window = DEFAULT_GAP

    @property
    def stories(self) -> StoryWindows:
        """The stories this model's stream has open (a stream's state: ``start_stream`` forgets
        them, a hot reload and the stream snapshot carry them)."""
        windows = self.__dict__.get("_stories")
        if windows is None or windows.window != self.story_window:
            windows = self._stories = StoryWindows(self.story_window)
        return windows

    @stories.setter
    def stories(self, windows: StoryWindows) -> None:
        self._stories = windows

    # -- composition ------------------------------------------------------------------------
    def add_rule(self, rule: Detector) -> "Mimizuku":
        """Use this detector (original API: ``FsNotify``, ``AuditCommand``); replaces the default set."""
        self.rules.append(rule)
        return self

    def validate_params(self) -> None:
        """Raise ``ValueError`` naming the first parameter out of range (``fit`` calls this first;
        parameters are stored as given, scikit-learn style)."""
        for name in ("abuse_files", "ignore_files", "ignore_users", "detectors"):
            if isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a list of names, not the string {getattr(self, name)!r}")
        _check_share("contamination", self.contamination)
        if self.context_contamination is not None:
            _check_share("context_contamination", self.context_contamination)
        if self.rules:
            return  # add_rule: the detectors given carry their own parameters
        unknown = set(self.detectors) - set(DETECTORS)
        if unknown:
            raise ValueError(f"unknown detector(s) {sorted(unknown)}; choose from {list(DETECTORS)}")
        if not self.detectors:
            raise ValueError(f"detectors is empty; choose from {list(DETECTORS)}")
        _check_number("n_neighbors", self.n_neighbors, 1, integer=True)
        _check_number("eps", self.eps, 0, strict=True)
        _check_number("min_samples", self.min_samples, 1, integer=True)
        _check_number("rate_window", self.rate_window, 0, strict=True)

    def make_detectors(self) -> List[Detector]:
        """The detectors this model trains, unfitted (the ``add_rule`` ones as given); validates
        the parameters first."""
        self.validate_params()
        if self.rules:
            return list(self.rules)
        made = {
            "files": lambda: FileIntegrityDetector(n_neighbors=self.n_neighbors, contamination=self.contamination),
            "commands": lambda: CommandDetector(n_neighbors=self.n_neighbors, contamination=self.contamination),
            "context": lambda: ContextDetector(eps=self.eps, min_samples=self.min_samples,
                                               contamination=self._context_contamination(),
                                               rate_window=self.rate_window),
        }
        return [made[n]() for n in DETECTORS if n in self.detectors]

    def same_keys_as(self, other: "Mimizuku") -> List[str]:
        """The detectors this model trains that key alerts as ``other``'s fitted detectors of
        the same name do (same class, parameters and ``key_scheme``): the keys ``other`` computed while
        scoring a stream may be counted by this model's training (``count_partition``) instead
        of being computed twice."""
        out = []
        for d in self.make_detectors():
            old = other.detectors_.get(d.name)
            if (old is not None and type(old) is type(d) and old.get_params() == d.get_params()
                    and old.key_scheme() == d.key_scheme()):
                out.append(d.name)
        return out

    def _context_contamination(self) -> float:
        """The context detector's alert budget (default: ``contamination``). It scores *every*
        alert, so a SOC that finds 0.1 % of all alerts too many may lower it on its own."""
        return self.contamination if self.context_contamination is None else self.context_contamination

    # -- training ---------------------------------------------------------------------------
    def fit(self, data, *, days=None, since=None, until=None, progress=False) -> "Mimizuku":
        """Learn what is normal from alerts (path, directory tree, DataFrame, list or dict)."""
        from mimizuku.sources.reader import ReadStats, iter_alerts

        self.validate_params()
        stats = ReadStats()
        part = self.count_partition(iter_alerts(data, days=days, since=since, until=until, stats=stats,
                                                progress=progress))
        return self.fit_partitions([part], stats, progress=progress)

    # -- training in partitions (one stream, or many merged: mimizuku.nightly.partitions) ------
    def count_partition(self, alerts: Iterable[Any], *, shared_keys: Sequence[str] = ()) -> "PartialFit":
        """Observe one partition of the training alerts with fresh detectors.

        Returns what the detectors counted (``Detector.partial_state``): picklable and
        mergeable, so partitions read apart (sequentially or on Dask workers) make one model
        with ``fit_partitions``. Per-stream state (rate windows) starts anew here.

        ``alerts`` may hold ``ScoredAlert`` items of another model that scored the same stream
        (the nightly anomaly filter's): the detectors named in ``shared_keys`` (see
        ``same_keys_as``) count the keys it computed instead of computing them again."""
        dets = self.make_detectors()
        lineage = _attach(dets, ProcessLineage())  # learning: heads are counted, every channel counts
        for d in dets:
            d.begin_fit()
        with _gc_paused():
            n, first, last = self._observe_all(alerts, dets, lineage, frozenset(shared_keys))
        states = {d.name: d.partial_state() for d in dets}
        states[_LINEAGE_STATE] = {"heads": lineage.heads}
        return PartialFit(n=n, first=first, last=last, states=states)

    def fit_partitions(self, partials: Iterable["PartialFit"], stats: Any = None, *, progress=False) -> "Mimizuku":
        """Fit the detectors on the merged partitions (in the order given: the order of first
        sight of each situation is kept, so the result equals one stream's). ``stats``: what the
        reading counted (``ReadStats``), kept in the manifest."""
        if stats is None:
            from mimizuku.sources.reader import ReadStats

            stats = ReadStats()
        dets = self.make_detectors()
        for d in dets:
            d.begin_fit()
        learning = ProcessLineage()
        n, first, last = 0, None, None
        for p in partials:
            learning.heads.update((p.states.get(_LINEAGE_STATE) or {}).get("heads") or {})
            n += p.n
            if p.first is not None and (first is None or p.first < first):
                first = p.first
            if p.last is not None and (last is None or p.last > last):
                last = p.last
            for d in dets:
                state = p.states.get(d.name)
                if state is not None:
                    d.merge_state(state)
        if n == 0:
            raise NotEnoughData(f"no alerts to train on ({stats})")
        # who does the same work (mimizuku.engine.peers), from what every detector counted:
        # known before any detector fits, so training scores back off to peers as scoring will
        peers = PeerGroups().fit(agent_profiles(dets))
        for d in dets:
            d.use_peer_groups(peers)
        fitted, problems = [], {}
        steps = dets
        if progress:
            from tqdm import tqdm

            steps = tqdm(dets, desc="training", unit="detector", leave=False)
        for d in steps:
            if progress:
                steps.set_postfix_str(d.name)
            try:
                fitted.append(d.end_fit())
                d.note_resolution()
            except NotEnoughData as e:
                problems[d.name] = str(e)
                log.warning("%s", e)
        if not fitted:
            raise NotEnoughData("no detector could be trained: " + "; ".join(problems.values()))
        self.detectors_ = {d.name: d for d in fitted}
        self.change_channels_ = sorted(learning.learnt())
        self.lineage_ = _attach(fitted, ProcessLineage(self.change_channels_))
        self.skipped_detectors_ = problems
        self.n_alerts_ = n
        self.read_stats_ = stats.as_dict()
        self.training_window_ = {"first": first, "last": last}
        self.model_version_ = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
        return self

    def _observe_all(self, alerts: Iterable[Any], dets: Sequence[Detector],
                     lineage: Optional[ProcessLineage] = None, shared: FrozenSet[str] = frozenset()):
        """Feed every alert to the detectors that apply; returns (count, first and last timestamp)."""
        first = last = None
        n = 0
        rule = self.flag_rule()
        sharing = [d.name in shared for d in dets]
        for item in alerts:
            got = None
            if type(item) is ScoredAlert:
                alert, got = item.alert, item.scored if shared else None
            else:
                alert = item
            n += 1
            ts = fields.timestamp(alert)
            if ts:
                first = ts if first is None or ts < first else first
                last = ts if last is None or ts > last else last
            if lineage is not None:  # the process tree includes what is ignored
                lineage.annotate_one(alert)
            if rule.ignored(alert):
                continue
            if not got:
                for d in dets:
                    if d.applies(alert) and not d.ignored(alert):
                        d.observe(alert)
                continue
            for d, share in zip(dets, sharing):
                if d.applies(alert) and not d.ignored(alert):
                    v = got.get(d.name) if share else None
                    if v is None:
                        d.observe(alert)
                    else:
                        d.observe(alert, key=v[1])
        if lineage is not None:
            lineage.forget_batch()
        return n, first, last

    def peer_groups(self) -> PeerGroups:
        """The agents' peer groups this model learnt, as its detectors share them (empty for a
        model fitted before them)."""
        got = next((d.peer_groups_ for d in self.__dict__.get("detectors_", {}).values()
                    if d.peer_groups_ is not None), None)
        return got if got is not None else PeerGroups.from_json([])

    # -- the flag rule (mimizuku.engine.flag_rule) --------------------------------------------
    def flag_rule(self) -> FlagRule:
        """The rule this model flags alerts by: its ignore and abuse lists (with the fitted
        files detector's own abuse list, the original ``FsNotify`` API) and the fitted thresholds."""
        files = self.__dict__.get("detectors_", {}).get("files")
        abuse = list(self.abuse_files) + list(getattr(files, "abuse_files", ()) or ())
        fb = self.__dict__.get("feedback_set")
        return FlagRule(ignore_users=self.ignore_users, ignore_files=self.ignore_files, abuse_files=abuse,
                        feedback=fb.at() if fb is not None else None)

    # -- analysts' verdicts (mimizuku.engine.feedback) -------------------------------------------
    def set_feedback(self, feedback: Any) -> "Mimizuku":
        """Judge with these analysts' verdicts from the next batch on: a ``FeedbackSet``, a path
        to a verdict store (``mimizuku feedback``), or None (none). Verdicts are not part of the
        model: they are never saved with it and survive retrains and rollbacks."""
        if feedback is not None and not isinstance(feedback, FeedbackSet):
            from mimizuku.store.feedback import FeedbackStore

            feedback = FeedbackSet.from_json(FeedbackStore(feedback).load(), str(feedback))
        self.feedback_set = feedback
        return self

    @property
    def feedback(self) -> Optional[FeedbackSet]:
        """The analysts' verdicts this model judges with (None: none)."""
        return self.__dict__.get("feedback_set")

    # -- scoring ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "detectors_"):
            raise RuntimeError("this Mimizuku model is not fitted yet: call fit() or load_model()")

    def start_stream(self) -> None:
        """Start a new stream: rate and repeat windows, fleet waves and the processes the
        lineage follows begin anew (what was learnt stays)."""
        self._check_fitted()
        for d in self.detectors_.values():
            d.start_stream()
        self.__dict__.pop("_stories", None)
        self.__dict__.pop("_suppressed_by_opener", None)
        lineage = self.__dict__.get("lineage_")
        if lineage is not None:
            lineage.start_stream()

    def stream_copy(self) -> "Mimizuku":
        """A copy that follows a stream of its own (its detectors' stream state and caches, its
        lineage's processes) and shares the fitted state, read-only: for scoring side by side in
        threads (the nightly job's Dask workers)."""
        self._check_fitted()
        mine = copy.copy(self)
        mine.detectors_ = {n: copy.copy(d) for n, d in self.detectors_.items()}  # __getstate__ drops caches
        mine.__dict__.pop("_stories", None)
        mine.__dict__.pop("_suppressed_by_opener", None)   # per stream
        lineage = self.__dict__.get("lineage_")
        if lineage is not None:  # a copy keeps what was learnt and starts its own stream
            mine.lineage_ = _attach(mine.detectors_.values(), copy.copy(lineage))
        return mine

    def iter_scored(self, data, *, batch_size=2048, days=None, since=None, until=None,
                    progress=False, new_stream=True, stats=None) -> Iterator["ScoredAlert"]:
        """Score alerts in batches; yields one ``ScoredAlert`` per alert read, in order: the
        alert, its record (None when no detector applies), the flag rule's verdict and each
        detector's key."""
        from mimizuku.sources.reader import iter_alerts

        self._check_fitted()
        dets = list(self.detectors_.values())
        if new_stream:
            self.start_stream()
        rule = self.flag_rule()
        batch: List[Dict[str, Any]] = []
        for alert in iter_alerts(data, days=days, since=since, until=until, stats=stats, progress=progress):
            batch.append(alert)
            if len(batch) >= batch_size:
                yield from self._score_batch(batch, dets, rule)
                batch = []
        if batch:
            yield from self._score_batch(batch, dets, rule)

    def iter_records(self, data, **kw) -> Iterator[Dict[str, Any]]:
        """Score alerts in batches; yields one record (docs/records.md) per scored alert (the
        keywords of ``iter_scored``)."""
        for scored in self.iter_scored(data, **kw):
            if scored.record is not None:
                yield scored.record

    def score_records(self, data, **kw) -> List[Dict[str, Any]]:
        """Every scored alert as a plain dict (the scored-record schema)."""
        return list(self.iter_records(data, **kw))

    def judge_batch(self, alerts: Sequence[Dict[str, Any]]) -> List["ScoredAlert"]:
        """The flag rule's verdict on each alert of a batch (the next batch of this model's
        stream), without building records: no reasons, and no repeat windows asked (repeats
        are flagged: ``Verdict.flagged``). The nightly anomaly filter judges its training
        window this way. ``record`` is None; ``verdict`` too when no detector applies."""
        self._check_fitted()
        return self._score_batch(alerts, list(self.detectors_.values()), self.flag_rule(), records=False)

    def _score_batch(self, alerts: Sequence[Dict[str, Any]], dets: Sequence[Detector], rule: FlagRule, *,
                     records: bool = True) -> List["ScoredAlert"]:
        lineage = self.__dict__.get("lineage_")
        with _gc_paused():
            if lineage is None:
                return self._judge(alerts, dets, rule, records)
            lineage.annotate(alerts)  # the whole batch, in order, before any detector keys it
            try:
                return self._judge(alerts, dets, rule, records)
            finally:
                lineage.forget_batch()

    def _judge(self, alerts: Sequence[Dict[str, Any]], dets: Sequence[Detector], rule: FlagRule,
               records: bool) -> List["ScoredAlert"]:
        per_alert: List[Dict[str, Any]] = [{} for _ in alerts]
        for d in dets:
            idx = [i for i, a in enumerate(alerts) if d.applies(a)]
            if not idx:
                continue
            keys = [d.key(alerts[i]) for i in idx]
            scores = d.calibrate(d.raw_scores(keys))
            for i, k, s in zip(idx, keys, scores):
                per_alert[i][d.name] = (float(s), k, d)
        out = []
        cut: Dict[Tuple[str, int], float] = {}   # (detector, judged by) -> the score a lift can flag from
        for alert, got in zip(alerts, per_alert):
            if not got:
                out.append(ScoredAlert(alert))
                continue
            technique = self._technique(alert, got, rule, cut)
            verdict = rule.judge(alert, got)
            out.append(ScoredAlert(alert, self._record(alert, got, verdict, rule, technique) if records else None,
                                   verdict, got))
        return out

    #: suppressed anomalies remembered per stream, whose repeats are suppressed too
    _SUPPRESSED_OPENERS = 100_000

    def _follow_suppressed(self, verdict: Verdict, rid: str, rule: FlagRule) -> None:
        """A burst is one story: when its opener was suppressed by a false-positive verdict, the
        rest of it (its repeats, whose own situation the verdict may not name: another temporary
        file of the same editor session) is suppressed by the same verdict."""
        openers = self.__dict__.setdefault("_suppressed_by_opener", {})
        if verdict.suppressed_by is not None:
            if verdict.repeat_of is None:
                make_room(openers, self._SUPPRESSED_OPENERS)
                openers[rid] = verdict.suppressed_by
        elif verdict.confirmed_by is None and verdict.abuse is None:
            vid = openers.get(verdict.repeat_of)
            if vid is not None and rule.feedback is not None and vid in rule.feedback.by_id:
                verdict.suppressed_by = vid

    @staticmethod
    def _technique(alert: Dict[str, Any], got: Dict[str, Any], rule: FlagRule,
                   cut: Dict[Tuple[str, int], float]) -> Optional[Technique]:
        """The ATT&CK technique a new situation looks like (mimizuku.engine.techniques), or None.

        Consulted only for detectors whose score, lifted, would reach their threshold and that
        judge the situation new for its entity; their scores in ``got`` are lifted in place. A
        routine situation is never annotated, whatever it looks like. ``cut``: memo of the lowest
        score a lift can flag, per (detector, detectors judging the alert)."""
        k = len(got)
        near = []
        for n, (s, key, d) in got.items():
            low = cut.get((n, k))
            if low is None:
                low = cut[(n, k)] = rule.threshold(n, d.threshold_, k) - SCORE_LIFT
            if s >= low and d.is_new(key):
                near.append(n)
        if not near:
            return None
        t = match_technique(alert)
        if t is not None:
            for n in near:
                s, key, d = got[n]
                got[n] = (min(1.0, s + SCORE_LIFT), key, d)
        return t

    def _record(self, alert: Dict[str, Any], got: Dict[str, Any], verdict: Verdict, rule: FlagRule,
                technique: Optional[Technique] = None) -> Dict[str, Any]:
        best_name = verdict.best
        s, k, d = got[best_name]
        reasons: List[str] = []
        rid = fields.alert_id(alert) or content_id(alert)
        flagged_by = verdict.repeat_candidate
        episode = None
        if flagged_by is not None:
            # one anomaly per situation per window (mimizuku.engine.repeats): the rest of a burst, or the
            # same action seen through a second log, repeats it
            fs, fk, fd = got[flagged_by]
            band = severity_of(fs, rule.threshold(fd.name, fd.threshold_, len(got)), True)
            verdict.repeat_of, ep = fd.judge_repeat(fk, alert, band, rid)
            if verdict.suppressed_by is not None or verdict.repeat_of is not None:
                self._follow_suppressed(verdict, rid, rule)
            if verdict.repeat_of is not None and ep is not None:
                reasons.append(f"repeats anomaly {verdict.repeat_of} ({fd.name}: {fd.repeat_what}, "
                               f"{ep.alerts} alerts over {_span(ep.duration)} without a pause of "
                               f"{fd.repeat_window} s): counted there, not raised again")
            elif ep is not None and ep.alerts > 1 and verdict.anomaly:
                episode = {"of": ep.opener, "since": ep.since, "alerts": ep.alerts, "duration_s": ep.duration}
        if verdict.abuse:
            reasons.append(verdict.abuse)
        if verdict.suppressed_by is not None:
            reasons.append(rule.feedback.reason(verdict.suppressed_by))
        anomaly = verdict.anomaly
        if anomaly:
            for name in ([best_name] + [n for n in verdict.detectors if n != best_name]):
                ds, dk, dd = got[name]
                prefix = "" if name == best_name else f"[{name}] "
                reasons.extend(prefix + r for r in dd.explain(dk, alert))
        elif verdict.ignored:
            reasons.append(verdict.ignored)
        threshold = rule.threshold(best_name, d.threshold_, len(got))
        sev = "critical" if verdict.abuse else severity_of(s, threshold, anomaly)
        if verdict.confirmed_by is not None:
            # the situation of an incident an analyst confirmed: at least high, whatever its score
            sev = SEVERITIES[max(SEVERITY_RANK[sev], SEVERITY_RANK["high"])] if anomaly else sev
            reasons.insert(0, rule.feedback.reason(verdict.confirmed_by))
        if technique is not None and anomaly:
            # a new situation that looks like an attacker's technique: one band up
            sev = SEVERITIES[min(len(SEVERITIES) - 1, SEVERITY_RANK[sev] + 1)]
            reasons.insert(0, f"looks like ATT&CK {technique.id} {technique.technique} ({technique.tactic}) "
                              f"in a situation new for its entity: score +{SCORE_LIFT}, severity one band up")
        story = None
        if anomaly and not verdict.abuse and verdict.confirmed_by is None:
            # one agent and account, one story: raised again only with news for it (an abuse
            # file and an analyst's confirmed incident are always raised)
            skey, agent = story_key(alert), fields.agent_name(alert) or fields.agent_id(alert) or ""
            story = judge_alert(self.stories, alert, sev, best_name, rid, technique.id if technique else None)
            if story is not None:
                owner = (self.stories.owner(agent) if agent else None) or skey
                effect = owner != skey  # an effect joined the story of its host's last anomaly
                verdict.repeat_of, anomaly, sev, episode = story.opener, False, "none", None
                news = "technique" if effect else "rule or new technique"
                reasons.insert(0, f"{'an effect on its host right after an anomaly there: ' if effect else ''}"
                                  f"part of the story of {story_who(owner)} that anomaly {story.opener} opened "
                                  f"({story.anomalies} anomalies over {_span(story.duration)} since {story.since}): "
                                  f"no higher band, new {news}, so not raised again")
            else:
                story = self.stories.story(skey)
                if story is not None and story.opener != rid:  # raised with news: its own reasons first
                    reasons.append(f"news in the story of {story_who(skey)} that anomaly {story.opener} opened "
                                      f"({story.anomalies} anomalies over {_span(story.duration)} since "
                                      f"{story.since}): a higher band, a new rule or a new technique")
                else:
                    story = None
        rec = {
            "id": rid,
            "timestamp": fields.timestamp(alert),
            "agent": {"id": fields.agent_id(alert), "name": fields.agent_name(alert), "ip": fields.agent_ip(alert)},
            "rule": {"id": fields.rule_id(alert), "level": fields.rule_level(alert),
                     "description": fields.rule_description(alert), "groups": fields.rule_groups(alert)},
            "location": fields.location(alert),
            "detector": best_name,
            "score": round(s, 6),
            "score_pct": int(round(100 * s)),
            "threshold": round(float(threshold), 6),
            "anomaly": anomaly,
            "severity": sev,
            "reasons": reasons if anomaly or verdict.ignored or verdict.repeat_of or verdict.suppressed_by else [],
            "scores": {n: round(v[0], 6) for n, v in got.items()},
            "fields": fields.key_fields(alert),
            "model_version": getattr(self, "model_version_", "unversioned"),
        }
        if technique is not None:
            rec["mitre"] = technique_record(technique)
        if verdict.repeat_of is not None:
            rec["repeat_of"] = verdict.repeat_of
        if story is not None:
            rec["story"] = {"of": story.opener, "since": story.since, "anomalies": story.anomalies,
                            "duration_s": story.duration}
            if len(story.agents) > 1:  # a person's story that crossed hosts
                rec["story"]["agents"] = sorted(story.agents)
        if verdict.suppressed_by is not None:
            rec["suppressed_by"] = verdict.suppressed_by
        if verdict.confirmed_by is not None:
            rec["confirmed_by"] = verdict.confirmed_by
        if episode is not None:  # an update of an episode that climbed a band: the story so far
            rec["episode"] = episode
            reasons.insert(0, f"update of anomaly {episode['of']}: {sev} now; {episode['alerts']} alerts of "
                              f"{got[flagged_by][2].repeat_what} over {_span(episode['duration_s'])} "
                              f"since {episode['since']}")
        return rec

    def score(self, data, **kw):
        """Every scored alert as a DataFrame (one row per alert)."""
        return _frame(self.iter_records(data, **kw))

    def predict(self, data, **kw):
        """The anomalies as a DataFrame (the original API)."""
        return _frame(r for r in self.iter_records(data, **kw) if r["anomaly"])

    # -- persistence ------------------------------------------------------------------------
    def params(self) -> Dict[str, Any]:
        return {"contamination": self.contamination, "n_neighbors": self.n_neighbors,
                "abuse_files": list(self.abuse_files), "ignore_files": list(self.ignore_files),
                "ignore_users": list(self.ignore_users), "detectors": list(self.detectors), "eps": self.eps,
                "min_samples": self.min_samples, "rate_window": self.rate_window,
                "context_contamination": self.context_contamination}

    def manifest(self) -> Dict[str, Any]:
        self._check_fitted()
        return {
            "model_version": self.model_version_,
            "params": self.params(),
            "training": {"alerts": self.n_alerts_, "window": self.training_window_, "read": self.read_stats_},
            "detectors": {
                name: {"alerts": d.n_alerts_, "situations": d.n_keys_, "threshold": d.threshold_,
                       "contamination": d.contamination, "class": type(d).__name__}
                for name, d in self.detectors_.items()
            },
            "skipped_detectors": self.skipped_detectors_,
            # agents grouped by what they do (mimizuku.engine.peers): status and the report show them
            "peer_groups": self.peer_groups().to_json(),
            # (agent, channel) pairs whose change channel ran routinely in training (lineage)
            "change_channels": [list(p) for p in getattr(self, "change_channels_", [])],
        }

    def save_model(self, model_dir, *, group=None, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Write the fitted detectors and a checksummed manifest into ``model_dir`` (atomically).

        The files are plain data (``mimizuku.store.plain_state``: loading them runs no code);
        ``group``: the files' group (``save_model_dir``); ``extra``: more manifest keys."""
        from mimizuku.engine.model_state import trusted_classes
        from mimizuku.store.model_dir import save_model_dir

        manifest = self.manifest()
        manifest.update(extra or {})
        return save_model_dir(model_dir, dict(self.detectors_), manifest, group=group,
                              trusted_classes=trusted_classes())

    @classmethod
    def load_model(cls, model_dir, ignore_files=None, abuse_files=None, ignore_users=None,
                   check_versions=True, feedback="installed") -> "Mimizuku":
        """Load a model directory after verifying checksums, ownership and permissions, and that
        its manifest agrees with its files (``ModelIntegrityError`` naming what differs).

        The ignore/abuse lists given here replace the ones saved with the model. ``feedback``:
        the analysts' verdicts to judge with (``set_feedback``); ``"installed"`` (the default):
        the verdict store that belongs to ``model_dir`` (``mimizuku.store.feedback.default_path``)
        when it exists; None: none.
        """
        from mimizuku.engine.model_state import ManifestMismatch, check_manifest, trusted_classes
        from mimizuku.store.model_dir import ModelIntegrityError, load_model_dir
        from mimizuku.store.versions import resolve_model_dir

        # a model root kept by the nightly job holds versions/<v>/ and a `current` pointer
        path = resolve_model_dir(model_dir)
        objects, manifest = load_model_dir(path, check_versions=check_versions, trusted_classes=trusted_classes())
        try:
            check_manifest(manifest, objects, str(path))
        except ManifestMismatch as e:
            raise ModelIntegrityError(str(e)) from None
        p = dict(manifest.get("params", {}))
        for name, value in (("ignore_files", ignore_files), ("abuse_files", abuse_files), ("ignore_users", ignore_users)):
            if value is not None:
                p[name] = list(value)
        known = {"contamination", "n_neighbors", "abuse_files", "ignore_files", "ignore_users",
                 "detectors", "eps", "min_samples", "rate_window", "context_contamination"}
        model = cls(**{k: v for k, v in p.items() if k in known})
        # the fitting order (the manifest is written with sorted keys): ties between detectors
        # (scores clipped at 1.0) go to the same detector as in the model that was saved
        saved = [n for n in manifest.get("detectors", {}) if n in objects]
        names = [n for n in DETECTORS if n in saved] + [n for n in saved if n not in DETECTORS]
        model.detectors_ = {n: objects[n] for n in names}
        channels = manifest.get("change_channels")
        if isinstance(channels, list):  # models written before lineage existed have none
            model.change_channels_ = sorted((str(a), str(c)) for a, c in channels)
            model.lineage_ = _attach(model.detectors_.values(), ProcessLineage(model.change_channels_))
        model.skipped_detectors_ = manifest.get("skipped_detectors", {})
        training = manifest.get("training", {})
        model.n_alerts_ = training.get("alerts", 0)
        model.training_window_ = training.get("window", {})
        model.read_stats_ = training.get("read", {})
        model.model_version_ = manifest.get("model_version", "unversioned")
        model.manifest_ = manifest
        if isinstance(feedback, str) and feedback == "installed":
            from mimizuku.store.feedback import default_path

            path = default_path(model_dir)
            feedback = path if os.path.lexists(path) else None
        return model.set_feedback(feedback)


class ScoredAlert:
    """One alert as a model scored it (``Mimizuku.iter_scored``, ``Mimizuku.judge_batch``).

    ``alert``: the alert; ``record``: its scored record (docs/records.md), None when no detector
    applies and when judged without records; ``verdict``: the flag rule's (``flag_rule.Verdict``),
    None when no detector applies; ``scored``: detector name -> (calibrated score, key, detector),
    in the model's order — ``keys`` and ``scores`` read it."""

    __slots__ = ("alert", "record", "verdict", "scored")

    def __init__(self, alert: Dict[str, Any], record: Optional[Dict[str, Any]] = None,
                 verdict: Optional[Verdict] = None, scored: Optional[Dict[str, Any]] = None):
        self.alert = alert
        self.record = record
        self.verdict = verdict
        self.scored = scored if scored is not None else {}

    @property
    def flagged(self) -> bool:
        """Flagged by the rule, repeats included (what a new model must not learn)."""
        return self.verdict is not None and self.verdict.flagged

    def key(self, detector: str) -> Any:
        """The key ``detector`` computed for this alert (its view of the alert), or None."""
        got = self.scored.get(detector)
        return None if got is None else got[1]

    @property
    def keys(self) -> Dict[str, Any]:
        return {n: v[1] for n, v in self.scored.items()}

    @property
    def scores(self) -> Dict[str, float]:
        return {n: v[0] for n, v in self.scored.items()}


@dataclass
class PartialFit:
    """What one partition of the training alerts taught: picklable, merged by ``fit_partitions``.

    ``states`` maps a detector name to its ``Detector.partial_state()`` (key counts and the
    like: compact, never alerts)."""

    n: int = 0
    first: Optional[str] = None
    last: Optional[str] = None
    states: Dict[str, Dict[str, Any]] = field(default_factory=dict)


#: where a partition's lineage (change-channel heads seen) rides in ``PartialFit.states``
_LINEAGE_STATE = "_lineage"


def _check_share(name: str, value: Any) -> None:
    """A share of alerts (contamination): a number in (0, 0.5], as scikit-learn's outlier detectors take."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 0.5:
        raise ValueError(f"{name} must be a number in (0, 0.5], got {value!r}")


def _check_number(name: str, value: Any, low: float, *, strict: bool = False, integer: bool = False) -> None:
    """A number at least ``low`` (above it when ``strict``), whole when ``integer``."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or (value <= low if strict else value < low):
        what = "a whole number" if integer else "a number"
        raise ValueError(f"{name} must be {what} {'>' if strict else '>='} {low}, got {value!r}")


def _attach(dets: Iterable[Detector], lineage: ProcessLineage) -> ProcessLineage:
    """Give the detectors that ask for change channels the model's process lineage."""
    for d in dets:
        if isinstance(d, ChannelAware):
            d.lineage = lineage
    return lineage


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector around a hot loop that makes no reference cycles.

    Scoring and counting allocate many small tuples; each full collection would otherwise walk
    every long-lived object of the model and its caches (a third of scoring time measured)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _flat(r: Dict[str, Any]) -> Dict[str, Any]:
    f = r["fields"]
    return {
        "id": r["id"], "timestamp": r["timestamp"], "agent_id": r["agent"]["id"], "agent_name": r["agent"]["name"],
        "rule_id": r["rule"]["id"], "rule_level": r["rule"]["level"], "rule_description": r["rule"]["description"],
        "detector": r["detector"], "score": r["score"], "severity": r["severity"], "anomaly": r["anomaly"],
        "reasons": r["reasons"],
        "original_hostname": r["agent"]["name"], "original_path": f.get("path"), "original_event": f.get("event"),
        "original_effective_user": f.get("user") if "path" in f else None,
        "original_command": f.get("command"), "original_user": f.get("user"),
    }


def _frame(records: Iterable[Dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame([_flat(r) for r in records], columns=RECORD_COLUMNS)

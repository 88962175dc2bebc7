"""What ``integrations/custom-mimizuku`` does with the one alert wazuh-integratord hands it.

integratord runs the script once per alert, strictly one after another, and waits for it: the
script must be quick, must never outlive the timeout it is given, and must never lose an alert.
So, per call:

1. read argv exactly as integratord writes it and the options it points to
   (:mod:`mimizuku.integratord.options`), and copy the alert out of its temporary file
   (integratord deletes it as soon as we exit);
2. drop the plugin's own events (feedback loop) -- standard library only up to here;
3. put the alert in the alert spool (durable) *before* any scoring starts;
4. with the resident scorer configured (``socket``), hand it the alert (:meth:`_Call.resident`,
   through :mod:`mimizuku.integratord.client`; the script's fast path,
   :func:`mimizuku.integratord.forward.forward`, usually did already): once it acknowledges, the
   call is done; when it does not, the alert stays in the spool for it (or, with
   ``"fallback": "in-process"`` and the scorer not running, is scored here). Otherwise score the
   spooled alerts, oldest first, in bounded batches in-process with the engine (imported only
   now, from the engine's virtualenv);
5. send anomalies (or every score, ``"send": "all"``) to analysisd through :class:`QueueSink`,
   which keeps what it cannot send; then remove the scored alerts from the spool.

A watchdog bounds the call: at the soft deadline the scoring is interrupted, the alerts stay in the
spool for the next call, and the script exits 0; a hard backstop (``faulthandler``'s C-level
timer, which needs no GIL) ends the process just before the timeout if C code does not return.

Exit codes (integratord logs any non-zero one as "Exit status was: N" in ossec.log):

==  ======================================================================================
0   done, or nothing to do, or the work was kept for later (timeout, no model trained yet,
    queue down: everything is in the spool)
1   unexpected internal error outside the handling of one alert (the alert is in the spool)
2   bad arguments or an unreadable/invalid options file (the alert is kept in the spool)
3   the alert file is missing, unreadable or not a Wazuh alert (a copy is kept in
    ``<spool>/rejected`` when there was anything to keep)
4   the model cannot be used (tampered, unsafe permissions, incompatible); alerts are kept
5   the alert could neither be scored nor kept (spool not writable or full): data was lost
6   the engine cannot be imported (broken virtualenv); alerts are kept
7   handling this alert failed unexpectedly: it was set aside, byte for byte, in
    ``<spool>/quarantine`` (:mod:`mimizuku.core.quarantine`) and one line says where and why
==  ======================================================================================

Any unexpected exception while one alert is handled is contained that way (issue 17 item 4): the
call's own alert before it is spooled, and in the spool drain each item the spool cannot decode
or the engine cannot score (also when it is not this call's), so no alert can stop the next calls.

Standard library only at import time.
"""
from __future__ import annotations

import contextlib
import faulthandler
import fcntl
import functools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from mimizuku.core import quarantine
from mimizuku.core.fields import is_alert, is_own_event
from mimizuku.core.spool import MISSING, Spool, SpoolError, owner_alive
from mimizuku.core.text import printable
from mimizuku.delivery import events
from mimizuku.delivery.failure_notice import FailureNotice
from mimizuku.delivery.queue_socket import QueueSink
from mimizuku.engine import stream_snapshot
from mimizuku.engine.policy import apply_policy
from mimizuku.integratord import client
from mimizuku.integratord.options import (
    NAME,
    Invocation,
    Options,
    OptionsError,
    UsageError,
    load_options,
    parse_argv,
    wazuh_home,
)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_ALERT = 3
EXIT_MODEL = 4
EXIT_LOST = 5
EXIT_ENGINE = 6
EXIT_QUARANTINED = 7

#: integratord skips alert lines over 64 KiB; anything far larger is not an alert from it.
MAX_ALERT_BYTES = 8 * 1024 * 1024


_SKIP = object()


class DeadlineExceeded(BaseException):
    """The soft deadline passed while scoring; the alerts stay in the spool.

    A BaseException, so engine code catching ``Exception`` cannot swallow it."""


class ScorerUnavailable(Exception):
    """A scorer cannot be used for this call; the next one is tried."""


class ModelMissing(ScorerUnavailable):
    """No model has been trained yet (expected right after install): alerts wait in the spool."""


# --- logging ------------------------------------------------------------------------------------

class IntegrationLog:
    """Appends single lines to ``logs/integrations.log`` (the stock integrations' log file)."""

    def __init__(self, path: "os.PathLike[str] | str", debug: bool = False):
        self.path = Path(path)
        self.debug_enabled = debug

    def __call__(self, level: str, message: str) -> None:
        if level == "debug" and not self.debug_enabled:
            return
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        line = f"{stamp} {NAME}[{os.getpid()}] {level.upper()}: {printable(message, 2000)}\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line.encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError:
            # The log is not writable: say it where integratord can show it (debug level 2).
            try:
                sys.stderr.write(line)
            except (OSError, ValueError):
                pass

    def debug(self, message: str) -> None:
        self("debug", message)


# --- the watchdog ------------------------------------------------------------------------------

class Deadline:
    """Bounds one call by the timeout integratord gave.

    ``soft`` (SIGALRM): only sets a flag, and raises :class:`DeadlineExceeded` while inside
    :meth:`interruptible` (the scoring), so I/O such as a spool write is never cut in half.
    ``hard`` (``faulthandler.dump_traceback_later(exit=True)``): a C thread that ends the process
    with status 1 if the soft stop did not come back in time (C code holding the interpreter).
    """

    def __init__(self, timeout: float, start: Optional[float] = None):
        self.start = time.monotonic() if start is None else start
        self.timeout = float(timeout)
        self.hard_after = max(0.5, self.timeout - 0.2)
        self.soft_after = max(0.3, self.hard_after - max(0.3, 0.1 * self.timeout))
        self.expired = False
        self._interruptible = False
        self._armed = False

    @property
    def soft_at(self) -> float:
        return self.start + self.soft_after

    def remaining(self) -> float:
        return self.soft_at - time.monotonic()

    def passed(self) -> bool:
        return self.expired or self.remaining() <= 0

    def _on_alarm(self, signum, frame) -> None:
        self.expired = True
        if self._interruptible:
            raise DeadlineExceeded()

    def arm(self) -> "Deadline":
        elapsed = time.monotonic() - self.start
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(0.01, self.soft_after - elapsed))
        try:
            err = sys.__stderr__
            if err is not None and err.fileno() >= 0:
                faulthandler.dump_traceback_later(max(0.05, self.hard_after - elapsed), exit=True, file=err)
        except (AttributeError, ValueError, OSError, RuntimeError):
            pass
        self._armed = True
        return self

    def disarm(self) -> None:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            faulthandler.cancel_dump_traceback_later()
            self._armed = False

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.passed():
            raise DeadlineExceeded()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False


# --- scoring ------------------------------------------------------------------------------------

#: ``scorer(alerts, options) -> records`` (docs/records.md); raises ScorerUnavailable to pass.
Scorer = Callable[[List[Dict[str, Any]], Options], List[Dict[str, Any]]]

_engine_cache: Dict[str, Any] = {}


def forget_engine() -> None:
    """Forget the model loaded in this process: the next in-process scoring starts as a new
    call's process does (loads the model, reads the stream state)."""
    _engine_cache.clear()


def _model_present(model_dir: Path) -> bool:
    try:
        return model_dir.is_dir() and any(model_dir.iterdir())
    except OSError:
        return True  # exists but unreadable: let the engine report why


def score_in_process(alerts: List[Dict[str, Any]], options: Options,
                     log: Optional[Callable[[str, str], None]] = None) -> List[Dict[str, Any]]:
    """Score with the engine in this process (imports pandas/scikit-learn: the slow path),
    continuing the stream state the resident scorer or the previous call left in the spool."""
    if not _model_present(options.model_dir):
        raise ModelMissing(f"no trained model in {options.model_dir} yet")
    key = str(options.model_dir)
    model = _engine_cache.get(key)
    if model is None:
        from mimizuku.engine.estimator import Mimizuku
        from mimizuku.store.model_dir import ModelNotFoundError

        try:
            if options.ignore_users:
                model = Mimizuku.load_model(options.model_dir, ignore_users=list(options.ignore_users))
            else:
                model = Mimizuku.load_model(options.model_dir)
        except ModelNotFoundError as e:
            raise ModelMissing(str(e)) from e
        _engine_cache[key] = model
        model.start_stream()
        _continue_stream(model, options, log)
    records = list(model.score_records(alerts, new_stream=False))
    _keep_stream(model, options, log)
    return records


def _continue_stream(model: Any, options: Options, log: Optional[Callable[[str, str], None]]) -> None:
    """Go on with the stream the resident scorer (or the previous call) followed: its rate and
    repeat windows and fleet waves (``mimizuku.engine.stream_snapshot``). A file that cannot be
    used is reported and the stream starts empty, as a call without one does."""
    try:
        stream_snapshot.restore_snapshot(options.spool_dir / stream_snapshot.FILE_NAME, model)
    except stream_snapshot.SnapshotError as e:
        if log is not None:
            log("warning", f"stream state not used ({printable(e, 300)}); rate windows start empty")


def _keep_stream(model: Any, options: Options, log: Optional[Callable[[str, str], None]]) -> None:
    """Write the stream state back for the next call (atomic; a failure costs only the rates)."""
    try:
        stream_snapshot.save_snapshot(options.spool_dir / stream_snapshot.FILE_NAME, model)
    except OSError as e:
        if log is not None:
            log("warning", f"cannot keep the stream state in {options.spool_dir}: {e.strerror or e}")


def make_scorers(options: Options, in_process: Optional[Scorer] = None) -> List[Tuple[str, Scorer]]:
    """Scorers to try in order here. The resident scorer is not one of them: when ``socket`` is
    set, the alert is handed to it whole before any of this runs (:meth:`_Call.resident`), and
    it sends the events itself; the engine runs in-process only as the configured fallback."""
    return [("in-process", in_process or score_in_process)]


# --- one call -----------------------------------------------------------------------------------

def _read_alert(path: str) -> Tuple[Optional[Dict[str, Any]], Optional[str], str]:
    """(alert, error, raw text). Decoding is lenient: bytes that are not UTF-8 become U+FFFD."""
    with open(path, "rb") as f:
        raw = f.read(MAX_ALERT_BYTES + 1)
    if len(raw) > MAX_ALERT_BYTES:
        return None, f"alert file is larger than {MAX_ALERT_BYTES} bytes", ""
    text = raw.decode("utf-8", "replace")
    try:
        alert = json.loads(text)
    except ValueError as e:
        return None, f"alert is not valid JSON ({e})", text
    if not is_alert(alert):
        return None, "alert has no rule object (not a Wazuh alert)", text
    return alert, None, text


@contextlib.contextmanager
def _drain_lock(directory: Path) -> Iterator[bool]:
    """Non-blocking: whoever holds it drains the alert spool; others just leave their alert."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


class _Call:
    """State of one run: what is open, what to report."""

    def __init__(self, inv: Invocation, home: Path, log: IntegrationLog, deadline: Deadline,
                 in_process: Optional[Scorer], resident: Optional[str] = None):
        self.resident_outcome = resident
        self.inv = inv
        self.home = home
        self.log = log
        self.deadline = deadline
        self.in_process = in_process
        self.spool_dir = Options.defaults(home).spool_dir  # the options' once they are read
        self.own_spooled: Optional[Path] = None  # this call's alert in the spool, once it is there
        self.own_set_aside = False

    def set_aside(self, payload: bytes, what: str, reason: str) -> Optional[Path]:
        """Keep ``payload`` in the quarantine with one log line saying where and why; None (also
        said in one line) when even that is impossible."""
        try:
            path = quarantine.set_aside(self.spool_dir / quarantine.DIR_NAME, payload, reason)
        except quarantine.QuarantineFull as e:
            self.log("error", f"{what} could not be handled ({reason}) nor set aside: {e}")
            return None
        self.log("error", f"{what} could not be handled ({reason}); set aside as {path}")
        return path

    def contain(self, exc: BaseException) -> int:
        """The last resort: an unexpected exception ended the call. The alert is set aside unless
        it is already safe in the spool (then the failure was not this alert's)."""
        reason = f"{type(exc).__name__}: {printable(exc, 300)}"
        if self.own_spooled is not None and self.own_spooled.exists():
            self.log("error", f"internal error: {reason}; the alert is kept in {self.own_spooled.parent}")
            return EXIT_INTERNAL
        try:
            with open(self.inv.alert_file, "rb") as f:
                raw = f.read(MAX_ALERT_BYTES + 1)
        except OSError as e:
            self.log("error", f"internal error: {reason}; alert file {self.inv.alert_file} lost: "
                              f"{e.strerror or e}")
            return EXIT_LOST
        if self.set_aside(raw, f"alert file {self.inv.alert_file}", reason) is None:
            return EXIT_LOST
        return EXIT_QUARANTINED

    def keep_rejected(self, spool_dir: Path, reason: str, text: str) -> None:
        try:
            Spool(spool_dir / "rejected", max_items=1000).put({"reason": reason, "alert": text[:1_000_000]})
        except SpoolError:
            pass

    def run(self) -> int:
        inv, log = self.inv, self.log
        defaults = Options.defaults(self.home)
        try:
            alert, error, text = _read_alert(inv.alert_file)
        except OSError as e:
            log("error", f"cannot read alert file {inv.alert_file}: {e.strerror}")
            return EXIT_BAD_ALERT
        if alert is None:
            log("error", f"{inv.alert_file}: {error}")
            self.keep_rejected(defaults.spool_dir, str(error), text)
            return EXIT_BAD_ALERT
        if is_own_event(alert):
            log.debug(f"skipping our own event (alert {alert.get('id')})")
            return EXIT_OK

        try:
            opts = load_options(inv.options_file, self.home)
        except OptionsError as e:
            FailureNotice(defaults.spool_dir, "options", log).failing(
                str(e), f"bad <options> in the mimizuku <integration> block: {e}; alerts are kept in "
                f"{defaults.spool_dir / 'alerts'} until it is fixed")
            try:
                Spool(defaults.spool_dir / "alerts", max_items=defaults.max_spool,
                      max_bytes=defaults.max_spool_bytes).put(alert)
            except SpoolError as se:
                log("error", f"alert {alert.get('id')} lost: {se}")
                return EXIT_LOST
            return EXIT_USAGE
        FailureNotice(defaults.spool_dir, "options", log).recovered("options of the mimizuku integration are valid again")
        log.path = opts.log_file
        self.spool_dir = opts.spool_dir
        if opts.socket is not None:
            outcome = self.resident(opts, text)
            if outcome == client.ACKED:
                return EXIT_OK

        alerts = Spool(opts.spool_dir / "alerts", max_items=opts.max_spool, max_bytes=opts.max_spool_bytes,
                       log=log)
        spooled = True
        try:
            self.own_spooled = alerts.put(alert)
            FailureNotice(opts.spool_dir, "alert-spool", log).recovered(f"alert spool {alerts.directory} writable again")
        except SpoolError as e:
            spooled = False
            FailureNotice(opts.spool_dir, "alert-spool", log).failing(
                "spool", f"{e}; alerts are scored without a safety copy and lost if that fails")

        # A live resident scorer owns the event spool and sends it itself: flushing it here too
        # costs a send timeout per call while analysisd hangs, for nothing (issue 17 item 12).
        scorer_owns = owner_alive(opts.spool_dir)
        with QueueSink(opts.queue, opts.spool_dir / "events", log=log, drain_spool=not scorer_owns) as sink:
            sink.flush(self.deadline.soft_at)
            if not spooled:
                status, code = self._score_and_send([alert], opts, sink)
                if status == "unsent":
                    log("error", f"alert {alert.get('id')} scored, but neither it (alert spool) nor its event "
                                 "(event spool) could be kept: the event is lost")
                    return EXIT_LOST
                if status != "done":
                    log("error", f"alert {alert.get('id')} lost: it could neither be kept nor scored")
                    return EXIT_LOST
                return EXIT_OK
            if opts.socket is not None and not (opts.fallback == "in-process"
                                                and self.resident_outcome == client.UNREACHABLE):
                return EXIT_OK  # the resident scorer drains the spool when it is back
            with _drain_lock(alerts.directory) as mine:
                if not mine:
                    log.debug("another process is draining the alert spool; alert left there")
                    return EXIT_OK
                code = self._drain(alerts, opts, sink)
                return EXIT_QUARANTINED if code == EXIT_OK and self.own_set_aside else code

    def resident(self, opts: Options, text: str) -> str:
        """Hand the alert to the resident scorer (unless the fast path already tried): outcome."""
        outcome = self.resident_outcome
        if outcome is None:
            line = text.strip().replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")
            wait = client.ack_timeout(self.inv.timeout, opts.socket_timeout)
            wait = min(wait, max(0.05, self.deadline.remaining()))
            outcome, _ = client.deliver(str(opts.socket), line, wait)
            self.resident_outcome = outcome
        notice = FailureNotice(opts.spool_dir, "resident", self.log)
        if outcome == client.ACKED:
            notice.recovered(f"resident scorer at {opts.socket} answers again")
        else:
            what = {client.UNREACHABLE: "is not running (or not reachable)",
                    client.UNCERTAIN: "did not acknowledge in time",
                    client.REFUSED: "refused the alert (not ready)"}.get(outcome, outcome)
            then = ("scored in-process meanwhile" if opts.fallback == "in-process" and
                    outcome == client.UNREACHABLE else "scored by it when it is back")
            notice.failing(outcome, f"resident scorer at {opts.socket} {what}; alerts are kept in "
                           f"{opts.spool_dir / 'alerts'} and {then}", "warning")
        return outcome

    def _drain(self, alerts: Spool, opts: Options, sink: QueueSink) -> int:
        """Score the spool oldest first, batch by batch, while time is left."""
        batches = 0
        last_cost = 0.0
        while True:
            items = []
            for p in alerts.paths():
                obj = self._load(p)
                if obj is not _SKIP:
                    items.append((p, obj))
                if len(items) >= opts.max_batch:
                    break
            if not items:
                return EXIT_OK
            # Start another batch only if it is likely to finish before the soft deadline.
            if batches and (self.deadline.passed() or self.deadline.remaining() < 1.5 * last_cost):
                return EXIT_OK
            t0 = time.monotonic()
            try:
                status, code = self._score_and_send([obj for _, obj in items], opts, sink)
            except Exception as e:  # not the engine's (that is "split" already): find the alert
                self.log("error", f"handling {len(items)} alert(s) failed: {type(e).__name__}: {printable(e, 300)}")
                status, code = "split", EXIT_INTERNAL
            if status == "split":
                status, code = self._one_by_one(items, opts, sink)
            if status == "done":
                for p, _ in items:
                    alerts.ack(p)
            else:
                if status == "unsent":
                    self.log("warning", f"{len(items)} alert(s) stay in {alerts.directory} and are scored again "
                                        "at the next call")
                return code
            last_cost = time.monotonic() - t0
            batches += 1
            self.log.debug(f"scored {len(items)} alert(s) in {last_cost:.2f}s; {sink.sent} event(s) sent, "
                           f"{sink.spooled} kept for later")

    def _load(self, path: Path) -> Any:
        """One spooled alert, or ``_SKIP``: gone (another consumer), unreadable (moved aside as
        ``*.bad`` by the spool), or one the decoder cannot take (a RecursionError on a deep
        alert): that one is quarantined, else it would stop every later drain."""
        try:
            obj = Spool.load(path, quarantines=True)
        except Exception as e:
            self._quarantine_item(path, f"cannot be decoded: {type(e).__name__}: {printable(e, 200)}")
            return _SKIP
        return _SKIP if obj is MISSING else obj

    def _quarantine_item(self, path: Path, reason: str) -> None:
        """Move a spooled alert into the quarantine (left as ``*.bad`` when even that fails)."""
        mine = self.own_spooled is not None and path == self.own_spooled
        raw = b""
        # this call's alert as integratord wrote it (its file is still there), else the spooled copy
        for source in ([self.inv.alert_file] if mine else []) + [str(path)]:
            try:
                with open(source, "rb") as f:
                    raw = f.read(MAX_ALERT_BYTES + 1)
                break
            except OSError as e:
                if source == str(path):
                    if isinstance(e, FileNotFoundError):
                        return  # another consumer took it
                    reason = f"{reason}; unreadable: {e.strerror or e}"
        what = "this call's alert" if mine else f"spooled alert {path.name}"
        if raw and self.set_aside(raw, what, reason) is not None:
            Spool.ack(path)
        else:
            try:
                os.rename(path, path.with_suffix(".bad"))
            except OSError:
                pass
            self.log("error", f"{what} kept aside as {path.with_suffix('.bad')}")
        self.own_set_aside = self.own_set_aside or mine

    def _one_by_one(self, items, opts: Options, sink: QueueSink) -> Tuple[str, int]:
        """Handling a batch failed: handle alone each alert, set aside those that fail alone."""
        for p, obj in items:
            try:
                status, code = self._score_and_send([obj], opts, sink)
            except Exception as e:
                status, code = "failed", EXIT_INTERNAL
                reason = f"{type(e).__name__}: {printable(e, 200)}"
            else:
                reason = "it cannot be scored: the engine fails on it alone"
            if status in ("split", "failed"):
                self._quarantine_item(p, reason)
            elif status == "done":
                Spool.ack(p)
            else:
                return status, code
        return "done", EXIT_OK

    def _score_and_send(self, batch: List[Any], opts: Options, sink: QueueSink) -> Tuple[str, int]:
        """("done", 0) when scored and sent (or kept by the sink); ("kept", code) when the alerts
        must stay in the spool; ("unsent", 5) when they were scored but an event could neither be
        sent nor kept (they stay in the spool too); ("split", 1) when the engine raised on this batch."""
        log = self.log
        batch = [a for a in batch if is_alert(a) and not is_own_event(a)]
        if not batch:
            return "done", EXIT_OK
        records = None
        notice = FailureNotice(opts.spool_dir, "engine", log)
        for name, scorer in make_scorers(opts, self.in_process or functools.partial(score_in_process, log=log)):
            try:
                with self.deadline.interruptible():
                    records = scorer(batch, opts)
                break
            except ScorerUnavailable as e:
                if isinstance(e, ModelMissing):
                    notice.failing("missing", f"{e}: alerts are kept in {opts.spool_dir / 'alerts'} and scored "
                                   "once the first model is trained (mimizuku retrain)", "warning")
                    return "kept", EXIT_OK
                log.debug(f"{name} scorer unavailable: {e}")
            except DeadlineExceeded:
                notice.failing("timeout", f"scoring did not finish within the {self.inv.timeout}s timeout; "
                               "alerts are kept and retried at the next call (raise <timeout> in the "
                               "<integration> block, or run the resident scorer)", "warning")
                return "kept", EXIT_OK
            except ImportError as e:
                notice.failing("import", f"cannot import the engine ({e}); is its virtualenv complete? "
                               "alerts are kept")
                return "kept", EXIT_ENGINE
            except Exception as e:
                if _is_model_error(e):
                    notice.failing(type(e).__name__, f"model in {opts.model_dir} cannot be used: {e}; "
                                   "alerts are kept")
                    return "kept", EXIT_MODEL
                log("error", f"engine failed on {len(batch)} alert(s): {type(e).__name__}: {e}")
                return "split", EXIT_INTERNAL
        if records is None:
            log("error", "no scorer could be used; alerts are kept")
            return "kept", EXIT_ENGINE
        notice.recovered("scoring works again")
        for rec in apply_policy(records, opts):
            try:
                msg = events.event_message(rec)
            except (events.EventTooLarge, ValueError, TypeError) as e:
                log("error", f"cannot build the event for alert {rec.get('id')}: {e}")
                continue
            try:
                sink.send(msg, self.deadline.start + self.deadline.hard_after - 0.1)
            except SpoolError as e:
                log("error", f"alert {rec.get('id')} scored, but its event can neither be sent nor kept ({e})")
                return "unsent", EXIT_LOST
        return "done", EXIT_OK


def _is_model_error(exc: BaseException) -> bool:
    """A ``mimizuku.store.model_dir.ModelError`` (looked up only if the engine imported it)."""
    model_dir = sys.modules.get("mimizuku.store.model_dir")
    return model_dir is not None and isinstance(exc, getattr(model_dir, "ModelError", ()))


def run(argv: Sequence[str], *, home: Optional[Path] = None, in_process: Optional[Scorer] = None,
        arm_watchdog: bool = True, resident: Optional[str] = None, start: Optional[float] = None) -> int:
    """One integratord call; returns the exit code. ``in_process`` replaces the engine (tests).

    ``resident``/``start``: the outcome of the fast path's attempt to hand the alert to the
    resident scorer (:func:`mimizuku.integratord.forward.forward`) and when the call began."""
    start = time.monotonic() if start is None else start
    home = home or wazuh_home(argv[0] if argv else None)
    log = IntegrationLog(Options.defaults(home).log_file)
    try:
        inv = parse_argv(argv)
    except UsageError as e:
        log("error", f"{e} (got {len(argv) - 1} argument(s))")
        return EXIT_USAGE
    log.debug_enabled = inv.debug
    deadline = Deadline(inv.timeout, start)
    if arm_watchdog:
        deadline.arm()
    this = _Call(inv, home, log, deadline, in_process, resident)
    try:
        return this.run()
    except DeadlineExceeded:
        log("warning", "timeout reached; pending alerts stay in the spool")
        return EXIT_OK
    except Exception as e:  # last resort: the alert is set aside, said in one line
        try:
            return this.contain(e)
        except Exception as again:  # pragma: no cover - the log itself failing, say so once
            log("error", f"internal error: {type(e).__name__}; and setting the alert aside failed: "
                         f"{type(again).__name__}")
            return EXIT_INTERNAL
    finally:
        deadline.disarm()


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(list(sys.argv if argv is None else argv))

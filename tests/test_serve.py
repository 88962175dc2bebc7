"""The resident scorer with a real model: socket protocol, bad requests, hot reload, tampering,
flood control, status. (The integratord client paths are in test_serve_client.py, follow mode in
test_serve_follow.py.)"""
from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from test_serve_support import Daemon, Scratch, traffic, wait_until

from mimizuku.core.alert_identity import alert_key
from mimizuku.integratord import client, protocol
from mimizuku.serve import config, status
from mimizuku.serve import server as serve
from mimizuku.serve.handled import HandledIds
from mimizuku.serve.reload import carry_stream_state


@pytest.fixture
def scratch():
    s = Scratch()
    yield s
    s.close()


def send_all(sock_path, alerts, timeout=10.0):
    out = []
    for a in alerts:
        outcome, ans = client.deliver(str(sock_path), json.dumps(a).encode(), timeout)
        out.append(outcome)
    return out


def raw_conn(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(path))
    return s


def read_answers(s, n):
    buf = b""
    while buf.count(b"\n") < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return [json.loads(x) for x in buf.split(b"\n") if x]


def test_scores_every_alert_once_and_acknowledges_after_the_event(scratch):
    scratch.install_version("v1")
    col = scratch.analysisd()
    d = Daemon(scratch.config())
    try:
        alerts = traffic(120, "a")
        assert send_all(d.server.cfg.socket, alerts) == ["acked"] * 120
        # acknowledged means the event is already out: no waiting needed beyond the socket buffer
        ids = col.wait_for(120, 10)
        assert sorted(ids) == sorted(a["id"] for a in alerts)
        assert {ev.payload["mimizuku"]["model_version"] for ev in col.events} == {"v1"}
        # the same alert again (a client retry) is acknowledged as a duplicate, not re-scored
        s = raw_conn(d.server.cfg.socket)
        s.sendall(json.dumps({"id": 7, "op": "score", "alert": alerts[0]}).encode() + b"\n")
        assert read_answers(s, 1) == [{"id": 7, "ok": True, "status": "duplicate"}]
        s.close()
        time.sleep(0.2)
        assert len(col.events) == 120
        st = d.server.status()
        assert st["counters"]["scored"] == 120 and st["counters"]["duplicates"] == 1
    finally:
        d.stop()
        col.close()
    # the handled ids survive a restart (journal): the same alert is still a duplicate
    col = scratch.analysisd()
    d = Daemon(scratch.config())
    try:
        assert send_all(d.server.cfg.socket, alerts[:3]) == ["acked"] * 3
        assert d.server.counters.duplicates == 3 and d.server.counters.scored == 0
    finally:
        d.stop()
        col.close()


def test_bad_requests_get_errors_and_do_not_stop_the_daemon(scratch):
    scratch.install_version("v1")
    col = scratch.analysisd()
    d = Daemon(scratch.config())
    path = d.server.cfg.socket
    try:
        s = raw_conn(path)
        s.sendall(b"garbage\n[1,2]\n{\"op\": \"score\"}\n{\"id\": {\"x\": 1}, \"op\": \"score\"}\n"
                  b"{\"id\": \"u\", \"op\": \"explode\"}\n{\"id\": \"n\", \"op\": \"score\", \"alert\": {\"no\": \"rule\"}}\n"
                  b"\xff\xfe\x00\n{\"id\": \"own\", \"op\": \"score\", \"alert\": {\"rule\": {\"id\": \"119004\", "
                  b"\"groups\": [\"mimizuku\"]}, \"location\": \"mimizuku\"}}\n")
        ans = read_answers(s, 8)
        assert [a["ok"] for a in ans] == [False] * 6 + [False, True]
        assert [a.get("code") for a in ans[:6]] == ["bad_request"] * 5 + ["bad_alert"]
        assert ans[4]["id"] == "u" and ans[0]["id"] is None and ans[7] == {"id": "own", "ok": True, "status": "skipped"}
        s.close()
        # a line over the cap: an error, then the connection is closed
        s = raw_conn(path)
        big = b'{"id": "big", "op": "score", "alert": {"rule": {"id": "1"}, "x": "' + b"A" * (protocol.MAX_LINE + 10)
        try:
            s.sendall(big)
        except (BrokenPipeError, ConnectionResetError):
            pass
        ans = read_answers(s, 1)
        assert ans and ans[0]["code"] == "bad_request" and "longer" in ans[0]["error"]
        assert s.recv(10) == b""
        s.close()
        # half a line, then the client goes away
        s = raw_conn(path)
        s.sendall(b'{"id": "half", "op": "score", "alert": {"rul')
        s.close()
        # a complete request, then the client closes before the answer: still scored
        alert = traffic(1, "gone")[0]
        s = raw_conn(path)
        s.sendall(json.dumps({"id": "bye", "op": "score", "alert": alert}).encode() + b"\n")
        s.close()
        assert col.wait_for(1, 10) == ["gone.0"]
        # many connections opened and dropped
        for _ in range(50):
            raw_conn(path).close()
        # still serving
        assert send_all(path, traffic(3, "after")) == ["acked"] * 3
        assert client.call(path, {"op": "ping"})["status"] == "pong"
        assert d.server.counters.bad_requests == 7 and d.thread.is_alive()
    finally:
        d.stop()
        col.close()


def test_hot_reload_under_load_drops_nothing(scratch):
    scratch.install_version("v1")
    col = scratch.analysisd()
    d = Daemon(scratch.config(watch_interval=0.1))
    path = d.server.cfg.socket
    alerts = traffic(900, "load")
    results = {}

    def client(k):
        chunk = alerts[k::3]
        results[k] = send_all(path, chunk)

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        assert wait_until(lambda: d.server.counters.scored >= 150, 60)
        scratch.install_version("v2")                # the nightly job: new version, pointer switched
        assert wait_until(lambda: d.server.model_version == "v2", 60)
        scratch.install_version("v3", current=False)
        scratch.point_current("v3")
        d.server.request_reload()                    # what SIGHUP does
        for t in threads:
            t.join(120)
        assert all(r == ["acked"] * 300 for r in results.values())
        ids = col.wait_for(900, 20)
        assert sorted(ids) == sorted(a["id"] for a in alerts)          # none dropped, none twice
        seq = [ev.payload["mimizuku"]["model_version"] for ev in col.events]
        assert wait_until(lambda: d.server.model_version == "v3", 60)
        assert "v1" in seq and ("v2" in seq or "v3" in seq)
        # each event scored by the old or the new model; after the first newer one, never older
        rank = {"v1": 1, "v2": 2, "v3": 3}
        assert all(rank[a] <= rank[b] for a, b in zip(seq, seq[1:]))
        assert d.server.last_reload["ok"] and d.server.last_reload["rate_windows"] == "carried over"
    finally:
        d.stop()
        col.close()


def test_tampered_new_model_is_refused_and_the_old_one_kept(scratch, caplog):
    scratch.install_version("v1")
    col = scratch.analysisd()
    d = Daemon(scratch.config(watch_interval=0.1))
    try:
        bad = scratch.install_version("v2", current=False)
        victim = next(bad.glob("*.npz"))
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
        reloads = d.server.reloads
        with caplog.at_level("ERROR", logger="mimizuku.serve.server"):
            scratch.point_current("v2")
            assert wait_until(lambda: d.server.reloads > reloads, 60)
        assert d.server.model_version == "v1"
        lr = d.server.last_reload
        assert lr["ok"] is False and "Integrity" in lr["error"] and lr["kept"] == "v1"
        assert any("refused" in r.getMessage() and "v2" in r.getMessage() for r in caplog.records)
        # still scoring, with the old model
        assert send_all(d.server.cfg.socket, traffic(5, "still")) == ["acked"] * 5
        col.wait_for(5, 10)
        assert {ev.payload["mimizuku"]["model_version"] for ev in col.events} == {"v1"}
        # status reports it (exit 1: running, last reload refused)
        code = status.main(["--socket", str(d.server.cfg.socket), "--wazuh-home", str(scratch.home)])
        assert code == status.EXIT_DEGRADED
        # a world-writable model directory is refused too (ownership/permission check)
        ok = scratch.install_version("v3", current=False)
        os.chmod(ok, 0o777)
        reloads = d.server.reloads
        scratch.point_current("v3")
        assert wait_until(lambda: d.server.reloads > reloads, 60)
        assert d.server.model_version == "v1" and "Security" in d.server.last_reload["error"]
    finally:
        d.stop()
        col.close()


def _scan_of_one_context_situation(n):
    """An alert only the context detector sees, n times a second apart: with a file or command
    alert, the detector that reports it switches to context once the burst's rate makes that score
    the larger one, and with the detector the flood signature."""
    from mimizuku.core import fields

    base = next(a for a in traffic(200, "x") if not fields.is_fim(a) and not fields.is_command(a))
    scan = []
    for i in range(n):
        a = json.loads(json.dumps(base))
        a["id"] = f"scan.{i}"
        a["timestamp"] = "2026-11-21T03:%02d:%02d.000+0000" % (i // 60, i % 60)
        scan.append(a)
    return scan


def test_flood_of_anomalies_becomes_one_event_and_a_summary(scratch):
    scratch.install_version("v1")
    col = scratch.analysisd()
    cfg = scratch.config(send="anomalies", flood_window=3600)
    cfg.options.thresholds = {"*": 0.0}  # every score counts as an anomaly: a deterministic flood
    d = Daemon(cfg)
    scan = _scan_of_one_context_situation(400)
    try:
        assert send_all(d.server.cfg.socket, scan) == ["acked"] * 400
        time.sleep(0.3)
        assert col.ids() == ["scan.0"]
    finally:
        d.stop()       # graceful stop: the pending summary goes out
        col.wait_for(2, 10)
        col.close()
    summary = col.events[-1].payload["mimizuku"]
    assert len(col.events) == 2 and summary["flood_count"] == 400
    assert summary["flood"]["first"] == scan[0]["timestamp"] and summary["flood"]["last"] == scan[-1]["timestamp"]
    assert summary["source"]["alert_id"] == "scan.399" and "400 similar" in summary["reason"]


def test_with_send_all_the_repeats_also_count_into_the_flood_summary(scratch):
    """send "all" sends every record, repeats included; the summary still counts the whole burst."""
    scratch.install_version("v1")
    col = scratch.analysisd()
    cfg = scratch.config(send="all", flood_window=3600)
    cfg.options.thresholds = {"*": 0.0}
    d = Daemon(cfg)
    scan = _scan_of_one_context_situation(100)
    try:
        assert send_all(d.server.cfg.socket, scan) == ["acked"] * 100
    finally:
        d.stop()
        assert wait_until(lambda: col.events and "flood_count" in col.events[-1].payload["mimizuku"], 10)
        col.close()
    summary = col.events[-1].payload["mimizuku"]
    # every record went out but the raised updates flood control held back, then the summary
    assert summary["flood_count"] == 100 and summary["flood"]["last"] == scan[-1]["timestamp"]
    assert len(col.events) == 100 - summary["flood"]["suppressed"] + 1


def test_status_running_and_down(scratch, capsys):
    scratch.install_version("v1")
    col = scratch.analysisd()
    d = Daemon(scratch.config())
    args = ["--wazuh-home", str(scratch.home), "--model-dir", str(scratch.models)]
    try:
        send_all(d.server.cfg.socket, traffic(4, "st"))
        assert status.main(args) == status.EXIT_OK
        out = capsys.readouterr().out
        assert "running" in out and "v1" in out and "4 scored" in out
        assert status.main(args + ["--json"]) == 0
        st = json.loads(capsys.readouterr().out)
        assert st["counters"]["scored"] == 4 and st["model"]["version"] == "v1" and st["queue_depth"] == 0
    finally:
        d.stop()
        col.close()
    (scratch.spool / "alerts").mkdir(exist_ok=True)
    (scratch.spool / "alerts" / "00000000000000000001-x.json").write_text("{}")
    assert status.main(args) == status.EXIT_DOWN
    out = capsys.readouterr().out
    assert "NOT running" in out and "v1" in out and "1 alerts" in out and "4 scored" in out


def test_a_restarted_scorer_continues_the_stream_it_wrote_at_stop(scratch):
    """At stop the scorer writes what it follows (rate and repeat windows, waves) to the spool;
    the next start reads it: a scan does not restart at one alert because the scorer did."""
    from mimizuku.engine import stream_snapshot

    scratch.install_version("v1")
    col = scratch.analysisd()
    d = Daemon(scratch.config())
    try:
        assert d.server.last_reload["rate_windows"] == "new"
        assert send_all(d.server.cfg.socket, traffic(30, "one")) == ["acked"] * 30
    finally:
        d.stop()
    state = scratch.spool / stream_snapshot.FILE_NAME
    doc = json.loads(state.read_text())
    assert doc["format"] == stream_snapshot.FORMAT and doc["detectors"]["context"]["rates"]["keys"]
    d = Daemon(scratch.config())
    try:
        assert d.server.last_reload["rate_windows"] == "continued from the stream state file"
    finally:
        d.stop()
        col.close()
    state.write_text("garbage")
    d = Daemon(scratch.config())
    try:
        assert d.server.last_reload["rate_windows"] == "new"
    finally:
        d.stop()


def test_no_model_yet_then_one_arrives(scratch):
    col = scratch.analysisd()
    d = Daemon(scratch.config(), wait_model=False)
    try:
        outcome, ans = client.deliver(str(d.server.cfg.socket), json.dumps(traffic(1, "early")[0]).encode(), 5)
        assert outcome == "refused" and ans["code"] == "not_ready"
        from mimizuku.core.spool import Spool

        early = traffic(3, "early")
        for a in early:                      # what the clients do with a refused alert
            Spool(scratch.spool / "alerts").put(a)
        assert status.main(["--socket", str(d.server.cfg.socket)]) == status.EXIT_DEGRADED
        scratch.install_version("v1")        # the first nightly training
        assert wait_until(lambda: d.server.ready, 60)
        assert sorted(col.wait_for(3, 10)) == sorted(a["id"] for a in early)
        assert scratch.spooled_alerts() == 0
    finally:
        d.stop()
        col.close()


def test_events_kept_while_analysisd_is_down_are_sent_when_it_is_back(scratch):
    scratch.install_version("v1")
    d = Daemon(scratch.config(event_retry_interval=0.1))
    try:
        alerts = traffic(5, "later")
        assert send_all(d.server.cfg.socket, alerts) == ["acked"] * 5   # kept: acknowledged all the same
        assert d.server.counters.events_spooled == 5
        col = scratch.analysisd()                                        # analysisd starts
        try:
            assert sorted(col.wait_for(5, 30)) == sorted(a["id"] for a in alerts)  # no new alert needed
        finally:
            col.close()
    finally:
        d.stop()


def test_handled_ids_window_and_journal(tmp_path):
    j = tmp_path / "handled.ids"
    h = HandledIds(j, 1000)
    ids = [HandledIds.digest(f"1763000000.{i}") for i in range(3500)]
    for k in range(0, 3500, 100):
        h.add(ids[k:k + 100])
    assert len(h) == 1000 and ids[-1] in h and ids[2500] in h and ids[2499] not in h
    assert len(j.read_text().splitlines()) <= 2000         # compacted when it doubles
    h.close()
    again = HandledIds(j, 1000)                       # what a restart reads back
    assert len(again) == 1000 and ids[-1] in again and ids[2500] in again and ids[2499] not in again
    again.close()


def test_alert_key_tells_managers_of_a_cluster_apart():
    a = {"id": "1763000000.1234", "manager": {"name": "master"}, "rule": {"id": "550"}}
    b = {"id": "1763000000.1234", "manager": {"name": "worker-1"}, "rule": {"id": "5715"}}
    assert alert_key(a) != alert_key(b)  # the same id from two managers: two alerts
    assert alert_key(a) == alert_key(dict(a, rule={"id": "550", "level": 7}))  # same manager and id: same alert
    assert alert_key({"id": "x"}) == "x" and alert_key({"rule": {}}).startswith("sha1:")


@pytest.mark.parametrize("rid", [0, 7, -3, 10 ** 18, "a", "1763000000.1234", 'q"uote\\back', "tab\tnew\nline",
                                 "caf\u00e9 \u2603", "\u0000ctl", "x" * 128])
@pytest.mark.parametrize("status", ["scored", "duplicate", "kept"])
def test_the_acknowledgement_shortcut_says_what_the_general_answer_says(rid, status):
    fast = protocol.acknowledgement(rid, status)
    assert fast.endswith(b"\n") and fast.count(b"\n") == 1          # one line, whatever the id holds
    assert json.loads(fast) == json.loads(protocol.answer(rid, True, status=status))


def test_backpressure_stops_reading_while_the_queue_is_full_and_resumes(scratch):
    """Past ``high_water`` queued alerts no connection is read (its clients wait or spool), a
    connection accepted meanwhile included; below it, all are read again."""
    srv = serve.Server(scratch.config(high_water=3))
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        conns = [srv.adopt(mine) for mine, _ in pairs[:2]]
        srv.apply_backpressure()
        assert all(c.reading for c in conns)
        srv.scorer.q.extend([object()] * 3)
        srv.apply_backpressure()
        assert not any(c.reading for c in conns)
        late = srv.adopt(pairs[2][0])                    # accepted while full
        srv.apply_backpressure()
        assert not late.reading
        srv.scorer.q.clear()
        srv.apply_backpressure()
        assert all(c.reading for c in conns + [late])
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        srv.scorer.handled.close()


def test_a_hot_reload_carries_the_stream_over_rate_windows_waves_and_processes():
    """What the old model was following goes on in the new one: rate windows, fleet waves in
    progress (a roll-out half seen before the swap is still one wave), processes in flight."""
    import copy

    from test_serve_support import fitted_model

    old = copy.deepcopy(fitted_model())
    new = copy.deepcopy(fitted_model())
    alerts = traffic(300, "carry")
    list(old.iter_records(alerts))                     # the old model follows a stream
    following = old.lineage_.export_stream_state()
    following["procs"][("web-01", "4242")] = ("apt", 1763000000)   # a process in flight
    old.lineage_.import_stream_state(following)
    assert carry_stream_state(old, new)
    gave = {name: det.export_stream_state() for name, det in old.detectors_.items()}
    took = {name: det.export_stream_state() for name, det in new.detectors_.items()}
    assert "rates" in gave["context"]
    waved = [name for name, det in new.detectors_.items() if hasattr(det, "wave_window")]
    assert waved and all("wave" in gave[name] for name in waved)
    for name, pieces in gave.items():
        for piece, (window, state) in pieces.items():
            assert took[name][piece][1] is state, (name, piece)   # the same objects: the stream goes on
    assert new.lineage_.export_stream_state()["procs"][("web-01", "4242")] == ("apt", 1763000000)
    list(new.iter_records(traffic(50, "after")))       # and the new model goes on scoring


def test_each_serve_option_is_declared_once_with_help_and_keeps_its_clamping(tmp_path):
    p = argparse.ArgumentParser()
    config.add_arguments(p)
    options = [a for a in p._actions if a.option_strings and a.dest != "help"]
    assert len(options) == len(config.SETTINGS) and all(a.help for a in options)
    assert "alert ids remembered to drop duplicates (default 200000)" in " ".join(p.format_help().split())
    a = p.parse_args(["--wazuh-home", str(tmp_path), "--max-batch", "0", "--watch-interval", "0", "--cache-entries", "5",
                      "--dedupe-window", "0", "--socket-group", ""])
    cfg = config.config_from_args(a)
    assert (cfg.max_batch, cfg.watch_interval, cfg.cache_entries, cfg.dedupe_window, cfg.socket_group) == (1, 0.2, 1000, 1, None)
    assert cfg.socket == tmp_path / "mimizuku" / "run" / "serve.sock" and cfg.model_dir == tmp_path / "mimizuku" / "models"
    assert config.ServeConfig.for_home(tmp_path, cache_entries=40).cache_entries == 40   # code is taken as it is
    given = config.config_from_args(p.parse_args(["--wazuh-home", str(tmp_path), "--model-dir", "/m", "--state-dir", "/s"]))
    assert (given.model_dir, given.options.model_dir, given.socket) == (Path("/m"), Path("/m"), Path("/s/serve.sock"))

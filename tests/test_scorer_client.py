"""The stdlib-only client of the resident scorer and its wire protocol: outcomes against a stand-in
server, the options reader, and what the fast path imports (nothing heavy: that is its whole point)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mimizuku.integratord import client, protocol
from mimizuku.integratord.forward import forward

ROOT = Path(__file__).resolve().parent.parent


class Stub:
    """A UNIX stream server answering each request line with ``reply(request) -> bytes | None``."""

    def __init__(self, path: Path, reply):
        self.path = path
        self.reply = reply
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(5)
            buf = b""
            try:
                while b"\n" not in buf:
                    got = c.recv(65536)
                    if not got:
                        break
                    buf += got
                line = buf.split(b"\n")[0]
                self.requests.append(json.loads(line))
                out = self.reply(self.requests[-1])
                if out is not None:
                    c.sendall(out)
                    c.recv(1)  # wait for the client to close
            except (OSError, ValueError):
                pass
            finally:
                c.close()

    def close(self):
        self.stop.set()
        self.sock.close()
        self.t.join()


ALERT = {"id": "1.1", "rule": {"id": "550", "level": 7}, "agent": {"id": "001"}}


@pytest.fixture
def sockpath(tmp_path):
    return tmp_path / "serve.sock"


def ok_reply(req):
    return json.dumps({"id": req["id"], "ok": True, "status": "scored"}, separators=(",", ":")).encode() + b"\n"


def test_loads_matches_json():
    texts = ['{"a": [1, -2.5e3, true, false, null, "\\u00e9\\n"], "b": {}}', " [] ", '"x"', "0"]
    for t in texts:
        assert protocol.loads(t) == json.loads(t)
    for bad in ["{", '{"a": 1} 2', "NaN", "", "{'a': 1}", '{"a": Infinity}']:
        with pytest.raises(ValueError):
            protocol.loads(bad)


def test_both_ends_read_one_protocol():
    """What the client writes the scorer's checks accept, and what the scorer answers the client
    reads back: one module (mimizuku.integratord.protocol) for both."""
    rid = protocol.request_id()
    line = protocol.score_request(rid.encode(), json.dumps(ALERT).encode())
    req = json.loads(line)
    assert line.endswith(b"\n") and req == {"id": rid, "op": "score", "alert": ALERT} and protocol.valid_id(rid)
    assert json.loads(protocol.encode_request({"op": "ping"}))["op"] in protocol.OPS
    ack = protocol.acknowledgement(rid, protocol.SCORED).rstrip(b"\n")
    assert protocol.parse_answer(ack, rid.encode()) == (protocol.ACK, ack)
    no = protocol.answer(rid, False, code=protocol.NOT_READY, error="no model").rstrip(b"\n")
    kind, answer = protocol.parse_answer(no, rid.encode())
    assert kind == protocol.REFUSAL and answer["code"] == protocol.NOT_READY
    assert protocol.parse_answer(protocol.answer("someone-else", True).rstrip(), rid.encode())[0] is None
    assert protocol.parse_answer(b"garbage", rid.encode()) == (None, "unreadable answer")
    assert protocol.valid_id(7) and protocol.valid_id("x" * protocol.MAX_ID_CHARS)
    assert not any(protocol.valid_id(bad) for bad in (True, None, 1.5, "x" * (protocol.MAX_ID_CHARS + 1)))


def test_acked(sockpath):
    s = Stub(sockpath, ok_reply)
    try:
        outcome, ans = client.deliver(sockpath, json.dumps(ALERT).encode(), 2)
        assert outcome == client.ACKED
        assert s.requests[0]["op"] == "score" and s.requests[0]["alert"] == ALERT
    finally:
        s.close()


def test_refused_and_answers_to_other_requests(sockpath):
    s = Stub(sockpath, lambda r: json.dumps({"id": r["id"], "ok": False, "code": "not_ready", "error": "x"}).encode() + b"\n")
    try:
        outcome, ans = client.deliver(sockpath, json.dumps(ALERT).encode(), 2)
        assert outcome == client.REFUSED and ans["code"] == "not_ready"
    finally:
        s.close()
    sockpath.unlink()
    s = Stub(sockpath, lambda r: b'{"id":"someone-else","ok":true}\n')
    try:
        assert client.deliver(sockpath, json.dumps(ALERT).encode(), 2)[0] == client.UNCERTAIN
    finally:
        s.close()


def test_no_answer_in_time_or_connection_lost_is_uncertain(sockpath):
    s = Stub(sockpath, lambda r: None)   # reads the request, never answers, closes
    try:
        assert client.deliver(sockpath, json.dumps(ALERT).encode(), 2)[0] == client.UNCERTAIN
    finally:
        s.close()
    sockpath.unlink()
    gate = threading.Event()
    s = Stub(sockpath, lambda r: gate.wait(5) and None)  # answers too late
    try:
        assert client.deliver(sockpath, json.dumps(ALERT).encode(), 0.2)[0] == client.UNCERTAIN
    finally:
        gate.set()
        s.close()


def test_unreachable(sockpath, tmp_path):
    assert client.deliver(sockpath, b"{}", 1)[0] == client.UNREACHABLE           # no socket file
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sockpath))
    stale.close()                                                        # file left, nobody listening
    assert client.deliver(sockpath, b"{}", 1)[0] == client.UNREACHABLE
    assert client.deliver(tmp_path / "nodir" / "x.sock", b"{}", 1)[0] == client.UNREACHABLE


def test_ack_timeout_leaves_room_to_spool():
    assert client.ack_timeout(10) == client.DEFAULT_ACK_TIMEOUT
    assert client.ack_timeout(10, 30) == 10 - client.SPOOL_MARGIN
    assert client.ack_timeout(1, 5) == 0.05
    assert client.ack_timeout(10, 0.5) == 0.5


def _files(tmp_path, options):
    alert = tmp_path / "custom-mimizuku-1-2.alert"
    alert.write_text(json.dumps(ALERT, indent=2))   # even pretty-printed (newlines inside)
    opts = tmp_path / "custom-mimizuku-1-2.options"
    opts.write_text(options)
    return alert, opts


def test_forward_without_socket_option_leaves_it_to_the_full_path(tmp_path):
    alert, opts = _files(tmp_path, json.dumps({"send": "all"}))
    argv = ["/x/integrations/custom-mimizuku", str(alert), "", "", "", str(opts), "10", "3", "> /dev/null 2>&1"]
    assert forward(argv) is None
    assert forward(argv[:2]) is None                                   # no options file at all
    alert2, opts2 = _files(tmp_path, "{not json")
    assert forward(["x", str(alert2), "", "", "", str(opts2)]) is None  # full path reports it (exit 2)


FAST = """
import sys
sys.path.insert(0, {detector!r})
before = set(sys.modules)
from mimizuku.integratord.forward import forward
code = forward({argv!r})
new = sorted(set(sys.modules) - before)
print(code, ",".join(new))
"""


def test_fast_path_acknowledged_loads_almost_nothing(tmp_path, sockpath):
    s = Stub(sockpath, ok_reply)
    try:
        alert, opts = _files(tmp_path, json.dumps({"socket": str(sockpath), "send": "all"}))
        argv = [str(tmp_path / "integrations" / "custom-mimizuku"), str(alert), "", "", "", str(opts), "10", "3"]
        r = subprocess.run([sys.executable, "-I", "-c", FAST.format(detector=str(ROOT / "detector"), argv=argv)],
                           capture_output=True, text=True, timeout=60)
        code, mods = r.stdout.split()
        assert code == "0", r.stderr
        loaded = set(mods.split(","))
        assert {"mimizuku.integratord.forward", "mimizuku.integratord.client", "mimizuku.integratord.protocol",
                "_socket"} <= loaded
        heavy = {"json", "re", "socket", "enum", "typing", "dataclasses", "pathlib", "mimizuku.integratord.call",
                 "mimizuku.integratord.options", "mimizuku.core.spool", "pandas", "numpy"}
        assert not (loaded & heavy), loaded & heavy
        assert s.requests[0]["alert"] == ALERT
    finally:
        s.close()


def test_forward_when_unreachable_spools_via_the_full_path(tmp_path):
    home = tmp_path / "ossec"
    (home / "integrations").mkdir(parents=True)
    (home / "logs").mkdir()
    spool = tmp_path / "spool"
    alert, opts = _files(tmp_path, json.dumps({"socket": str(tmp_path / "none.sock"), "spool_dir": str(spool)}))
    argv = [str(home / "integrations" / "custom-mimizuku"), str(alert), "", "", "", str(opts), "10", "3"]
    assert forward(argv) == 0
    kept = list((spool / "alerts").glob("*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == ALERT
    assert "is not running" in (home / "logs" / "integrations.log").read_text()

"""One model for a cluster: publish on the trainer, sync on every node (directory and HTTP)."""
from __future__ import annotations

import functools
import http.server
import json
import os
import threading

import pytest

from mimizuku.store import publication as ms
from mimizuku.store.model_dir import load_model_dir, save_model_dir
from mimizuku.store.versions import ModelStore, current_version, resolve_model_dir

V = [f"20261121T03000{i}Z-abcde{i}" for i in range(5)]


def _make(store: ModelStore, v: str) -> str:
    store.ensure()
    save_model_dir(store.version_dir(v), {"payload": {"version": v, "blob": os.urandom(2048).hex()}},
                   {"model_version": v}, group=store.group())
    store.install(v)
    return v


@pytest.fixture
def cluster(tmp_path):
    key_file = ms.generate_key(tmp_path / "etc" / "cluster.key")
    key = ms.load_key(key_file)
    trainer = ModelStore(tmp_path / "trainer" / "models")
    nodes = [ModelStore(tmp_path / f"node{i}" / "models") for i in range(2)]
    return {"key": key, "key_file": key_file, "trainer": trainer, "nodes": nodes, "pub": tmp_path / "pub",
            "tmp": tmp_path}


def _payload(store: ModelStore) -> dict:
    objects, _ = load_model_dir(resolve_model_dir(store.root))
    return objects["payload"]


def test_nodes_fetch_at_once_and_switch_together_at_activation(cluster):
    key, trainer, pub = cluster["key"], cluster["trainer"], cluster["pub"]
    _make(trainer, V[0])
    doc = ms.publish(trainer.root, pub, key, activation_delay=60, now=1000.0)
    assert doc["version"] == V[0] and doc["activate_at"] == 1060.0
    src = ms.DirectorySource(pub)
    for node in cluster["nodes"]:
        r = ms.sync_once(src, node.root, key, now=1001.0)
        assert r.action == "waiting" and current_version(node.root) is None  # fetched, not switched yet
        assert (node.root / ms.INCOMING / V[0] / "manifest.json").is_file()
    for node in cluster["nodes"]:
        r = ms.sync_once(src, node.root, key, now=1060.5)
        assert r.action == "switched" and current_version(node.root) == V[0]
        assert _payload(node) == _payload(trainer)  # the very same model, loadable by the usual checks
        assert ms.sync_once(src, node.root, key, now=1070).action == "current"
        assert node.history()["log"][-1]["action"] == "sync"


def test_nodes_never_disagree_longer_than_one_interval(cluster):
    """Nodes polling every P seconds at different phases: the moments they switch lie within P."""
    key, trainer, pub = cluster["key"], cluster["trainer"], cluster["pub"]
    _make(trainer, V[0])
    ms.publish(trainer.root, pub, key, activation_delay=0, now=0.0)
    src = ms.DirectorySource(pub)
    for node in cluster["nodes"]:
        ms.sync_once(src, node.root, key, now=1.0)
    _make(trainer, V[1])
    P, published = 15.0, 100.0
    ms.publish(trainer.root, pub, key, activation_delay=2 * P, now=published)
    switched = {}
    for i, (node, phase) in enumerate(zip(cluster["nodes"], (0.3, 14.9))):
        t = published - P + phase
        while i not in switched:
            t += P
            if ms.sync_once(src, node.root, key, now=t).action == "switched":
                switched[i] = t
    assert abs(switched[0] - switched[1]) <= P
    assert all(current_version(n.root) == V[1] for n in cluster["nodes"])


def test_rollback_is_published_like_any_version(cluster):
    key, trainer, pub = cluster["key"], cluster["trainer"], cluster["pub"]
    node = cluster["nodes"][0]
    src = ms.DirectorySource(pub)
    for v in V[:2]:
        _make(trainer, v)
        ms.publish(trainer.root, pub, key, activation_delay=0)
        assert ms.sync_once(src, node.root, key).action == "switched"
    trainer.rollback()
    ms.publish(trainer.root, pub, key, activation_delay=0)
    r = ms.sync_once(src, node.root, key)
    assert r.action == "switched" and r.version == V[0] and r.previous == V[1]
    assert _payload(node)["version"] == V[0]


def test_tampered_publications_are_refused_and_change_nothing(cluster):
    key, trainer, pub = cluster["key"], cluster["trainer"], cluster["pub"]
    node = cluster["nodes"][0]
    src = ms.DirectorySource(pub)
    _make(trainer, V[0])
    ms.publish(trainer.root, pub, key, activation_delay=0)
    ms.sync_once(src, node.root, key)
    _make(trainer, V[1])
    ms.publish(trainer.root, pub, key, activation_delay=0)
    model_file = next(p for p in (pub / "versions" / V[1]).iterdir() if p.name != "manifest.json")
    good = model_file.read_bytes()
    model_file.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit of a pickle flipped
    with pytest.raises(ms.PublicationRefused, match="does not match its manifest"):
        ms.sync_once(src, node.root, key)
    model_file.write_bytes(good)
    # a publication signed with another key, or edited after signing
    doc = json.loads((pub / ms.PUBLISHED).read_text())
    forged = dict(doc, activate_at=doc["activate_at"] + 1)
    (pub / ms.PUBLISHED).write_text(json.dumps(forged))
    with pytest.raises(ms.PublicationRefused, match="not signed"):
        ms.sync_once(src, node.root, key)
    (pub / ms.PUBLISHED).write_text(json.dumps(doc))
    with pytest.raises(ms.PublicationRefused, match="not signed"):
        ms.sync_once(src, node.root, b"x" * 64)
    # a manifest naming a path outside the version directory
    manifest = json.loads((pub / "versions" / V[1] / "manifest.json").read_text())
    manifest["files"]["../../evil.pkl"] = {"sha256": "0" * 64, "bytes": 1}
    raw = json.dumps(manifest).encode()
    (pub / "versions" / V[1] / "manifest.json").write_bytes(raw)
    evil = dict(doc, manifest_sha256=__import__("hashlib").sha256(raw).hexdigest())
    evil["signature"] = ms.sign(evil, key)  # even signed: the name is refused
    (pub / ms.PUBLISHED).write_text(json.dumps(evil))
    with pytest.raises(ms.PublicationRefused, match="not a plain file name"):
        ms.sync_once(src, node.root, key)
    assert current_version(node.root) == V[0] and _payload(node)["version"] == V[0]
    assert not (node.root / "versions" / V[1]).exists()
    assert not list((node.root / ms.INCOMING).glob(".*tmp-*"))  # no half-written leftovers


def test_key_file_must_be_private(cluster, tmp_path):
    f = tmp_path / "k"
    f.write_text("a" * 64)
    os.chmod(f, 0o644)
    with pytest.raises(ms.PublicationRefused, match="readable or writable by group or others"):
        ms.load_key(f)
    os.chmod(f, 0o600)
    assert ms.load_key(f) == b"a" * 64
    f.write_text("short")
    with pytest.raises(ms.PublicationRefused, match="too short"):
        ms.load_key(f)
    with pytest.raises(ms.SyncError, match="not found"):
        ms.load_key(tmp_path / "missing")
    with pytest.raises(FileExistsError):
        ms.generate_key(cluster["key_file"])  # never overwritten


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):  # quiet
        pass


@pytest.fixture
def http_pub(cluster):
    cluster["pub"].mkdir()
    handler = functools.partial(_Handler, directory=str(cluster["pub"]))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_sync_over_http_and_an_unreachable_publication(cluster, http_pub):
    key, trainer, pub = cluster["key"], cluster["trainer"], cluster["pub"]
    node = cluster["nodes"][1]
    _make(trainer, V[2])
    ms.publish(trainer.root, pub, key, activation_delay=0)
    src = ms.open_source(http_pub)
    assert isinstance(src, ms.HttpSource)
    r = ms.sync_once(src, node.root, key)
    assert r.action == "switched" and _payload(node) == _payload(trainer)
    # a version the server lost half of: a clear error, the node keeps its model
    _make(trainer, V[3])
    ms.publish(trainer.root, pub, key, activation_delay=0)
    victim = next(p for p in (pub / "versions" / V[3]).iterdir() if p.name != "manifest.json")
    victim.unlink()
    with pytest.raises(ms.SyncError, match="HTTP 404"):
        ms.sync_once(src, node.root, key)
    assert current_version(node.root) == V[2]
    dead = ms.HttpSource("http://127.0.0.1:9/", timeout=1, retries=0)
    with pytest.raises(ms.SyncError, match="ConnectionError"):
        ms.sync_once(dead, node.root, key)


def test_cli_publish_and_sync(cluster, capsys):
    from mimizuku.cli import main

    trainer, node, pub = cluster["trainer"], cluster["nodes"][0], cluster["pub"]
    _make(trainer, V[4])
    kf = str(cluster["key_file"])
    assert main(["publish", "--model-dir", str(trainer.root), "--to", str(pub), "--key", kf,
                 "--activation-delay", "0"]) == 0
    assert main(["sync", "--from", str(pub), "--model-dir", str(node.root), "--key", kf]) == 0
    assert current_version(node.root) == V[4]
    assert "switched to" in capsys.readouterr().out
    os.chmod(kf, 0o640)
    assert main(["sync", "--from", str(pub), "--model-dir", str(node.root), "--key", kf]) == 4
    os.chmod(kf, 0o600)
    assert main(["sync", "--from", str(cluster["tmp"] / "nowhere"), "--model-dir", str(node.root), "--key", kf]) == 5
    assert "unreachable" in capsys.readouterr().err


def test_an_older_signed_publication_put_back_is_refused(cluster, capsys):
    """issue 17, item 6: a replay. The trainer published V0 then V1; someone with write access to
    the share puts V0's genuine signed published.json (and its files) back: the node that runs
    V1 refuses it (exit 4 from the CLI) and keeps V1. A doc as old as V1's but naming V0 is refused
    too; V1's own doc again is fine; a rollback published anew is newer and is followed."""
    from mimizuku.cli import main

    key, trainer, pub, node = cluster["key"], cluster["trainer"], cluster["pub"], cluster["nodes"][0]
    src = ms.DirectorySource(pub)
    _make(trainer, V[0])
    ms.publish(trainer.root, pub, key, activation_delay=0, now=1000.0)
    old = (pub / ms.PUBLISHED).read_bytes()
    assert ms.sync_once(src, node.root, key, now=1001.0).action == "switched"
    _make(trainer, V[1])
    ms.publish(trainer.root, pub, key, activation_delay=0, now=2000.0)
    new = (pub / ms.PUBLISHED).read_bytes()
    assert ms.sync_once(src, node.root, key, now=2001.0).action == "switched"
    assert current_version(node.root) == V[1]

    (pub / ms.PUBLISHED).write_bytes(old)  # V0's files are still in the publication (kept: 3)
    with pytest.raises(ms.PublicationRefused, match="older than the publication this node accepted"):
        ms.sync_once(src, node.root, key, now=3000.0)
    assert current_version(node.root) == V[1]
    kf = str(cluster["key_file"])
    capsys.readouterr()
    assert main(["sync", "--from", str(pub), "--model-dir", str(node.root), "--key", kf]) == 4
    err = capsys.readouterr().err
    assert "replayed publication" in err and V[0] in err and V[1] in err
    assert current_version(node.root) == V[1]

    # as old as the accepted one, another model (the signing key signed it: a trainer bug or a key misuse)
    same_time = json.loads(old)
    same_time["published_at"] = json.loads(new)["published_at"]
    same_time["signature"] = ms.sign(same_time, key)
    (pub / ms.PUBLISHED).write_text(json.dumps(same_time))
    with pytest.raises(ms.PublicationRefused, match="as old as but differs from"):
        ms.sync_once(src, node.root, key, now=3000.0)

    (pub / ms.PUBLISHED).write_bytes(new)
    assert ms.sync_once(src, node.root, key, now=3000.0).action == "current"
    trainer.rollback()  # the legitimate way back: a new publication of the old version
    ms.publish(trainer.root, pub, key, activation_delay=0, now=4000.0)
    r = ms.sync_once(src, node.root, key, now=4001.0)
    assert r.action == "switched" and current_version(node.root) == V[0]
    (pub / ms.PUBLISHED).write_bytes(new)  # and V1's publication is now the replay
    with pytest.raises(ms.PublicationRefused, match="older than"):
        ms.sync_once(src, node.root, key, now=4002.0)
    assert current_version(node.root) == V[0]


def test_published_models_are_not_world_readable(cluster):
    """issue 17, item 6: a published model names users, hosts and command words: directories
    0750, files 0640, group the store's (the scorer's); a version published by an earlier release
    (0755/0644) is tightened when published again."""
    import stat

    key, trainer, pub = cluster["key"], cluster["trainer"], cluster["pub"]
    _make(trainer, V[0])
    ms.publish(trainer.root, pub, key, activation_delay=0)
    gid = trainer.group()

    def modes():
        out = {}
        for p in [pub, *sorted(pub.rglob("*"))]:
            st = p.lstat()
            out[str(p.relative_to(pub))] = (stat.S_IMODE(st.st_mode), st.st_gid)
        return out

    got = modes()
    assert got["versions"] == got[f"versions/{V[0]}"] == got["."] == (0o750, gid)
    files = {k: v for k, v in got.items() if k.count("/") == 2 or k == ms.PUBLISHED}
    assert len(files) >= 3 and set(files.values()) == {(0o640, gid)}, got
    for p in (pub / "versions" / V[0]).iterdir():
        p.chmod(0o644)
    (pub / "versions" / V[0]).chmod(0o755)
    ms.publish(trainer.root, pub, key, activation_delay=0)
    again = modes()
    assert again == got

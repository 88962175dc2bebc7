"""The resident scorer writes anomaly documents to the indexer (issue 18 part 2), next to its events."""
from __future__ import annotations

import argparse
import json
import os

import pytest
from fake_indexer import FakeIndexer
from test_serve_support import Daemon, Scratch, traffic, wait_until

from mimizuku.delivery.index_docs import DEFAULT_STREAM
from mimizuku.integratord import client
from mimizuku.integratord.options import OptionsError
from mimizuku.serve import config as serve_config
from mimizuku.serve import status

USER, PASSWORD = "mimizuku", "s3cret-Pa55"


@pytest.fixture
def scratch():
    s = Scratch()
    yield s
    s.close()


@pytest.fixture
def creds(scratch):
    p = scratch.base / "indexer.json"
    p.write_text(json.dumps({"username": USER, "password": PASSWORD}))
    os.chmod(p, 0o600)
    return p


def _send(d, alerts):
    return [client.deliver(str(d.server.cfg.socket), json.dumps(a).encode(), 10)[0] for a in alerts]


def test_scored_alerts_become_documents_beside_the_events(scratch, creds):
    scratch.install_version("v1")
    col = scratch.analysisd()
    with FakeIndexer(user=USER, password=PASSWORD) as fake:
        d = Daemon(scratch.config(index_url=fake.url, index_credentials=creds, index_all_scores=True))
        try:
            alerts = traffic(20, "ix")
            alerts[0]["manager"] = {"name": "node-7"}
            assert _send(d, alerts) == ["acked"] * 20
            assert len(col.wait_for(20, 20)) == 20          # the Wazuh events still go out
        finally:
            d.stop()
            col.close()
        docs = fake.stream_docs(DEFAULT_STREAM)
        by_alert = {doc["source"]["alert_id"]: doc for doc in docs.values()}
        assert sorted(by_alert) == sorted(a["id"] for a in alerts)
        assert by_alert["ix.0"]["manager"]["name"] == "node-7"
        assert DEFAULT_STREAM in fake.templates


def test_documents_are_kept_while_the_indexer_is_down_and_sent_after_a_restart(scratch, creds):
    scratch.install_version("v1")
    with FakeIndexer(user=USER, password=PASSWORD) as gone:
        url = gone.url
    d = Daemon(scratch.config(index_url=url, index_credentials=creds, index_all_scores=True))
    try:
        assert _send(d, traffic(10, "down")) == ["acked"] * 10   # acknowledged: the documents are kept
        assert wait_until(lambda: d.server.counters.scored == 10, 20)
        assert d.server.status()["spool"]["index"] >= 1   # mimizuku status shows what waits
    finally:
        d.stop()
    kept = list((scratch.spool / "index").glob("*.json"))
    assert kept and sum(len(json.loads(p.read_bytes())["docs"]) for p in kept) == 10
    st = status.from_disk({"socket": scratch.run / "serve.sock", "model_dir": scratch.models,
                           "spool_dir": scratch.spool, "state_dir": scratch.run})
    assert st["spool"]["index"] == len(kept)
    assert f"{len(kept)} batches of index documents" in "\n".join(status.render(st))
    with FakeIndexer(user=USER, password=PASSWORD) as fake:
        d = Daemon(scratch.config(index_url=fake.url, index_credentials=creds, index_all_scores=True))
        try:
            assert wait_until(lambda: len(fake.stream_docs(DEFAULT_STREAM)) == 10, 20)
        finally:
            d.stop()
        assert not list((scratch.spool / "index").glob("*.json"))


def test_serve_refuses_unsafe_index_settings_at_start(scratch, creds):
    p = argparse.ArgumentParser()
    serve_config.add_arguments(p)
    a = p.parse_args(["--wazuh-home", str(scratch.home), "--index-url", "http://indexer.example:9200",
                      "--index-credentials", str(creds)])
    with pytest.raises(OptionsError, match="in clear"):
        serve_config.config_from_args(a)
    os.chmod(creds, 0o644)
    a = p.parse_args(["--wazuh-home", str(scratch.home), "--index-url", "https://indexer:9200",
                      "--index-credentials", str(creds), "--index-all-scores"])
    with pytest.raises(OptionsError, match="chmod 600"):
        serve_config.config_from_args(a)


def test_serve_refuses_a_bad_stream_name_with_a_usage_exit(scratch):
    from mimizuku.serve import command

    p = argparse.ArgumentParser()
    serve_config.add_arguments(p)
    a = p.parse_args(["--wazuh-home", str(scratch.home), "--index-stream", "Not A Name"])
    with pytest.raises(OptionsError, match="--index-stream"):
        serve_config.config_from_args(a)
    assert command.run(a) == command.EXIT_USAGE

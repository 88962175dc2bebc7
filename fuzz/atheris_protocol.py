#!/usr/bin/env python3
"""Coverage-guided fuzzing of the scorer's wire protocol and the integration's options (atheris):
any bytes as an answer line (``check_protocol_bytes``), as an options file (``check_options``),
and, split at NULs, as integratord's argv (``check_argv``).

    python fuzz/atheris_protocol.py -atheris_runs=100000 [-max_total_time=60] [corpus_dir]
"""
from atheris_common import atheris, require_atheris, run

require_atheris()
with atheris.instrument_imports(include=["mimizuku"]):
    import fuzz_targets as T


def test_one_input(data: bytes) -> None:
    T.check_protocol_bytes(data)
    T.check_options(data[:2048])
    T.check_argv(["custom-mimizuku"] + data[:512].decode("utf-8", "replace").split("\x00"))


def seeds():
    return [b'{"id":"1-2-3","ok":true,"status":"scored"}', b'{"id":"1-2-3","ok":false,"code":"not_ready","error":"x"}',
            b'{"socket":"/var/ossec/mimizuku/run/serve.sock","socket_timeout":2,"thresholds":{"*":0.9},'
            b'"min_severity":"high","send":"all","max_batch":10,"ignore_users":["a"]}',
            b"/tmp/alert.json\x00\x00\x00debug\x00/tmp/options\x0010\x003\x00> /dev/null 2>&1"]


if __name__ == "__main__":
    run(test_one_input, seeds())

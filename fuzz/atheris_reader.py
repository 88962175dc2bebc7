#!/usr/bin/env python3
"""Coverage-guided fuzzing of the alert reader (atheris): any bytes as a file of alerts (lines,
documents, gzip, UTF-16), checked by ``fuzz_targets.check_reader`` (no exception, only alerts out,
the counts add up) and the raw depth scan by ``check_depth``.

    python fuzz/atheris_reader.py -atheris_runs=100000 [-max_total_time=60] [corpus_dir]
"""
import json

from atheris_common import atheris, require_atheris, run

require_atheris()
with atheris.instrument_imports(include=["mimizuku"]):
    import fuzz_targets as T


def test_one_input(data: bytes) -> None:
    T.check_reader(data)
    T.check_depth(data[:4096])


def seeds():
    import gzip

    lines = [json.dumps(a).encode() for a in T.templates()[:8]]
    return [b"\n".join(lines) + b"\n", b"[" + b",".join(lines) + b"]", gzip.compress(lines[0] + b"\n"),
            b"\xff\xfe" + lines[1].decode().encode("utf-16-le"), b'{"hits":{"hits":[' + lines[2] + b"]}}",
            lines[3][:-5], b"\xef\xbb\xbf" + lines[4] + b"\r\n\x00\x00"]


if __name__ == "__main__":
    run(test_one_input, seeds())

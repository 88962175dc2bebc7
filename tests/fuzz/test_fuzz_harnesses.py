"""The atheris harnesses still run (a few hundred inputs each, from their seeds); skipped where
atheris is not installed (it is optional: ``fuzz/atheris_common.py``)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["reader", "protocol", "featurisers"])
def test_harness_runs_and_finds_nothing(name, tmp_path):
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    p = subprocess.run([sys.executable, str(ROOT / "fuzz" / f"atheris_{name}.py"), "-atheris_runs=300",
                        f"-artifact_prefix={tmp_path}/", str(corpus)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", timeout=600)
    assert p.returncode == 0, p.stdout[-3000:]
    assert "Done 300" in p.stdout, p.stdout[-2000:]
    assert any(corpus.iterdir()), "the harness wrote no seeds into its empty corpus"

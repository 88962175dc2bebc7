"""The fuzz tests read their checks from ``fuzz/fuzz_targets.py`` (shared with the atheris harnesses)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fuzz"))

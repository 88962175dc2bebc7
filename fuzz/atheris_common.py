"""What the atheris harnesses share: atheris itself (optional: a harness says so and exits with
``SKIPPED`` when it is missing), their seeds, and the entry that hands libFuzzer's options over.

atheris is not a requirement of the project, not even of its tests: ``pip install atheris``
where it builds (CPython 3.8-3.11 on Linux; the property tests in ``tests/fuzz`` run without it)."""
import os
import sys
from pathlib import Path

#: exit status of a harness when atheris is not installed (``fuzz/run.py`` reports it as skipped)
SKIPPED = 75

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

try:
    import atheris  # noqa: F401
except ImportError:
    atheris = None


def require_atheris() -> None:
    if atheris is None:
        print("atheris is not installed (pip install atheris): harness skipped", file=sys.stderr)
        sys.exit(SKIPPED)


def run(test_one_input, seeds) -> None:
    """Fuzz ``test_one_input`` with libFuzzer's options from argv; an empty corpus directory
    among the arguments is first given ``seeds`` (bytes)."""
    for arg in sys.argv[1:]:
        if not arg.startswith("-") and os.path.isdir(arg) and not os.listdir(arg):
            for i, seed in enumerate(seeds):
                Path(arg, f"seed-{i:03d}").write_bytes(seed)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""Who owns a spool (issue 17 item 12): the resident scorer holds ``<spool>/owner.lock`` while it
runs, and an integratord call probes it without waiting (core/spool.py)."""
from __future__ import annotations

import os
import stat

from test_serve_support import Daemon, Scratch

from mimizuku.core.spool import OWNER_LOCK, hold_owner, owner_alive, release_owner


def test_the_lock_says_whether_a_live_owner_holds_the_spool(tmp_path):
    assert not owner_alive(tmp_path / "spool")          # no file: nobody
    assert not (tmp_path / "spool").exists()            # and the probe creates nothing
    fd = hold_owner(tmp_path / "spool")
    assert fd is not None and owner_alive(tmp_path / "spool")
    assert hold_owner(tmp_path / "spool") is None       # a second owner is refused
    assert stat.S_IMODE(os.stat(tmp_path / "spool" / OWNER_LOCK).st_mode) & 0o022 == 0
    release_owner(fd)
    assert not owner_alive(tmp_path / "spool")          # the file stays, the lock is gone


def test_the_resident_scorer_holds_its_spool_while_it_runs():
    scratch = Scratch()
    try:
        scratch.install_version("v1")
        d = Daemon(scratch.config())
        try:
            assert owner_alive(scratch.spool)
        finally:
            d.stop()
        assert not owner_alive(scratch.spool)
    finally:
        scratch.close()

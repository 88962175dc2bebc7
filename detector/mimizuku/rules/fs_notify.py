"""``FsNotify``: the original name and parameters of the file-integrity detector."""
from __future__ import annotations

from typing import Any, Dict, Optional

from mimizuku.core import fields
from mimizuku.engine.detectors.files import FileIntegrityDetector, path_matches


class FsNotify(FileIntegrityDetector):
    """File-integrity detector with the original constructor (``ignore_user_names``, ``abuse_files``)."""

    def __init__(self, n_neighbors=20, contamination=0.05, ignore_files=(), ignore_user_names=(), abuse_files=(),
                 max_samples=20000, n_features=1024, novelty_weight=0.5):
        super().__init__(n_neighbors=n_neighbors, contamination=contamination, ignore_files=ignore_files,
                         max_samples=max_samples, n_features=n_features, novelty_weight=novelty_weight)
        self.ignore_user_names = ignore_user_names
        self.abuse_files = abuse_files

    def ignored(self, alert: Dict[str, Any]) -> Optional[str]:
        m = path_matches(fields.file_path(alert) or "", self.ignore_files) if self.ignore_files else None
        if m:
            return f"path matches ignore_files entry {m!r}"
        user = fields.file_user(alert)
        if user is not None and user in self.ignore_user_names:
            return f"user {user!r} is in ignore_user_names"
        return None

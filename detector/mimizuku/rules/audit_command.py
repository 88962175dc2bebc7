"""``AuditCommand``: the original name and parameters of the command detector."""
from __future__ import annotations

from typing import Any, Dict, Optional

from mimizuku.core import fields
from mimizuku.engine.detectors.commands import CommandDetector


class AuditCommand(CommandDetector):
    """Command detector with the original constructor (``ignore_user_names``, ``ignore_user_ids``)."""

    def __init__(self, n_neighbors=20, contamination=0.05, ignore_user_names=(), ignore_user_ids=(),
                 max_samples=20000, n_features=1024, novelty_weight=0.5):
        super().__init__(n_neighbors=n_neighbors, contamination=contamination, ignore_user_ids=ignore_user_ids,
                         max_samples=max_samples, n_features=n_features, novelty_weight=novelty_weight)
        self.ignore_user_names = ignore_user_names

    def ignored(self, alert: Dict[str, Any]) -> Optional[str]:
        user = fields.command_user(alert)
        if user is not None and user in self.ignore_user_names:
            return f"user {user!r} is in ignore_user_names"
        if self.ignore_user_ids:
            uid = fields._str(fields._get(alert, "data", "audit", "uid"))
            if uid is not None and uid in {str(u) for u in self.ignore_user_ids}:
                return f"uid {uid} is in ignore_user_ids"
        return None

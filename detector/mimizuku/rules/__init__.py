"""The original library's detector classes (``FsNotify``, ``AuditCommand``), kept for its API."""

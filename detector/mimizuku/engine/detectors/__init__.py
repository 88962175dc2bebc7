"""The three detectors: file integrity (LOF), commands (LOF), alert context (DBSCAN)."""
from mimizuku.engine.detectors.commands import CommandDetector
from mimizuku.engine.detectors.context import ContextDetector
from mimizuku.engine.detectors.files import FileIntegrityDetector

__all__ = ["CommandDetector", "ContextDetector", "FileIntegrityDetector"]

"""The three detectors: file integrity (LOF), commands (LOF), alert context (DBSCAN)."""
from .commands import CommandDetector
from .context import ContextDetector
from .files import FileIntegrityDetector

__all__ = ["CommandDetector", "ContextDetector", "FileIntegrityDetector"]

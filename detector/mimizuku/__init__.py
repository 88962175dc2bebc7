"""Mimizuku: anomaly detection for Wazuh alerts.

`from mimizuku import Mimizuku` gives the estimator. The package itself imports nothing heavy,
so the stdlib-only parts (reading alerts, field extraction, the integration client, the event
sink) stay fast to import where pandas and scikit-learn are not wanted.
"""
from mimizuku._version import __version__

__all__ = ["Mimizuku", "__version__"]


def __getattr__(name):  # PEP 562: load the estimator (pandas, scikit-learn) only when asked for
    if name == "Mimizuku":
        from mimizuku.engine.estimator import Mimizuku

        return Mimizuku
    raise AttributeError(f"module 'mimizuku' has no attribute {name!r}")

"""The nightly job: retrain with an anomaly filter and validation, the DBSCAN day analysis."""

"""The estimator and everything that scores: features, detectors, calibration, the flag rule."""

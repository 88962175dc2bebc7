"""The severity bands of an anomaly, in increasing order.

One list for every room that ranks them: the calibration that assigns a band, the repeat rule that
lets a burst be raised again when it climbs a band, the send policy's minimum severity, the
events and rules that carry the band into Wazuh (one rule per band in mimizuku_rules.xml).
"""
from __future__ import annotations

from typing import Dict

SEVERITIES = ("none", "low", "medium", "high", "critical")

#: band -> its position (``none`` 0 ... ``critical`` 4)
SEVERITY_RANK: Dict[str, int] = {band: i for i, band in enumerate(SEVERITIES)}

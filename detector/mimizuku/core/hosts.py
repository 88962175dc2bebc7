"""Which hosts never leave this machine: where a password may travel without TLS.

The Wazuh API client, the indexer source and the indexer sink all refuse to send credentials over
plain ``http://`` except to the loopback (or by an explicit ``"allow_http": true``); one answer
to "is this the loopback" serves them all. Standard library only.
"""
from __future__ import annotations

import ipaddress
from typing import Optional

__all__ = ["is_loopback"]


def is_loopback(host: Optional[str]) -> bool:
    """Whether ``host`` names this machine's loopback (what never leaves the host)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""How Linux programs and Wazuh print things (syslog, web, dpkg and FIM times, audit's proctitle,
file hashes), and the seeded draws every planner uses (Poisson counts, tokens, hex strings,
public IP addresses, stable hashes of a key).
"""
from __future__ import annotations

import hashlib
import ipaddress
import math
import random
import re
import time
from typing import Sequence, Tuple

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
HEX_NEEDED = re.compile(r'["\x00-\x20\x7f-\U0010ffff]')


def syslog_ts(sec: int) -> str:
    """``Nov 20 10:15:02`` / ``Nov  5 10:15:02`` (syslog, day space-padded)."""
    tm = time.gmtime(sec)
    return f"{MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"


def web_ts(sec: int) -> str:
    tm = time.gmtime(sec)
    return (f"{tm.tm_mday:02d}/{MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000")


def iso_local(sec: int) -> str:
    """``%FT%T`` as analysisd prints FIM mtimes (its 20-byte buffer drops the zone)."""
    tm = time.gmtime(sec)
    return (f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}")


def dpkg_ts(sec: int) -> str:
    tm = time.gmtime(sec)
    return (f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}")


def audit_proctitle(argv: Sequence[str]) -> str:
    raw = "\x00".join(argv).encode("utf-8", "surrogateescape")[:128]
    if len(argv) == 1 and not HEX_NEEDED.search(argv[0]):
        return f'"{argv[0][:128]}"'
    return raw.hex().upper()


def hashes(key: str) -> Tuple[str, str, str]:
    b = key.encode("utf-8", "surrogateescape")
    return hashlib.md5(b).hexdigest(), hashlib.sha1(b).hexdigest(), hashlib.sha256(b).hexdigest()


def stable_int(key: str, mod: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % mod


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam < 30:
        limit = math.exp(-lam)
        k, p = 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))


def rand_token(rng: random.Random, n: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> str:
    return "".join(rng.choices(alphabet, k=n))


def hexs(rng: random.Random, n: int) -> str:
    return "%0*x" % (n, rng.getrandbits(4 * n))


_PUBLIC_FIRST_OCTETS = (2, 5, 23, 31, 37, 41, 45, 46, 49, 58, 59, 61, 62, 77, 78, 79, 80, 81, 82, 83, 84, 85,
                        86, 87, 88, 89, 91, 92, 93, 94, 95, 101, 103, 106, 109, 110, 111, 112, 113, 114, 115, 116,
                        117, 118, 119, 121, 122, 123, 124, 125, 134, 139, 141, 143, 144, 146, 147, 150, 151, 152,
                        154, 156, 157, 159, 161, 162, 164, 165, 167, 170, 171, 175, 176, 178, 179, 180, 181, 182,
                        183, 185, 186, 187, 188, 189, 190, 191, 193, 194, 195, 196, 197, 201, 202, 203, 206, 209,
                        210, 211, 212, 213, 217, 218, 219, 220, 221, 222, 223)


def public_ip(rng: random.Random) -> str:
    """A random globally routable IPv4 address (not a documentation or private range)."""
    while True:
        ip = f"{rng.choice(_PUBLIC_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        if ipaddress.ip_address(ip).is_global:
            return ip


_SBIN = {"useradd", "usermod", "userdel", "adduser", "chpasswd", "logrotate", "nginx", "apache2ctl", "runuser",
         "postqueue", "postsuper", "iptables", "ldconfig", "update-initramfs", "reboot", "sshd", "visudo", "fstrim",
         "a2ensite", "service", "sendmail"}


def sudo_path(argv0: str) -> str:
    if argv0.startswith("/"):
        return argv0
    if argv0 in ("-i", "-s"):
        return "/bin/bash"
    return ("/usr/sbin/" if argv0 in _SBIN else "/usr/bin/") + argv0

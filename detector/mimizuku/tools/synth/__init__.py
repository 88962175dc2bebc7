"""Synthetic Wazuh alerts for a small fleet, with labelled attack episodes.

Why: tests, benchmarks and the demo need alerts that look exactly like the lines a Wazuh 4.x
manager writes to ``logs/alerts/alerts.json`` -- same keys in the same order, the real rule ids,
levels, groups, compliance arrays and MITRE mappings, the real decoder output (``data.*``,
``syscheck.*``) and ``full_log`` texts -- in a realistic volume and daily rhythm, with attacks
whose every alert carries a label. Everything here is derived from the Wazuh ruleset and
decoders (``ruleset/rules/*.xml``, ``ruleset/decoders/*.xml``) and from ``analysisd``'s JSON
writer; see ``docs/generator.md``.

Standard library only, deterministic per seed::

    from mimizuku.tools.synth import FleetConfig, generate, episodes
    for alert in generate(FleetConfig(days=3, seed=1, scale=0.1)):
        ...

Every alert has a top-level ``_label`` = ``{"attack": bool, "episode": "<kind>#<n>" | "-",
"kind": "<kind>" | "-"}``; detectors ignore unknown top-level keys, benchmarks strip it.

The parts: ``fleet`` (what to generate), ``ruleset`` (the Wazuh rules fired), ``hosts`` (the
animated hosts), ``formats`` (how programs print, seeded draws), ``catalogues`` (what people
and programs choose from), ``world`` (the planner and the emission, with ``generate`` and
``episodes``) and its parts ``builders`` (the alerts), ``actions``, ``roles`` (host routines),
``people`` and ``attacks``; ``writers`` (JSON lines, the archive tree) and ``command`` (the
command line, also ``python -m mimizuku.tools.synth``).
"""
from mimizuku.tools.synth.command import main
from mimizuku.tools.synth.fleet import EPISODE_KINDS, ROLES, FleetConfig, HostSpec, default_fleet
from mimizuku.tools.synth.world import episodes, generate
from mimizuku.tools.synth.writers import strip_labels, write_archive_tree, write_jsonl

__all__ = [
    "EPISODE_KINDS",
    "ROLES",
    "FleetConfig",
    "HostSpec",
    "default_fleet",
    "episodes",
    "generate",
    "main",
    "strip_labels",
    "write_archive_tree",
    "write_jsonl",
]

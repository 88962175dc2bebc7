import sys
from pathlib import Path

# test helpers (alert_factory, wazuh_emulation...) import as top-level modules
sys.path.insert(0, str(Path(__file__).resolve().parent))

# the real OpenSearch node (tests/opensearch_node.py): fixtures `opensearch_node`, `opensearch`
from opensearch_node import opensearch, opensearch_node  # noqa: E402,F401

import sys
from pathlib import Path

# test helpers (alert_factory, wazuh_emulation...) import as top-level modules
sys.path.insert(0, str(Path(__file__).resolve().parent))

# the real OpenSearch node (tests/opensearch_node.py): fixtures `opensearch_node`, `opensearch`,
# and the line at the end of the run that says how many tests ran against it
from opensearch_node import (  # noqa: E402,F401
    opensearch,
    opensearch_node,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)

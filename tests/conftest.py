import sys
from pathlib import Path

# test helpers (alert_factory, wazuh_emulation...) import as top-level modules
sys.path.insert(0, str(Path(__file__).resolve().parent))

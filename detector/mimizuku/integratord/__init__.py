"""What wazuh-integratord runs once per alert; the fast path is standard-library only."""

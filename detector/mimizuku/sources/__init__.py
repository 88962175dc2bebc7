"""Where alerts come from: files and archive trees, tailing, the Wazuh indexer."""

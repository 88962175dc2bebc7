"""Getting anomaly events into Wazuh: the event, the queue socket, the API, flood control."""

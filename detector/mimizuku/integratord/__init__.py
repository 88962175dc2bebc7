"""What wazuh-integratord runs once per alert, and its side of the resident scorer's socket.

``forward`` (the script's fast path), ``client`` and ``protocol`` are standard-library only and
light; ``options`` reads argv and the ``<options>`` JSON; ``call`` is the full per-alert call."""

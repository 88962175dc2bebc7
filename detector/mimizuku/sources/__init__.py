"""Where alerts come from: files and archive trees, tailing, the Wazuh indexer.

``reader`` is the one reader (``iter_alerts``); it stands on ``errors`` (``AlertSourceError``,
``ReadStats``), ``timestamps``, ``archive`` (the day-file layout and the read window),
``decoding`` (JSON lines and documents, their limits, encodings) and ``frames`` (pandas).
``follow`` tails ``alerts.json``; ``indexer`` and ``indexer_follow`` read a Wazuh indexer.
"""

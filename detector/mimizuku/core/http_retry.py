"""The retry policy of our HTTP clients that read (the indexer, a model publication).

urllib3's ``Retry`` on a requests adapter: connection errors, read errors and 429/5xx answers are
retried with exponential backoff, honouring ``Retry-After``. One place, so the clients agree on
what is retried. (The manager API client retries itself: a 401 there means "authenticate again".)
"""
from __future__ import annotations

from typing import Any, Collection, Optional

RETRY_STATUSES = (429, 500, 502, 503, 504)


def retry_adapter(retries: int, backoff: float, *, methods: Optional[Collection[str]],
                  max_retry_after: Optional[float] = None, max_backoff: Optional[float] = None,
                  status: Optional[int] = None, other: Optional[int] = None, **adapter_kw: Any) -> Any:
    """An ``HTTPAdapter`` retrying ``retries`` times. ``methods``: the methods safe to repeat
    (None: all); ``max_retry_after``: cap on a server's ``Retry-After`` (None: as the server says);
    ``max_backoff``: cap on the backoff (None: urllib3's); ``status``/``other``: urllib3's own
    counters for bad answers and other errors (None: bounded by ``retries`` only)."""
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    cls = Retry
    if max_retry_after is not None:
        cap = max_retry_after

        class _CappedRetry(Retry):  # a Retry-After of hours would stall the caller: cap it
            def get_retry_after(self, response: Any) -> Optional[float]:  # type: ignore[override]
                v = super().get_retry_after(response)
                return None if v is None else min(v, cap)

        cls = _CappedRetry
    retry = cls(total=retries, connect=retries, read=retries, status=status, other=other,
                backoff_factor=backoff, status_forcelist=RETRY_STATUSES, allowed_methods=methods,
                respect_retry_after_header=True, raise_on_status=False)
    if max_backoff is not None:
        try:
            retry.backoff_max = max_backoff  # urllib3 >= 2 (a class constant before)
        except AttributeError:  # pragma: no cover
            pass
    return HTTPAdapter(max_retries=retry, **adapter_kw)

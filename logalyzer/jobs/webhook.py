"""The alerts' webhook: one JSON POST, retried with backoff (``LOGALYZER_ALERT_WEBHOOK``).

Standard library only (``urllib``): a POST needs nothing more, and the service's own HTTP
stack (FastAPI) is a server. A connection error, a timeout, a 5xx or a 429 is retried after
``backoff``, 2 x ``backoff``, ... up to ``retries`` times; any other answer (a 4xx: the receiver
refuses this body) is final. Never raises for the network: the caller reports the failure and
leaves the alerts marked unsent, so the next check sends them again.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date, datetime

from logalyzer.errors import first_line


@dataclass
class Delivery:
    ok: bool
    attempts: int
    status: int | None = None  # the last HTTP status, None without an answer
    error: str = ""  # why the last attempt failed


def _default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def post_json(
    url: str,
    payload: dict,
    retries: int = 3,
    timeout_s: float = 5.0,
    backoff_s: float = 1.0,
    sleep=time.sleep,
) -> Delivery:
    """POST ``payload`` as JSON; 2xx is delivered (module docstring for the retries)."""
    body = json.dumps(payload, default=_default).encode()
    result = Delivery(False, 0)
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff_s * 2 ** (attempt - 1))
        result.attempts = attempt + 1
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "logalyzer-alerts"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                result.status, result.ok, result.error = answer.status, True, ""
                return result
        except urllib.error.HTTPError as exc:
            result.status, result.error = exc.code, f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500 and exc.code != 429:
                return result  # the receiver refuses this body: retrying changes nothing
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, DNS, timeout
            reason = getattr(exc, "reason", exc)
            text = first_line(reason) if isinstance(reason, BaseException) else str(reason)
            result.status, result.error = None, text
    return result

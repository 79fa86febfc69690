"""Says in a few words why an HTTP request failed, for reasons stored and logged.

requests wraps urllib3's error, which wraps the socket's; the outer texts
repeat the URL, query string and all, and only the innermost one is news.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
import urllib3

# Enough for "certificate verify failed: self-signed certificate in
# certificate chain"; a reason is read in a log line, not a page.
MAX_CAUSE_CHARS = 120


def innermost(exc: BaseException) -> BaseException:
    """The last of the exceptions `exc` was raised from or while handling."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return exc


def short_cause(exc: BaseException, limit: int = MAX_CAUSE_CHARS) -> str:
    """Why a request failed: "connection refused", "read timed out", "HTTP 503".

    At most `limit` characters, without the URL the outer errors repeat.
    """
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        text = f"HTTP {exc.response.status_code} {exc.response.reason or ''}"
    elif isinstance(inner := innermost(exc), TimeoutError):
        # The socket only says "timed out"; urllib3 knew at which step.
        text = f"{_step(exc)} timed out"
    else:
        text = _text(inner)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def host_port(url: str) -> str:
    """`host:port` of `url`, without the path, the query or any credentials."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port or default}" if port or default else host


def _text(exc: BaseException) -> str:
    # An OSError's strerror has no "[Errno 111]" in front.
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _step(exc: BaseException) -> str:
    while True:
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            return "read"
        if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
            return "connect"
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            return "request"
        exc = inner

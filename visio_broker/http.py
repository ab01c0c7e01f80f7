"""One outbound HTTP client: explicit timeouts, bounded bodies, errors that say if retrying helps.

Every call to another server (media backend health probes, provider APIs, agency webhooks,
federation peers) goes through ``http_request``, so tests have one seam to patch or one real
local server to talk to. Built on ``http.client`` (no dependency): it never follows a redirect on
its own, which lets this module follow only same-host redirects and refuse the others.

Errors:
- ``TemporaryHttpError``: timeouts, refused or reset connections, DNS hiccups, 5xx, 408, 429 —
  worth retrying later.
- ``PermanentHttpError``: malformed or non-HTTP URLs, TLS failures (bad certificate), other 4xx,
  redirects to another host, oversized bodies — retrying will not help.

Logs and error messages carry URLs without their query string or credentials: tokens travel in
queries (``?access_token=``, ``?jwt=``) and must never reach a log line or an audit row.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

logger = logging.getLogger(__name__)

USER_AGENT = "VisioBroker/1.0"
DEFAULT_TIMEOUT = (3.0, 10.0)
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_REDIRECTS = 3
_REDIRECTS = {301, 302, 303, 307, 308}
_TEMPORARY_STATUSES = {408, 425, 429}
_CHUNK = 64 * 1024

Timeout = float | tuple[float, float]


class HttpError(Exception):
    """An outbound request failed; ``permanent`` tells whether retrying can help."""

    permanent = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class TemporaryHttpError(HttpError):
    permanent = False


class PermanentHttpError(HttpError):
    permanent = True


@dataclass(frozen=True)
class HttpResponse:
    status: int
    # Lower-cased names; repeated headers joined with ", ".
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe for logs and stored error text."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path or '/'}" if parts.scheme else "<invalid URL>"


def http_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> HttpResponse:
    """Send one request; return a 2xx (or unfollowed 3xx) response, raise ``HttpError`` otherwise.

    ``timeout`` is (connect, read) in seconds, or one number for both; the read timeout bounds
    each wait for data and, summed with the connect timeout, the whole exchange, so a server
    that trickles bytes cannot hold the caller forever. Redirects are followed only to the same
    scheme, host and port (or http → https on the same host), at most ``MAX_REDIRECTS`` times.
    """
    connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    payload = body.encode("utf-8") if isinstance(body, str) else body
    deadline = time.monotonic() + connect_timeout + read_timeout
    for _hop in range(MAX_REDIRECTS + 1):
        started = time.monotonic()
        response = _send(
            method,
            url,
            headers=headers or {},
            body=payload,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            deadline=deadline,
            max_bytes=max_bytes,
        )
        logger.debug(
            "%s %s -> %s in %.0f ms",
            method,
            redact_url(url),
            response.status,
            (time.monotonic() - started) * 1000,
        )
        if response.status not in _REDIRECTS:
            return _checked(response, url)
        location = response.headers.get("location", "")
        if not location:
            return response
        target = urljoin(url, location)
        if not _same_origin(url, target):
            raise PermanentHttpError(
                f"{redact_url(url)} redirects to another host ({redact_url(target)})",
                status=response.status,
            )
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method, payload = "GET", None
        url = target
    raise PermanentHttpError(f"{redact_url(url)}: more than {MAX_REDIRECTS} redirects")


def _checked(response: HttpResponse, url: str) -> HttpResponse:
    status = response.status
    if status < 400:
        return response
    message = f"{redact_url(url)} answered HTTP {status}"
    if status >= 500 or status in _TEMPORARY_STATUSES:
        raise TemporaryHttpError(message, status=status)
    raise PermanentHttpError(message, status=status)


def _same_origin(source: str, target: str) -> bool:
    a, b = urlsplit(source), urlsplit(target)
    try:
        same_host = (a.hostname, a.port) == (b.hostname, b.port) or (
            a.hostname == b.hostname and a.scheme == "http" and b.scheme == "https"
        )
    except ValueError:
        return False
    return same_host and b.scheme in ("http", "https") and (a.scheme, b.scheme) != ("https", "http")


def _send(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    connect_timeout: float,
    read_timeout: float,
    deadline: float,
    max_bytes: int,
) -> HttpResponse:
    safe_url = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise PermanentHttpError(f"not a valid URL: {safe_url}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentHttpError(f"not an http(s) URL: {safe_url}")
    if parts.username or parts.password:
        raise PermanentHttpError(f"credentials in URLs are not supported: {safe_url}")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname,
            port,
            timeout=connect_timeout,
            context=ssl.create_default_context(),
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, port, timeout=connect_timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.connect()
        # The connect timeout covered DNS, TCP and TLS; each read now waits at most this long.
        if connection.sock is not None:
            connection.sock.settimeout(read_timeout)
        sent = {name.lower() for name in headers}
        connection.putrequest(
            method.upper(), target, skip_host="host" in sent, skip_accept_encoding=True
        )
        if "user-agent" not in sent:
            connection.putheader("User-Agent", USER_AGENT)
        for name, value in headers.items():
            connection.putheader(name, value)
        if body is not None and "content-length" not in sent:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        raw = connection.getresponse()
        content = _read_body(raw, max_bytes=max_bytes, deadline=deadline, url=safe_url)
        response_headers: dict[str, str] = {}
        for name, value in raw.getheaders():
            key = name.lower()
            response_headers[key] = (
                f"{response_headers[key]}, {value}" if key in response_headers else value
            )
        return HttpResponse(status=raw.status, headers=response_headers, body=content)
    except HttpError:
        raise
    except http.client.InvalidURL:
        raise PermanentHttpError(f"not a valid URL: {safe_url}") from None
    except ssl.SSLError as exc:
        # Before OSError (its base class): a certificate the system does not trust will not
        # become trusted by asking again.
        raise PermanentHttpError(f"{safe_url}: TLS error ({exc.reason or exc})") from None
    except TimeoutError:
        raise TemporaryHttpError(f"{safe_url}: timed out") from None
    except socket.gaierror as exc:
        permanent = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None))
        error = PermanentHttpError if permanent else TemporaryHttpError
        raise error(f"{safe_url}: host name not resolved ({exc.strerror})") from None
    except ConnectionRefusedError:
        raise TemporaryHttpError(f"{safe_url}: connection refused") from None
    except (http.client.HTTPException, OSError) as exc:
        # Resets, unreachable networks, truncated or garbled responses: all worth a later retry.
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise TemporaryHttpError(f"{safe_url}: {reason}") from None
    finally:
        connection.close()


def _read_body(
    raw: http.client.HTTPResponse, *, max_bytes: int, deadline: float, url: str
) -> bytes:
    length = raw.getheader("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise PermanentHttpError(f"{url}: response body larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise TemporaryHttpError(f"{url}: timed out")
        # read1: what has arrived, not a blocking fill, so the deadline is checked as bytes come.
        chunk = raw.read1(min(_CHUNK, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise PermanentHttpError(f"{url}: response body larger than {max_bytes} bytes")
        chunks.append(chunk)

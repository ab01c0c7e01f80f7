"""visio_broker.http: the one outbound client, against a real server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
import time
from tempfile import NamedTemporaryFile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.local_http import LocalServer, free_port
from visio_broker.http import (
    HttpError,
    PermanentHttpError,
    TemporaryHttpError,
    http_request,
    redact_url,
)


@pytest.fixture
def server():
    running = LocalServer().start()
    yield running
    running.stop()


# --- Success --------------------------------------------------------------------------------------


def test_http_get_returns_status_headers_and_body(server):
    server.answer(200, b"hello", headers={"X-Thing": "a"})

    response = http_request("GET", f"{server.url}/path?q=1", timeout=2)

    assert (response.status, response.body, response.text()) == (200, b"hello", "hello")
    assert response.headers["x-thing"] == "a"
    (received,) = server.requests
    assert (received.method, received.path) == ("GET", "/path?q=1")
    assert received.headers["user-agent"].startswith("VisioBroker/")


def test_http_post_sends_body_and_headers(server):
    server.answer(201, b"{}")

    response = http_request(
        "POST",
        server.url,
        headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
        body='{"a": "é"}',
        timeout=(1, 2),
    )

    assert response.status == 201
    (received,) = server.requests
    assert received.body == '{"a": "é"}'.encode()
    assert received.headers["content-type"] == "application/json"
    assert received.headers["content-length"] == str(len(received.body))


def test_http_reads_a_body_without_content_length(server):
    server.answer(200, b"x" * 200_000, length=False)

    assert http_request("GET", server.url, timeout=2).body == b"x" * 200_000


# --- Temporary failures: worth a retry ------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_http_server_errors_and_throttling_are_temporary(server, status):
    server.answer(status, b"nope")

    with pytest.raises(TemporaryHttpError) as caught:
        http_request("GET", server.url, timeout=2)

    assert caught.value.status == status
    assert caught.value.permanent is False
    assert f"HTTP {status}" in caught.value.message


def test_http_connection_refused_is_temporary():
    with pytest.raises(TemporaryHttpError, match="connection refused"):
        http_request("GET", f"http://127.0.0.1:{free_port()}/", timeout=2)


def test_http_read_timeout_is_temporary_and_bounded(server):
    server.answer(200, delay=10)
    started = time.monotonic()

    with pytest.raises(TemporaryHttpError, match="timed out"):
        http_request("GET", server.url, timeout=(1, 0.3))

    assert time.monotonic() - started < 2


def test_http_trickling_body_hits_the_overall_deadline(server):
    # Every byte arrives within the read timeout, but the whole exchange may not take longer
    # than connect + read.
    server.answer(200, b"x" * 100, trickle=0.05)
    started = time.monotonic()

    with pytest.raises(TemporaryHttpError, match="timed out"):
        http_request("GET", server.url, timeout=(0.3, 0.3))

    assert time.monotonic() - started < 2


# --- Permanent failures: retrying will not help ---------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_http_client_errors_are_permanent(server, status):
    server.answer(status, b"no")

    with pytest.raises(PermanentHttpError) as caught:
        http_request("GET", server.url, timeout=2)

    assert caught.value.status == status
    assert caught.value.permanent is True
    assert isinstance(caught.value, HttpError)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/file",
        "wss://127.0.0.1/",
        "not a url",
        "http://",
        "http://127.0.0.1:99999/",
        "http://user:password@127.0.0.1/",
    ],
)
def test_http_bad_urls_are_permanent_without_a_request(server, url):
    with pytest.raises(PermanentHttpError):
        http_request("GET", url, timeout=1)

    assert server.requests == []


def test_http_oversized_body_is_permanent(server):
    server.answer(200, b"x" * 2000)

    with pytest.raises(PermanentHttpError, match="larger than 1000 bytes"):
        http_request("GET", server.url, timeout=2, max_bytes=1000)


def test_http_oversized_body_without_length_is_permanent(server):
    server.answer(200, b"x" * 2000, length=False)

    with pytest.raises(PermanentHttpError, match="larger than 1000 bytes"):
        http_request("GET", server.url, timeout=2, max_bytes=1000)


def _self_signed_tls() -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with NamedTemporaryFile("wb") as cert_file, NamedTemporaryFile("wb") as key_file:
        cert_file.write(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cert_file.flush()
        key_file.flush()
        context.load_cert_chain(cert_file.name, key_file.name)
    return context


def test_http_untrusted_certificate_is_permanent():
    tls_server = LocalServer(tls=_self_signed_tls()).start()
    try:
        with pytest.raises(PermanentHttpError, match="TLS error"):
            http_request("GET", tls_server.url, timeout=2)
    finally:
        tls_server.stop()


def test_http_https_to_a_plain_http_port_is_a_permanent_tls_error(server):
    with pytest.raises(PermanentHttpError, match="TLS error"):
        http_request("GET", server.url.replace("http://", "https://"), timeout=2)


# --- Redirects ------------------------------------------------------------------------------------


def test_http_follows_a_redirect_on_the_same_host(server):
    server.answer(302, b"", headers={"Location": "/elsewhere?x=1"})
    server.answer(200, b"there", path="/elsewhere")

    response = http_request("GET", server.url, timeout=2)

    assert response.body == b"there"
    assert [r.path for r in server.requests] == ["/", "/elsewhere?x=1"]


def test_http_gives_up_after_a_few_redirects(server):
    server.answer(302, b"", headers={"Location": "/"})

    with pytest.raises(PermanentHttpError, match="more than 3 redirects"):
        http_request("GET", server.url, timeout=2)

    assert len(server.requests) == 4


def test_http_refuses_a_redirect_to_another_host(server):
    other = LocalServer().start()
    try:
        server.answer(302, b"", headers={"Location": f"{other.url}/steal?token=abc"})

        with pytest.raises(PermanentHttpError, match="redirects to another host") as caught:
            http_request("GET", server.url, timeout=2)

        assert other.requests == []
        assert "token=abc" not in caught.value.message
    finally:
        other.stop()


# --- Secrets stay out of logs and messages --------------------------------------------------------


def test_http_logs_and_errors_never_carry_the_query_string(server, caplog):
    caplog.set_level(logging.DEBUG, logger="visio_broker.http")
    server.answer(200)
    http_request("GET", f"{server.url}/rtc/validate?access_token=SECRET-TOKEN", timeout=2)
    server.answer(500)
    with pytest.raises(TemporaryHttpError) as caught:
        http_request("GET", f"{server.url}/x?jwt=SECRET-TOKEN", timeout=2)

    assert "/rtc/validate" in caplog.text
    assert "SECRET-TOKEN" not in caplog.text
    assert "SECRET-TOKEN" not in caught.value.message


def test_redact_url_drops_credentials_query_and_fragment():
    assert redact_url("https://u:p@host.example:8443/a/b?token=x#frag") == (
        "https://host.example:8443/a/b"
    )
    assert redact_url("http://[::1]:8080?x=1") == "http://[::1]:8080/"
    assert redact_url("garbage") == "<invalid URL>"

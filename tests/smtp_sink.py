"""A real SMTP server on a free loopback port, recording what it receives (aiosmtpd).

Use the ``smtp_sink`` fixture for the server alone, or ``smtp_sink_mail`` to also point Django's
SMTP backend at it. Import their definitions into a test module (or a conftest) to enable them::

    from tests.smtp_sink import smtp_sink_fixture, smtp_sink_mail_fixture  # noqa: F401

Outside pytest, ``with running_smtp_sink() as sink:`` does the same.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from multiprocessing.connection import Connection
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedMail:
    """One SMTP transaction: the envelope plus the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        # Django folds a long encoded subject onto a continuation line ("Subject: \r\n =?utf-8?…");
        # unfolding leaves a leading space that mail clients do not show.
        return str(self.message["Subject"]).strip()

    def body(self, subtype: str = "plain") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return "" if part is None else cast(EmailMessage, part).get_content()


@dataclass
class SmtpSink:
    host: str
    port: int = 0
    _received: list[ReceivedMail] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._received)

    def to(self, address: str) -> list[ReceivedMail]:
        return [mail for mail in self.messages if address in mail.rcpt_tos]

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    # aiosmtpd handler hook, called on the server's thread before it answers "250".
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        message = cast(EmailMessage, message_from_bytes(raw, policy=policy.default))
        with self._lock:
            self._received.append(
                ReceivedMail(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=message,
                )
            )
        return "250 Message accepted for delivery"


class _EphemeralPortController(Controller):
    """Binds port 0 and learns the real port before aiosmtpd's start-up self-test connects."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@contextmanager
def running_smtp_sink(host: str = "127.0.0.1") -> Iterator[SmtpSink]:
    sink = SmtpSink(host=host)
    # A fixed server name: the default resolves the machine's FQDN, which can stall without DNS.
    controller = _EphemeralPortController(
        sink, hostname=host, port=0, server_hostname="smtp-sink.test"
    )
    controller.start()
    sink.port = controller.port
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture(name="smtp_sink")
def smtp_sink_fixture() -> Iterator[SmtpSink]:
    with running_smtp_sink() as sink:
        yield sink


@pytest.fixture(name="smtp_sink_mail")
def smtp_sink_mail_fixture(settings: Any, smtp_sink: SmtpSink) -> SmtpSink:
    """Django sends through its real SMTP backend to the sink."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = smtp_sink.host
    settings.EMAIL_PORT = smtp_sink.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    return smtp_sink


# --- A counting sink in its own process, for benchmarks -------------------------------------

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(\S[^\r\n]*)", re.IGNORECASE | re.MULTILINE)


class MessageIdCounter:
    """aiosmtpd handler that keeps only each message's Message-ID, found by a header scan.

    No parsing: the benchmark needs the count and the duplicates, and parsing every message
    would make the sink, not the code measured, the bottleneck.
    """

    def __init__(self) -> None:
        self.ids: list[bytes] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        end = raw.find(b"\r\n\r\n")
        found = _MESSAGE_ID.search(raw, 0, end if end >= 0 else len(raw))
        with self.lock:
            self.ids.append(found.group(1).strip() if found else b"")
        return "250 Message accepted for delivery"


def _counting_sink_main(pipe: Connection, host: str) -> None:
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = MessageIdCounter()
    controller = _EphemeralPortController(
        handler, hostname=host, port=0, server_hostname="smtp-sink.test"
    )
    controller.start()
    pipe.send(controller.port)
    try:
        while True:
            command = pipe.recv()
            with handler.lock:
                if command == "count":
                    pipe.send(len(handler.ids))
                elif command == "ids":
                    pipe.send([raw.decode("ascii", "replace") for raw in handler.ids])
                elif command == "clear":
                    handler.ids.clear()
                    pipe.send(None)
                else:
                    break
    finally:
        controller.stop()


@dataclass
class CountingSink:
    """The parent's end of a counting sink process: how many arrived, and their Message-IDs."""

    host: str
    port: int
    pipe: Connection

    def count(self) -> int:
        self.pipe.send("count")
        return int(self.pipe.recv())

    def message_ids(self) -> list[str]:
        self.pipe.send("ids")
        return list(self.pipe.recv())

    def clear(self) -> None:
        self.pipe.send("clear")
        self.pipe.recv()


@contextmanager
def running_counting_sink(host: str = "127.0.0.1") -> Iterator[CountingSink]:
    """An SMTP sink in its own process (its own GIL), counting Message-IDs only."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_counting_sink_main, args=(child, host), daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the counting SMTP sink did not start")
        yield CountingSink(host=host, port=int(parent.recv()), pipe=parent)
    finally:
        parent.send("stop")
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)

import mailbox
from argparse import ArgumentParser
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

from visio_broker.commands import OperatorCommand


def _header(message: Message, name: str) -> str:
    return str(make_header(decode_header(message.get(name, ""))))


def _text_body(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return "(no plain-text part)"


class Command(OperatorCommand):
    help = "List the embedded mode's outgoing mail (var/mail/outbox.mbox); --show N prints one."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--show", type=int, help="number of the message to print")

    def handle(self, *args: Any, **options: Any) -> None:
        path = settings.MAILBOX_PATH
        if not path.exists():
            self.stdout.write(f"No mail yet ({path} does not exist).")
            return
        messages = list(mailbox.mbox(path))
        if options["show"] is not None:
            if not 1 <= options["show"] <= len(messages):
                raise CommandError(
                    f"There are {len(messages)} messages; --show takes 1 to {len(messages)}."
                )
            message = messages[options["show"] - 1]
            for name in ("Date", "From", "To", "Subject"):
                self.stdout.write(f"{name}: {_header(message, name)}")
            self.stdout.write("")
            self.stdout.write(_text_body(message))
            return
        for number, message in enumerate(messages, start=1):
            self.stdout.write(
                f"{number:>4}  {_header(message, 'Date')}  {_header(message, 'To')}  "
                f"{_header(message, 'Subject')}"
            )

"""Email backend of the embedded mode: appends every message to an mbox file under var/mail/.

Any mail client opens it (``mutt -f var/mail/outbox.mbox``, Thunderbird's ImportExportTools),
and ``python manage.py mailbox`` lists it.
"""

from __future__ import annotations

import mailbox
from collections.abc import Sequence
from email import message_from_bytes

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend


class MailboxEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        if not email_messages:
            return 0
        path = settings.MAILBOX_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        box = mailbox.mbox(path)
        # The lock keeps web and worker processes from interleaving two messages.
        box.lock()
        try:
            for message in email_messages:
                box.add(message_from_bytes(message.message().as_bytes()))
            box.flush()
        finally:
            box.unlock()
            box.close()
        return len(email_messages)

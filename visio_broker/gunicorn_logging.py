"""gunicorn's logger with calendar feed tokens redacted: ``--logger-class`` / ``logger_class``.

The access log line is built from the raw request (``%(r)s``, ``%(U)s``, headers, environ);
each of those values goes through the same redaction as Django's log records.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

from visio_broker.redaction import RedactFeedTokens, redact


class RedactingLogger(Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # Error-log records (bad request lines, worker tracebacks) may quote the path too.
        for logger in (self.error_log, self.access_log):
            if not any(isinstance(f, RedactFeedTokens) for f in logger.filters):
                logger.addFilter(RedactFeedTokens())

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta
    ) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        return {
            key: redact(value) if isinstance(value, str) else value for key, value in atoms.items()
        }

"""Django's PostgreSQL backend with a health check that needs no round trip.

Django checks a persistent connection before a request's first query (CONN_HEALTH_CHECKS) by
running ``SELECT 1``: one of the four round trips of a signed-in join (session, check, user,
meeting), a quarter of its waiting. An idle connection's socket has nothing to read unless the
server spoke first, and a server that drops a connection (restart, pg_terminate_backend, an idle
timeout) says so: a FATAL message, then end of file. So a quiet socket is a live connection;
anything else, or a connection not idle, goes through Django's ``SELECT 1``, which decides (and
reads away a harmless message). A peer that vanished without a word passes both checks alike:
the query that follows fails and Django closes the connection at the end of the request.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if connection.info.transaction_status != TransactionStatus.IDLE:
            return bool(super().is_usable())
        try:
            poller = select.poll()
            poller.register(connection.fileno(), select.POLLIN)
            spoke = bool(poller.poll(0))
        except (OSError, ValueError):
            return False
        return not spoke or bool(super().is_usable())

"""The session engine (SESSION_ENGINE): Django's database sessions in agencies.Session, which
keeps the signed-in user's id beside the data, so that session_user (agencies.middleware) reads
the session, the user and their membership in one query, with no cache in between."""

from __future__ import annotations

import json
from typing import Any, cast

from django.contrib import auth
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore

from agencies.models import Session

# Decoded session data by its stored, signed text. Checking the signature and decoding the
# payload was a twelfth of every signed-in request, and a session's text changes only when the
# session is saved (Django signs it without a time limit: expiry is the row's). Only text whose
# signature verified is kept, as JSON, so that each request gets a dict of its own to change.
_DECODED: dict[str, str] = {}
_DECODED_MAX = 10_000


class SessionStore(DatabaseSessionStore):
    def decode(self, session_data: bytes | str) -> dict[str, Any]:
        kept = _DECODED.get(session_data) if isinstance(session_data, str) else None
        if kept is not None:
            decoded: dict[str, Any] = json.loads(kept)
            return decoded
        decoded = super().decode(session_data)
        # {} is also what Django returns for data that fails its signature check.
        if decoded and isinstance(session_data, str):
            if len(_DECODED) >= _DECODED_MAX:
                _DECODED.clear()
            _DECODED[session_data] = json.dumps(decoded)
        return decoded

    @classmethod
    def get_model_class(cls) -> type[Session]:
        return Session

    def create_model_instance(self, data: dict[str, Any]) -> Session:
        session = cast(Session, super().create_model_instance(data))
        session.user_id = user_id_of(data)
        return session

    def is_loaded(self) -> bool:
        return hasattr(self, "_session_cache")

    def take_loaded(self, session_data: str | None) -> None:
        """The stored data of this live session as someone else read it (None: no live session
        has this key), as ``load`` would have: later reads need no query."""
        self.accessed = True
        if session_data is None:
            self._session_key = None
            self._session_cache = {}
        else:
            self._session_cache = self.decode(session_data)


def user_id_of(data: dict[str, Any]) -> int | None:
    try:
        return int(data[auth.SESSION_KEY])
    except (KeyError, TypeError, ValueError):
        return None

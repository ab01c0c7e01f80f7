"""API keys kept in each process between requests, while Redis says no key or agency changed.

Every API request needs its key and agency row: one PostgreSQL round trip, about a tenth of
a join ticket's cost. The throttle already makes one Redis round trip per request; the same
round trip now also reads ``GENERATION``, a counter that every save or delete of an ApiKey or
an Agency bumps (post_save / post_delete, so the admin, services and cascades all count). A
key kept under the generation seen before its row was read is used while the generation has
not moved, for ``MAX_AGE`` seconds at most.

Why the order holds: the generation is read *before* the row. A revocation bumps it when it
saves and again after its commit, so a row read before the commit is kept under a generation
that the second bump outdates; the next request reads the row again and refuses the key.

With Redis unreachable nothing is kept or used (each request reads its row, as before); a
bump lost to such an outage is covered by ``MAX_AGE``. Without Redis (the embedded mode's file
cache is no shared counter) the cache is off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import models, transaction
from django.db.models.base import ModelState

from agencies.models import ApiKey

GENERATION = "api-keys:generation"
# How long a kept key may be used at most: the bound on a revocation whose bump Redis lost.
MAX_AGE = 10.0

_Model = TypeVar("_Model", bound=models.Model)


@dataclass
class _Kept:
    key: ApiKey  # with its agency; never handed out, only copies of it
    generation: int
    read_at: float


_KEPT: dict[str, _Kept] = {}


@dataclass(frozen=True)
class KeyLookup:
    key: ApiKey | None
    # The throttle counter's value after this request's hit, when the lookup counted it.
    hits: int | None


def api_key_lookup(
    prefix: str,
    *,
    read: Callable[[str], ApiKey | None],
    presented: Callable[[ApiKey], bool],
    counter: str,
    timeout: int,
) -> KeyLookup:
    """The key with ``prefix`` (``read`` reads its row and agency) and, on the kept path, the
    throttle hit on ``counter`` (a fixed-window counter living ``timeout`` seconds) counted
    with it. A kept key is used only when ``presented`` (the request holds its secret), so that
    a wrong secret never counts against the key's rate limit."""
    incr_window_reading = getattr(cache, "incr_window_reading", None)
    if incr_window_reading is None:
        return KeyLookup(read(prefix), None)
    kept = _KEPT.get(prefix)
    hits: int | None = None
    generation: int | None = None
    if kept is not None and time.monotonic() - kept.read_at < MAX_AGE and presented(kept.key):
        seen = incr_window_reading(counter, timeout, GENERATION)
        if seen is not None:
            hits, generation = seen
            if generation == kept.generation:
                return KeyLookup(_copy(kept.key), hits)
    else:
        generation = cache.counter(GENERATION)  # type: ignore[attr-defined]
    read_at = time.monotonic()
    key = read(prefix)
    if key is None or generation is None:
        _KEPT.pop(prefix, None)
    else:
        _KEPT[prefix] = _Kept(_copy(key), generation, read_at)
    return KeyLookup(key, hits)


def api_key_used(key: ApiKey) -> None:
    """Keep the key's last use as ``apikey_used`` recorded it, so that copies made later do not
    write it again."""
    kept = _KEPT.get(key.prefix)
    if kept is not None and kept.key.pk == key.pk:
        kept.key.last_used_at, kept.key.last_used_ip = key.last_used_at, key.last_used_ip


def api_keys_changed(**_signal: Any) -> None:
    """Receiver of ApiKey and Agency saves and deletes: outdate every kept key, now and once
    the change is committed."""
    bump = getattr(cache, "counter_bump", None)
    if bump is None:
        return
    bump(GENERATION)
    transaction.on_commit(lambda: bump(GENERATION), robust=True)


def forget_kept_keys() -> None:
    """Drop what this process keeps (tests switching databases or caches)."""
    _KEPT.clear()


def _copy(key: ApiKey) -> ApiKey:
    """A copy a request may change (last_used_at), with a copy of its agency."""
    copied = _copy_row(key)
    copied.agency = _copy_row(key.agency)
    return copied


def _copy_row(instance: _Model) -> _Model:
    # What copy.copy gives for a loaded row with no related object cached, at a fifth of the
    # cost (no pickling protocol): the same field values, a state of its own.
    copied = instance.__class__.__new__(instance.__class__)
    copied.__dict__.update(instance.__dict__)
    copied._state = ModelState()
    copied._state.db, copied._state.adding = instance._state.db, False
    return copied

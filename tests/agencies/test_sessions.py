"""The session engine (agencies.sessions): Django's database sessions with the signed-in user's
id in a column, read with the user and their membership in one query."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

import pytest
import time_machine
from django.apps import apps
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session as DjangoSession
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.utils import timezone

from agencies.models import Role, Session, User
from agencies.sessions import SessionStore

pytestmark = pytest.mark.django_db

PAGE = "/profile/"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_signed_in_session_keeps_the_user_id_beside_its_data(agency, make_member):
    user = make_member(agency)
    client = signed_in(user)
    session = Session.objects.get(session_key=client.cookies[settings.SESSION_COOKIE_NAME].value)
    assert session.user_id == user.pk
    assert SessionStore().decode(session.session_data)[SESSION_KEY] == str(user.pk)


def test_a_signed_in_page_reads_session_user_and_membership_in_one_query(
    agency, make_member, django_assert_num_queries, monkeypatch
):
    user = make_member(agency, Role.ADMIN)
    client = signed_in(user)
    client.get(PAGE)
    monkeypatch.setattr(cache, "get", lambda *args, **kwargs: pytest.fail("cache read"))
    with django_assert_num_queries(1) as captured:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.wsgi_request.user == user
    assert response.wsgi_request.user.membership.agency == agency  # read in that query
    assert "agencies_session" in captured.captured_queries[0]["sql"]


def test_an_expired_or_unknown_session_is_anonymous(agency, make_member):
    user = make_member(agency)
    client = signed_in(user)
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE + 1)):
        assert client.get(PAGE).wsgi_request.user.is_authenticated is False
    client.cookies[settings.SESSION_COOKIE_NAME] = "x" * 32
    assert client.get(PAGE).wsgi_request.user.is_authenticated is False


def test_a_session_whose_user_is_gone_is_anonymous(agency, make_member):
    user = make_member(agency)
    client = signed_in(user)
    User.objects.filter(pk=user.pk).delete()
    response = client.get(PAGE)
    assert response.wsgi_request.user.is_authenticated is False


def test_sign_out_deletes_the_row(agency, make_member):
    user = make_member(agency)
    client = signed_in(user)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    client.logout()
    assert not Session.objects.filter(session_key=key).exists()


def test_the_migration_keeps_sessions_of_the_previous_engine(agency, make_member):
    """Sessions written by Django's own engine before the change stay signed in."""
    user = make_member(agency)
    old_store = import_module("django.contrib.sessions.backends.db").SessionStore()
    old_store[SESSION_KEY] = str(user.pk)
    old_store.create()
    expired = import_module("django.contrib.sessions.backends.db").SessionStore()
    expired.create()
    DjangoSession.objects.filter(session_key=expired.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    migration = import_module("agencies.migrations.0006_sessions")
    with connection.schema_editor() as editor:
        migration.copy_live_sessions(apps, editor)
    copied = Session.objects.get(session_key=old_store.session_key)
    assert copied.user_id == user.pk
    assert SessionStore(old_store.session_key)[SESSION_KEY] == str(user.pk)
    assert not Session.objects.filter(session_key=expired.session_key).exists()


def test_the_daily_purge_deletes_expired_sessions_only(agency, make_member):
    from agencies.tasks import sessions_purge_task

    live = signed_in(make_member(agency)).cookies[settings.SESSION_COOKIE_NAME].value
    gone = signed_in(make_member(agency)).cookies[settings.SESSION_COOKIE_NAME].value
    Session.objects.filter(session_key=gone).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    assert sessions_purge_task() == 1
    assert list(Session.objects.values_list("session_key", flat=True)) == [live]
    assert "agencies.sessions_purge" in settings.CELERY_BEAT_SCHEDULE


def test_session_data_decoded_once_is_handed_out_as_a_fresh_copy(agency, make_member):
    """Decoding is remembered by the stored text; every request still gets its own dict, and
    text that fails the signature check is never remembered."""
    from agencies import sessions

    user = make_member(agency)
    stored = Session.objects.get(
        session_key=signed_in(user).cookies[settings.SESSION_COOKIE_NAME].value
    ).session_data
    first = SessionStore().decode(stored)
    assert stored in sessions._DECODED
    first["lobby_entries"] = {"1": "changed by one request"}
    second = SessionStore().decode(stored)
    assert second == {key: value for key, value in first.items() if key != "lobby_entries"}
    assert second is not first

    tampered = stored[:-3] + ("AAA" if not stored.endswith("AAA") else "BBB")
    assert SessionStore().decode(tampered) == {}
    assert tampered not in sessions._DECODED
    # Another session's text is decoded on its own.
    other = make_member(agency)
    other_stored = Session.objects.get(
        session_key=signed_in(other).cookies[settings.SESSION_COOKIE_NAME].value
    ).session_data
    assert SessionStore().decode(other_stored)[SESSION_KEY] == str(other.pk)

"""What agency admins see of the video backends (read-only), and the operators' Django admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from allauth.mfa.models import Authenticator
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agencies.models import AuditEvent, Role
from rooms.models import BackendKind, HealthState, MediaBackend, ReservedWindow, RoomReservation
from tests.conftest import signed_in_client
from tests.factories import UserFactory

PAGE = "/agency/backends/"
SECRET = "page-secret-value-77aa11"
SECRET_ENV = "VISIO_TEST_PAGE_SECRET"


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)


def _with_totp(user):
    Authenticator.objects.create(
        user=user, type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"}
    )
    return user


def _backend(name: str, *, agency=None, country: str = "FR", **fields) -> MediaBackend:
    return MediaBackend.objects.create(
        name=name,
        kind=fields.pop("kind", BackendKind.LIVEKIT),
        base_url=fields.pop("base_url", "wss://lk.example.org"),
        api_key="page-api-key",
        secret_env=SECRET_ENV,
        country=country,
        agency=agency,
        capacity=fields.pop("capacity", 50),
        **fields,
    )


@pytest.fixture
def backends(agency, other_agency):
    """agency is French and accepts shared backends; only "page-own-*" and "page-shared-fr"
    fit its policy."""
    return {
        "own": _backend("page-own-fr", agency=agency, capacity=120),
        "own-off": _backend("page-own-fr-disabled", agency=agency, enabled=False),
        "shared": _backend(
            "page-shared-fr",
            kind=BackendKind.JITSI,
            base_url="https://meet.example.org",
            health_state=HealthState.DOWN,
            last_checked_at=datetime.now(UTC) - timedelta(minutes=3),
        ),
        "shared-de": _backend("page-shared-de", country="DE"),
        "own-de": _backend("page-own-de", agency=agency, country="DE"),
        "other": _backend("page-other-fr", agency=other_agency),
    }


def _shown(response) -> set[str]:
    # Other fixtures may add backends of their own: only this file's names count.
    return {b.name for b in response.context["backends"] if b.name.startswith("page-")}


# --- Who may see the page ---------------------------------------------------------------------


@pytest.mark.django_db
def test_backends_page_anonymous_is_sent_to_sign_in(backends):
    response = Client().get(PAGE)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.MEMBER, Role.ORGANIZER])
def test_backends_page_is_for_agency_admins_only(agency, make_member, backends, role):
    response = signed_in_client(make_member(agency, role)).get(PAGE)

    assert response.status_code == 403
    assert b"page-own-fr" not in response.content


@pytest.mark.django_db
def test_backends_page_admin_sees_exactly_the_backends_the_policy_allows(
    agency, make_member, backends
):
    response = signed_in_client(_with_totp(make_member(agency, Role.ADMIN))).get(PAGE)

    assert response.status_code == 200
    assert _shown(response) == {"page-own-fr", "page-own-fr-disabled", "page-shared-fr"}
    html = response.content.decode()
    assert "page-other-fr" not in html and "page-shared-de" not in html
    assert "Your agency" in html and "Shared" in html and "Disabled" in html
    assert "120 participants" in html
    assert "Down" in html and "3\xa0minutes ago" in html
    # Sources and credentials are the operators' business, values are nobody's.
    assert SECRET not in html and SECRET_ENV not in html and "page-api-key" not in html
    # Read-only: no form to change anything.
    assert "<form" not in html.split('id="main"')[1].split("</main>")[0]


@pytest.mark.django_db
def test_backends_page_without_shared_backends_hides_them(agency, make_member, backends):
    agency.allow_shared_backends = False
    agency.save()

    response = signed_in_client(_with_totp(make_member(agency, Role.ADMIN))).get(PAGE)

    assert _shown(response) == {"page-own-fr", "page-own-fr-disabled"}


@pytest.mark.django_db
def test_backends_page_follows_the_allowed_countries(agency, make_member, backends):
    agency.allowed_backend_countries = ["DE"]
    agency.save()

    response = signed_in_client(_with_totp(make_member(agency, Role.ADMIN))).get(PAGE)

    assert _shown(response) == {"page-own-de", "page-shared-de"}


@pytest.mark.django_db
def test_backends_page_other_agency_admin_sees_its_own(other_agency, make_member, backends):
    admin = _with_totp(make_member(other_agency, Role.ADMIN, email="chef@test.bund.example"))

    response = signed_in_client(admin).get(PAGE)

    # other_agency is German: its own backend is in France, so only the German shared one fits.
    assert _shown(response) == {"page-shared-de"}


@pytest.mark.django_db
def test_backends_page_is_get_only(agency, make_member, backends):
    response = signed_in_client(_with_totp(make_member(agency, Role.ADMIN))).post(PAGE)

    assert response.status_code == 405


@pytest.mark.django_db
def test_backends_page_query_count_does_not_grow_with_backends(agency, make_member, backends):
    client = signed_in_client(_with_totp(make_member(agency, Role.ADMIN)))
    client.get(PAGE)  # the first request of a session records it (user sessions)

    with CaptureQueriesContext(connection) as before:
        assert client.get(PAGE).status_code == 200
    for n in range(5):
        _backend(f"page-more-{n}", agency=agency)
    with CaptureQueriesContext(connection) as after:
        assert client.get(PAGE).status_code == 200

    assert len(after) == len(before)
    assert sum('"rooms_mediabackend"' in q["sql"] for q in after.captured_queries) == 1


@pytest.mark.django_db
def test_backends_nav_link_is_shown_to_agency_admins_only(agency, make_member):
    admin = signed_in_client(_with_totp(make_member(agency, Role.ADMIN)))
    organizer = signed_in_client(make_member(agency, Role.ORGANIZER))

    assert f'href="{PAGE}"' in admin.get("/").content.decode()
    assert f'href="{PAGE}"' not in organizer.get("/").content.decode()


# --- Django admin (platform operators) ----------------------------------------------------------


@pytest.fixture
def operator_client():
    user = UserFactory(email="operator@platform.example")
    user.is_staff = user.is_superuser = True
    user.save()
    return signed_in_client(_with_totp(user))


@pytest.fixture
def reservation(agency, backends):
    reservation = RoomReservation.objects.create(
        agency=agency, backend=backends["own"], title="Ad-hoc", expected_participants=4
    )
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    ReservedWindow.objects.create(
        reservation=reservation,
        backend=backends["own"],
        start=start,
        end=start + timedelta(hours=1),
        participants=4,
    )
    return reservation


@pytest.mark.django_db
def test_admin_backend_pages_load_and_never_show_a_secret(operator_client, backends):
    backend = backends["own"]
    pages = [
        "/admin/rooms/mediabackend/",
        "/admin/rooms/mediabackend/add/",
        f"/admin/rooms/mediabackend/{backend.pk}/change/",
    ]
    for page in pages:
        response = operator_client.get(page)
        assert response.status_code == 200, page
        assert SECRET not in response.content.decode(), page

    change = operator_client.get(pages[2]).content.decode()
    assert SECRET_ENV in change  # the source is shown, for operators
    assert "page-own-fr" in operator_client.get(pages[0]).content.decode()


@pytest.mark.django_db
def test_admin_reservation_pages_are_read_only_with_windows(operator_client, reservation):
    listing = operator_client.get("/admin/rooms/roomreservation/")
    page = operator_client.get(f"/admin/rooms/roomreservation/{reservation.pk}/change/")

    assert listing.status_code == page.status_code == 200
    assert reservation.room_name in listing.content.decode()
    html = page.content.decode()
    assert "Reserved windows" in html
    assert "March 2, 2026, 9 a.m." in html and "March 2, 2026, 10 a.m." in html
    assert 'name="_save"' not in html
    assert operator_client.get("/admin/rooms/roomreservation/add/").status_code == 403


def _admin_form(**overrides) -> dict[str, str]:
    data = {
        "name": "page-admin-lk",
        "kind": "livekit",
        "enabled": "on",
        "base_url": "wss://lk2.example.org/",
        "frontend_url": "",
        "health_url": "",
        "api_key": "key",
        "secret_env": SECRET_ENV,
        "secret_file": "",
        "jitsi_sub": "",
        "country": "FR",
        "region": "",
        "agency": "",
        "capacity": "30",
        "weight": "100",
    }
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_admin_adds_a_livekit_backend_with_a_wss_url(operator_client):
    response = operator_client.post("/admin/rooms/mediabackend/add/", _admin_form())

    assert response.status_code == 302, response.context["adminform"].form.errors
    backend = MediaBackend.objects.get(name="page-admin-lk")
    assert backend.base_url == "wss://lk2.example.org"
    event = AuditEvent.objects.get(action="backend.created", object_id=str(backend.pk))
    assert event.actor_label == "operator@platform.example"
    assert SECRET not in str(event.detail)


@pytest.mark.django_db
def test_admin_jitsi_backend_gets_the_host_as_default_sub(operator_client):
    form = _admin_form(kind="jitsi", base_url="https://meet.example.org", name="page-admin-j")

    response = operator_client.post("/admin/rooms/mediabackend/add/", form)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert MediaBackend.objects.get(name="page-admin-j").jitsi_sub == "meet.example.org"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"secret_env": "VISIO_TEST_UNSET_SECRET"}, "is not set or empty"),
        ({"secret_env": "", "secret_file": ""}, "exactly one secret source"),
        ({"kind": "jitsi"}, "expected a URL starting with https://, http://"),
        ({"capacity": "0"}, "Capacity must be at least 1 participant, got 0."),
        ({"jitsi_sub": "meet.jitsi"}, "A Jitsi sub applies to Jitsi backends only."),
    ],
)
def test_admin_refuses_what_backend_add_refuses(operator_client, overrides, message):
    response = operator_client.post("/admin/rooms/mediabackend/add/", _admin_form(**overrides))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not MediaBackend.objects.filter(name="page-admin-lk").exists()

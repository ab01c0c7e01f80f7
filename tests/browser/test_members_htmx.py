"""An agency admin changes roles in place (htmx): a success updates the row, a refusal shows
its message and leaves the row as stored."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator
from django.test import Client
from playwright.sync_api import Page, expect

from agencies.models import Role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _sign_in(page: Page, live_server, user) -> None:
    # Admins must hold a TOTP authenticator; the session comes from Django's own login.
    Authenticator.objects.create(
        user=user, type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"}
    )
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )


def test_role_change_in_place_and_refusal_message(live_server, page: Page, agency, make_member):
    admin = make_member(agency, Role.ADMIN, display_name="Ada Admin")
    colleague = make_member(agency, Role.MEMBER, display_name="Colin Colleague")
    _sign_in(page, live_server, admin)
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/agency/members/")

    colleague_row = page.locator(f"#member-{colleague.membership.pk}")
    colleague_row.get_by_label("Role of Colin Colleague").select_option("organizer")
    colleague_row.get_by_role("button", name="Change role").click()
    expect(page.locator("#messages")).to_contain_text("Role of Colin Colleague changed.")
    expect(page).to_have_url(f"{live_server.url}/agency/members/")  # swapped, not reloaded
    colleague.membership.refresh_from_db()
    assert colleague.membership.role == Role.ORGANIZER

    # Demoting the only admin is refused: the message shows and the row keeps "Administrator".
    own_row = page.locator(f"#member-{admin.membership.pk}")
    own_row.get_by_label("Role of Ada Admin").select_option("member")
    own_row.get_by_role("button", name="Change role").click()
    expect(page.locator("#messages")).to_contain_text("at least one active administrator")
    expect(
        page.locator(f"#member-{admin.membership.pk}").get_by_label("Role of Ada Admin")
    ).to_have_value("admin")
    admin.membership.refresh_from_db()
    assert admin.membership.role == Role.ADMIN

"""A person signs in with the keyboard, sees their agency, switches to French; axe-core checks
each page (sign-in, home in English, home in French) for serious or critical violations."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from agencies.management.commands.seed_demo import DEMO_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# An organizer: agency admins are sent to the two-factor set-up first. This one's agency and
# profile are in English, so switching to French is a visible change.
ORGANIZER = "organizer@bdv.bund.example"
AGENCY = "Bundesamt für Digitale Verwaltung"


def test_sign_in_with_keyboard_then_switch_to_french(
    live_server, page: Page, assert_accessible, screenshot_dir
):
    call_command("seed_demo", stdout=StringIO())
    page.set_default_timeout(15_000)

    # Sign-in page
    page.goto(f"{live_server.url}/accounts/login/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    assert_accessible(page, "sign-in page")

    page.get_by_label("Email").fill(ORGANIZER)
    password = page.get_by_label("Password")
    password.fill(DEMO_PASSWORD)

    # Keyboard only from here: Tab from the password field to the submit button, then Enter.
    submit = page.locator("main form").get_by_role("button", name="Sign in")
    password.focus()
    for _ in range(5):
        page.keyboard.press("Tab")
        if submit.evaluate("el => el === document.activeElement"):
            break
    expect(submit).to_be_focused()
    page.keyboard.press("Enter")

    # Home page, in English
    page.wait_for_url(f"{live_server.url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Lukas Müller")
    expect(page.get_by_test_id("agency-name")).to_have_text(AGENCY)
    expect(page.get_by_test_id("role")).to_have_text("Organizer")
    assert_accessible(page, "home page, English")
    page.screenshot(path=str(screenshot_dir / "home.png"), full_page=True)

    # The language switch in the header
    page.get_by_label("Language").select_option("fr")
    page.get_by_role("button", name="Change").click()

    # Home page, in French
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page).to_have_title(re.compile(r"^Accueil · Visio Broker$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Bienvenue, Lukas Müller")
    expect(page.get_by_role("heading", level=2, name="Votre agence")).to_be_visible()
    nav = page.get_by_role("navigation", name="Navigation principale")
    expect(nav.get_by_role("link", name="Accueil")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("button", name="Se déconnecter")).to_be_visible()
    expect(page.get_by_test_id("agency-name")).to_have_text(AGENCY)
    expect(page.get_by_test_id("role")).to_have_text("Organisateur")
    expect(page.get_by_label("Langue")).to_have_value("fr")
    assert_accessible(page, "home page, French")
    page.screenshot(path=str(screenshot_dir / "home-fr.png"), full_page=True)

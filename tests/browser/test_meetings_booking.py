"""An organizer books a weekly meeting in the browser, building the recurrence with the keyboard
only; both attendees see it in their agenda, one declines, the organizer cancels one occurrence.
axe-core checks the form, the meeting page and the agenda on the way.

Real dates: time-machine does not reach the live server's thread, so the meeting starts next
Monday, whatever today is.
"""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.utils import timezone as djtz
from playwright.sync_api import Locator, Page, expect

from agencies.management.commands.seed_demo import DEMO_PASSWORD
from meetings.models import Meeting, OccurrenceException, PartStat

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ORGANIZER = "organizer@bdv.bund.example"  # Lukas Müller, Europe/Berlin, English
COLLEAGUE = "member@bdv.bund.example"  # Lea Fischer, same agency
OTHER_AGENCY = "member@minbzk.overheid.example"  # Emma Bakker, another agency on this service
EXTERNAL = "partner@example.org"
TITLE = "Digital sovereignty sync"
DATE_LABEL = re.compile(r"^Date\b")


def sign_in(page: Page, base_url: str, email: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(f"{base_url}/")


def is_focused(locator: Locator) -> bool:
    return bool(locator.evaluate("el => el === document.activeElement"))


def tab_to(page: Page, target: Locator, limit: int = 40) -> None:
    """Press Tab (only Tab) until ``target`` has the focus."""
    for _ in range(limit):
        if is_focused(target):
            return
        page.keyboard.press("Tab")
    expect(target).to_be_focused()


def test_book_weekly_meeting_with_keyboard_then_answer_and_cancel_one(
    live_server, page: Page, assert_accessible, screenshot_dir
):
    call_command("seed_demo", stdout=StringIO())
    page.set_default_timeout(15_000)
    base = live_server.url
    today = djtz.now().astimezone(ZoneInfo("Europe/Berlin")).date()
    monday = today + timedelta(days=7 - today.weekday())
    wednesday = monday + timedelta(days=2)

    # --- The organizer opens the booking form from the navigation ------------------------------
    sign_in(page, base, ORGANIZER)
    page.get_by_role("navigation", name="Main navigation").get_by_role(
        "link", name="New meeting"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New meeting")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    expect(page.locator("#availability table")).to_be_visible()  # loaded by htmx
    assert_accessible(page, "booking form")

    page.get_by_label("Title").fill(TITLE)

    # Attendees: two colleagues through the people search (any agency), one outside address
    # typed in the list itself, the path that also works without JavaScript.
    search = page.get_by_label("Find people by name or email")
    search.fill("Lea")
    page.get_by_role("button", name="Add Lea Fischer as required").click()
    expect(search).to_be_focused()
    search.fill("Emma")
    page.get_by_role("button", name="Add Emma Bakker as required").click()
    required = page.get_by_label("Required attendees")
    expect(required).to_have_value(re.compile(rf"^{COLLEAGUE}\n{OTHER_AGENCY}\n$"))
    required.press("Control+End")
    required.press_sequentially(EXTERNAL)
    required.blur()

    # Find a time proposes free slots; "Use" fills date and times in the form.
    page.get_by_role("button", name="Find a time").click()
    first_slot = page.locator("#find-a-time-results [data-use-slot]").first
    expect(first_slot).to_be_visible()
    slot_date, slot_start = (
        first_slot.get_attribute("data-date"),
        first_slot.get_attribute("data-start"),
    )
    first_slot.click()
    expect(page.get_by_label(DATE_LABEL)).to_have_value(slot_date or "")
    expect(page.get_by_label("Start time")).to_have_value(slot_start or "")

    # This team meets on Mondays at 10:00 though.
    page.get_by_label(DATE_LABEL).fill(monday.isoformat())
    page.get_by_label("Start time").fill("10:00")
    page.get_by_label("End time").fill("11:00")
    availability = page.locator("#availability")
    expect(availability).to_contain_text("Lea Fischer")
    expect(availability.locator("tr", has_text=EXTERNAL)).to_contain_text("Unknown")

    # --- The recurrence with the keyboard only: Tab, arrows, Space and typing -------------------
    page.get_by_label("Time zone").focus()
    no_repeat = page.get_by_role("radio", name="Does not repeat")
    tab_to(page, no_repeat)
    page.keyboard.press("ArrowDown")  # Daily
    page.keyboard.press("ArrowDown")  # Weekly
    expect(page.get_by_role("radio", name="Weekly")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Repeat every")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("1")
    weekdays = page.get_by_role("group", name="On these days")
    tab_to(page, weekdays.get_by_role("checkbox", name="Monday"))
    page.keyboard.press("Space")
    tab_to(page, weekdays.get_by_role("checkbox", name="Wednesday"))
    page.keyboard.press("Space")
    tab_to(page, page.get_by_role("radio", name="Never"))
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("radio", name="After a number of occurrences")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.get_by_role("spinbutton", name="Number of occurrences")).to_be_focused()
    page.keyboard.type("6")
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("recurrence-summary")).to_have_text(
        "Every week on Monday and Wednesday, 6 times"
    )
    assert_accessible(page, "booking form, filled in")
    page.screenshot(path=str(screenshot_dir / "meeting-form.png"), full_page=True)

    page.get_by_role("button", name="Book the meeting").click()

    # --- The meeting page --------------------------------------------------------------------
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(page.get_by_text("The meeting is booked.")).to_be_visible()
    expect(page.get_by_test_id("recurrence-summary")).to_have_text(
        "Every week on Monday and Wednesday, 6 times"
    )
    rows = page.get_by_test_id("attendee-row")
    expect(rows).to_have_count(4)
    assert_accessible(page, "meeting page (organizer)")
    page.screenshot(path=str(screenshot_dir / "meeting-page.png"), full_page=True)
    meeting = Meeting.objects.get(title=TITLE)
    assert meeting.rrule == "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=6"
    assert sorted(meeting.attendees.values_list("email", flat=True)) == sorted(
        [ORGANIZER, COLLEAGUE, OTHER_AGENCY, EXTERNAL]
    )

    # --- Both internal attendees find it in their agenda; Lea declines ----------------------
    sign_in(page, base, OTHER_AGENCY)
    page.get_by_role("link", name="Agenda").first.click()
    items = page.get_by_test_id("agenda-item").filter(has_text=TITLE)
    expect(items).to_have_count(6)
    expect(items.first).to_contain_text("Not answered")

    sign_in(page, base, COLLEAGUE)
    page.goto(f"{base}/agenda/")
    items = page.get_by_test_id("agenda-item").filter(has_text=TITLE)
    expect(items).to_have_count(6)
    expect(items.first).to_contain_text("10:00")
    assert_accessible(page, "agenda (list)")
    page.screenshot(path=str(screenshot_dir / "agenda.png"), full_page=True)

    page.goto(f"{base}/agenda/week/?date={monday.isoformat()}")
    expect(page.get_by_test_id("week-entry").filter(has_text=TITLE)).to_have_count(2)
    assert_accessible(page, "agenda (week)")
    page.screenshot(path=str(screenshot_dir / "agenda-week.png"), full_page=True)

    page.goto(f"{base}/agenda/")
    page.get_by_test_id("agenda-item").filter(has_text=TITLE).first.get_by_role(
        "link", name=TITLE
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    assert_accessible(page, "meeting page (attendee)")
    page.get_by_role("button", name="Decline").click()
    expect(page.get_by_text("You declined the invitation.")).to_be_visible()
    expect(page.get_by_test_id("my-answer")).to_have_text("Declined")
    assert meeting.attendees.get(email=COLLEAGUE).partstat == PartStat.DECLINED

    # --- The organizer cancels the Wednesday occurrence ----------------------------------------
    sign_in(page, base, ORGANIZER)
    page.goto(f"{base}/agenda/")
    wednesday_item = page.get_by_test_id("agenda-item").filter(has_text=TITLE).nth(1)
    wednesday_item.get_by_role("link", name=TITLE).click()
    expect(page.get_by_test_id("when")).to_contain_text(wednesday.strftime("%A"))
    page.get_by_role("link", name="Cancel this occurrence").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Cancel this occurrence?")
    assert_accessible(page, "cancel confirmation")
    page.get_by_role("button", name="Yes, cancel this occurrence").click()
    expect(page.get_by_test_id("cancelled-notice")).to_contain_text("This occurrence is cancelled.")
    exception = OccurrenceException.objects.get(meeting=meeting)
    assert exception.cancelled
    assert exception.recurrence_id.astimezone(ZoneInfo("Europe/Berlin")).date() == wednesday

    page.get_by_role("link", name="Agenda").first.click()
    items = page.get_by_test_id("agenda-item").filter(has_text=TITLE)
    expect(items.nth(1)).to_contain_text("Cancelled")
    expect(items.nth(0)).not_to_contain_text("Cancelled")
    expect(page.get_by_test_id("agenda-item").filter(has_text="Cancelled")).to_have_count(1)
    page.screenshot(path=str(screenshot_dir / "agenda-cancelled.png"), full_page=True)

/* Booking form helpers. The form works without this file: it only shows the parts of the
   recurrence builder that apply, keeps end time and duration in step, and lets the people
   search, "find a time" and htmx panels fill the ordinary fields. No build step. */
(function () {
  "use strict";

  var form = document.querySelector("[data-meeting-form]");
  if (!form) return;

  function byId(id) { return document.getElementById(id); }

  function announce(text) {
    var region = byId("people-announce");
    if (!region || !text) return;
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  function changed(element) {
    element.dispatchEvent(new Event("change", { bubbles: true }));
  }

  // --- Recurrence builder: show what the chosen pattern uses ---------------------------------
  function checkedValue(name) {
    var checked = form.querySelector('input[name="' + name + '"]:checked');
    return checked ? checked.value : "";
  }

  function syncRecurrence() {
    var freq = checkedValue("repeat") || "none";
    form.querySelectorAll("[data-recurrence-part]").forEach(function (part) {
      part.hidden = part.getAttribute("data-recurrence-part").split(" ").indexOf(freq) === -1;
    });
    var unit = byId("interval-unit");
    if (unit && freq !== "none") {
      unit.textContent = unit.getAttribute("data-units-" + freq.toLowerCase()) || unit.textContent;
    }
  }

  form.addEventListener("change", function (event) {
    if (event.target.name === "repeat") syncRecurrence();
  });
  // Typing a number of occurrences or a last day chooses that way of ending.
  [["id_count", "count"], ["id_until", "until"]].forEach(function (pair) {
    var input = byId(pair[0]);
    if (!input) return;
    input.addEventListener("input", function () {
      var radio = form.querySelector('input[name="ends"][value="' + pair[1] + '"]');
      if (radio && !radio.checked) { radio.checked = true; changed(radio); }
    });
  });
  [["id_month_day", "day"], ["id_nth", "nth"], ["id_nth_weekday", "nth"]].forEach(function (pair) {
    var input = byId(pair[0]);
    if (!input) return;
    input.addEventListener("input", function () {
      var radio = form.querySelector('input[name="monthly_mode"][value="' + pair[1] + '"]');
      if (radio && !radio.checked) { radio.checked = true; changed(radio); }
    });
  });
  syncRecurrence();

  // --- Times: all day, duration, end time -------------------------------------------------------
  var start = byId("id_start_time"), end = byId("id_end_time"), duration = byId("id_duration");
  var allDay = byId("id_all_day");

  function minutes(value) {
    var parts = (value || "").split(":");
    return parts.length < 2 ? null : parseInt(parts[0], 10) * 60 + parseInt(parts[1], 10);
  }
  function clock(total) {
    var h = Math.floor(total / 60), m = total % 60;
    return (h < 10 ? "0" : "") + h + ":" + (m < 10 ? "0" : "") + m;
  }
  function syncAllDay() {
    form.querySelectorAll(".timed").forEach(function (field) { field.hidden = allDay.checked; });
  }
  var lastStart = start ? minutes(start.value) : null;
  if (start && end) {
    start.addEventListener("change", function () {
      var from = minutes(start.value), to = minutes(end.value);
      // Moving the start keeps the length, as in Outlook.
      if (from !== null && lastStart !== null && to !== null && !(duration && duration.value)) {
        var moved = to + (from - lastStart);
        if (moved > from && moved < 24 * 60) end.value = clock(moved);
      }
      if (from !== null && duration && duration.value) {
        var byDuration = from + parseInt(duration.value, 10);
        if (byDuration < 24 * 60) end.value = clock(byDuration);
      }
      lastStart = from;
    });
    end.addEventListener("input", function () { if (duration) duration.value = ""; });
  }
  if (duration && start && end) {
    duration.addEventListener("change", function () {
      var from = minutes(start.value);
      if (from === null || !duration.value) return;
      var to = from + parseInt(duration.value, 10);
      if (to < 24 * 60) end.value = clock(to);
    });
  }
  if (allDay) { allDay.addEventListener("change", syncAllDay); syncAllDay(); }

  // --- People search fills the address lists ----------------------------------------------------
  var search = byId("people-search");
  // The people search and "find a time" only work with this script: show them now.
  form.querySelectorAll("[data-needs-js]").forEach(function (part) { part.hidden = false; });
  if (search) {
    search.addEventListener("keydown", function (event) {
      // Enter searches; it must not submit the booking form.
      if (event.key === "Enter") { event.preventDefault(); htmx.trigger(search, "search"); }
    });
  }

  function addLine(textarea, email) {
    var lines = textarea.value.split(/[\n,;]+/).map(function (line) { return line.trim(); })
      .filter(function (line) { return line; });
    var lower = lines.map(function (line) { return line.toLowerCase(); });
    if (lower.indexOf(email.toLowerCase()) === -1) lines.push(email);
    textarea.value = lines.join("\n") + "\n";
    changed(textarea);
  }

  form.addEventListener("click", function (event) {
    var add = event.target.closest("[data-add-to]");
    if (add) {
      var textarea = byId(add.getAttribute("data-add-to"));
      if (!textarea) return;
      addLine(textarea, add.getAttribute("data-email"));
      announce(add.getAttribute("data-announce"));
      if (search) { search.value = ""; byId("people-results").innerHTML = ""; search.focus(); }
      return;
    }
    var slot = event.target.closest("[data-use-slot]");
    if (slot) {
      var date = byId("id_date");
      date.value = slot.getAttribute("data-date");
      if (allDay && allDay.checked) { allDay.checked = false; syncAllDay(); }
      start.value = slot.getAttribute("data-start");
      end.value = slot.getAttribute("data-end");
      lastStart = minutes(start.value);
      if (duration) duration.value = "";
      [date, start, end].forEach(changed);
      announce(slot.getAttribute("data-announce"));
      date.focus();
    }
  });

  // Say how many people the search found (the list itself is not a live region: too chatty).
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id !== "people-results") return;
    var summary = event.detail.target.querySelector("[data-summary]");
    if (summary) announce(summary.getAttribute("data-summary"));
  });

  // Panels answer bad input with 400 and a message: show it instead of keeping stale content.
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (event.detail.xhr.status === 400 && target && target.closest("[data-swap-errors]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();

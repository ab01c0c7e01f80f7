// Parse an iCalendar feed (stdin) with ical.js, the parser of Thunderbird and Nextcloud, and
// print every occurrence as JSON: {uid, recurrenceId, start, end, status} in UTC epoch seconds.
// Usage: node icaljs_occurrences.mjs <until epoch seconds> < feed.ics
// Fails (exit 1) on a parse error, on a TZID without a VTIMEZONE in the feed, and on a
// floating DTSTART/DTEND/EXDATE/RECURRENCE-ID: those would silently shift in a client.
import { readFileSync } from "node:fs";
import ICAL from "ical.js";

const until = Number(process.argv[2]);
if (!Number.isFinite(until)) {
  throw new Error("usage: node icaljs_occurrences.mjs <until epoch seconds> < feed.ics");
}
const vcalendar = new ICAL.Component(ICAL.parse(readFileSync(0, "utf8")));

function checkTimes(vevent, uid) {
  for (const name of ["dtstart", "dtend", "exdate", "recurrence-id"]) {
    for (const prop of vevent.getAllProperties(name)) {
      const tzid = prop.getParameter("tzid");
      for (const value of prop.getValues()) {
        if (value.isDate) continue;
        if (tzid) {
          if (!vcalendar.getTimeZoneByID(tzid)) {
            throw new Error(`${uid}: ${name} uses TZID ${tzid} without a VTIMEZONE`);
          }
        } else if (value.zone !== ICAL.Timezone.utcTimezone) {
          throw new Error(`${uid}: floating ${name} ${value.toString()}`);
        }
      }
    }
  }
}

const byUid = new Map();
for (const vevent of vcalendar.getAllSubcomponents("vevent")) {
  const uid = vevent.getFirstPropertyValue("uid");
  checkTimes(vevent, uid);
  if (!byUid.has(uid)) byUid.set(uid, { master: null, overrides: [] });
  const entry = byUid.get(uid);
  if (vevent.hasProperty("recurrence-id")) entry.overrides.push(vevent);
  else if (entry.master) throw new Error(`${uid}: two masters`);
  else entry.master = vevent;
}

const out = [];
for (const [uid, { master, overrides }] of byUid) {
  if (!master) throw new Error(`${uid}: overrides without a master`);
  const event = new ICAL.Event(master, { strictExceptions: true, exceptions: overrides });
  const status = (item) => item.component.getFirstPropertyValue("status");
  if (!event.isRecurring()) {
    out.push({
      uid,
      recurrenceId: null,
      start: event.startDate.toUnixTime(),
      end: event.endDate.toUnixTime(),
      status: status(event),
    });
    continue;
  }
  const iterator = event.iterator();
  for (let next = iterator.next(); next && next.toUnixTime() < until; next = iterator.next()) {
    const details = event.getOccurrenceDetails(next);
    out.push({
      uid,
      recurrenceId: details.recurrenceId.toUnixTime(),
      start: details.startDate.toUnixTime(),
      end: details.endDate.toUnixTime(),
      status: status(details.item),
    });
  }
}
process.stdout.write(JSON.stringify(out));

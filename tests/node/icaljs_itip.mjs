// Read an iTIP calendar (METHOD, one event) with ical.js, resolving times through its own
// VTIMEZONE, and print what a client would act on.
// Input (stdin): the ICS text. Output: {"method": ..., "events": [{uid, sequence, status,
// recurrenceId, start, end (ISO UTC), attendees: [mailto...], organizer}]}
import { readFileSync } from "node:fs";
import ICAL from "ical.js";

const vcalendar = new ICAL.Component(ICAL.parse(readFileSync(0, "utf8")));
for (const vtimezone of vcalendar.getAllSubcomponents("vtimezone")) {
  ICAL.TimezoneService.register(vtimezone);
}
const iso = (time) => (time ? time.toJSDate().toISOString() : null);
const events = vcalendar.getAllSubcomponents("vevent").map((component) => {
  const event = new ICAL.Event(component);
  return {
    uid: event.uid,
    sequence: event.sequence,
    status: component.getFirstPropertyValue("status"),
    recurrenceId: iso(event.recurrenceId),
    start: iso(event.startDate),
    end: iso(event.endDate),
    startZone: event.startDate.zone ? event.startDate.zone.tzid : null,
    organizer: component.getFirstPropertyValue("organizer"),
    attendees: event.attendees.map((a) => a.getFirstValue()),
    alarms: component.getAllSubcomponents("valarm").map((v) => v.getFirstPropertyValue("action")),
  };
});
process.stdout.write(
  JSON.stringify({ method: vcalendar.getFirstPropertyValue("method"), events }),
);

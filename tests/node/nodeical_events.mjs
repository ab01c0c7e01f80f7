// Parse an iCalendar feed (stdin) with node-ical and print its events and their occurrences
// up to <until epoch seconds> as JSON, in UTC epoch seconds. Exit 1 on a parse error.
// Usage: node nodeical_events.mjs <from epoch seconds> <until epoch seconds> < feed.ics
import { readFileSync } from "node:fs";
import ical from "node-ical";

const from = new Date(Number(process.argv[2]) * 1000);
const until = new Date(Number(process.argv[3]) * 1000);
const parsed = ical.sync.parseICS(readFileSync(0, "utf8"));
const seconds = (date) => Math.round(date.getTime() / 1000);
const out = [];
for (const event of Object.values(parsed)) {
  if (event.type !== "VEVENT") continue;
  if (!(event.start instanceof Date) || Number.isNaN(event.start.getTime())) {
    throw new Error(`${event.uid}: DTSTART not understood`);
  }
  const instances = ical.expandRecurringEvent(event, { from, to: until });
  out.push({
    uid: event.uid,
    summary: typeof event.summary === "string" ? event.summary : event.summary?.val,
    start: seconds(event.start),
    end: seconds(event.end),
    tz: event.start.tz ?? null,
    dateOnly: Boolean(event.start.dateOnly),
    status: event.status ?? null,
    recurring: Boolean(event.rrule),
    exdates: Object.keys(event.exdate ?? {}).filter((key) => key.includes("T")).length,
    overrides: Object.keys(event.recurrences ?? {}).filter((key) => key.includes("T")).length,
    occurrences: instances.map((instance) => ({
      start: seconds(instance.start),
      end: seconds(instance.end),
    })),
  });
}
process.stdout.write(JSON.stringify(out));

// Read local wall-clock times in each VTIMEZONE of a calendar with ical.js, as it reads
// DTSTART;TZID=..., and print the UTC instants, so tests compare its reading of our
// observances with zoneinfo.
// Input (stdin): {"ics": "...", "walls": [wall-clock times as if they were UTC epoch seconds]}
// Output: {"<TZID>": [UTC epoch seconds, ...], ...}
import { readFileSync } from "node:fs";
import ICAL from "ical.js";

const { ics, walls } = JSON.parse(readFileSync(0, "utf8"));
const vcalendar = new ICAL.Component(ICAL.parse(ics));
const out = {};
for (const vtimezone of vcalendar.getAllSubcomponents("vtimezone")) {
  const tzid = vtimezone.getFirstPropertyValue("tzid");
  const zone = new ICAL.Timezone({ component: vtimezone, tzid });
  out[tzid] = walls.map((seconds) => {
    const wall = new Date(seconds * 1000);
    const time = new ICAL.Time(
      {
        year: wall.getUTCFullYear(),
        month: wall.getUTCMonth() + 1,
        day: wall.getUTCDate(),
        hour: wall.getUTCHours(),
        minute: wall.getUTCMinutes(),
        second: wall.getUTCSeconds(),
        isDate: false,
      },
      zone,
    );
    return time.toUnixTime();
  });
}
process.stdout.write(JSON.stringify(out));

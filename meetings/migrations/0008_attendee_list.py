"""AttendeeList: each meeting's attendees as the API lists them, kept by PostgreSQL triggers.

After each statement that inserts, updates or deletes attendees, the lists of the meetings it
touched are rewritten from meetings_attendee. The rewrite first locks those lists (in meeting
order), then reads the attendees: under READ COMMITTED each statement of the function takes a
new snapshot, so a concurrent transaction that changed the same meeting's attendees has either
committed (and its rows are read) or is still holding the lock (and this one waits for it).
Without the lock, two transactions adding attendees to one meeting at once could each write a
list missing the other's. SQLite keeps no lists (the API writes its list in Python there).
"""

import django.db.models.deletion
from django.db import migrations, models

CREATE = [
    """
CREATE OR REPLACE FUNCTION meetings_attendee_list_refresh(meeting_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM meetings_attendeelist
    WHERE meeting_id = ANY (meeting_ids) ORDER BY meeting_id FOR UPDATE;
    UPDATE meetings_attendeelist AS list SET json = COALESCE((
        SELECT '[' || string_agg(attendee.api_json, ',' ORDER BY attendee.id) || ']'
        FROM meetings_attendee AS attendee WHERE attendee.meeting_id = list.meeting_id
    ), '[]')
    WHERE list.meeting_id = ANY (meeting_ids);
END
$$""",
    # One function for the three triggers; each names only the transition tables its event has.
    """
CREATE OR REPLACE FUNCTION meetings_attendee_list_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    meeting_ids bigint[];
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT meeting_id) INTO meeting_ids FROM old_attendees;
    ELSE
        -- Lists that do not exist yet: created empty (and then filled) in meeting order.
        INSERT INTO meetings_attendeelist (meeting_id, json)
        SELECT DISTINCT meeting_id, '[]' FROM new_attendees ORDER BY meeting_id
        ON CONFLICT (meeting_id) DO NOTHING;
        IF TG_OP = 'INSERT' THEN
            SELECT array_agg(DISTINCT meeting_id) INTO meeting_ids FROM new_attendees;
        ELSE
            SELECT array_agg(DISTINCT meeting_id) INTO meeting_ids FROM (
                SELECT meeting_id FROM new_attendees UNION SELECT meeting_id FROM old_attendees
            ) AS touched;
        END IF;
    END IF;
    IF meeting_ids IS NOT NULL THEN
        PERFORM meetings_attendee_list_refresh(meeting_ids);
    END IF;
    RETURN NULL;
END
$$""",
    """
CREATE TRIGGER meetings_attendee_list_insert AFTER INSERT ON meetings_attendee
REFERENCING NEW TABLE AS new_attendees
FOR EACH STATEMENT EXECUTE FUNCTION meetings_attendee_list_trigger()""",
    """
CREATE TRIGGER meetings_attendee_list_update AFTER UPDATE ON meetings_attendee
REFERENCING OLD TABLE AS old_attendees NEW TABLE AS new_attendees
FOR EACH STATEMENT EXECUTE FUNCTION meetings_attendee_list_trigger()""",
    """
CREATE TRIGGER meetings_attendee_list_delete AFTER DELETE ON meetings_attendee
REFERENCING OLD TABLE AS old_attendees
FOR EACH STATEMENT EXECUTE FUNCTION meetings_attendee_list_trigger()""",
    # The lists of the attendees there already.
    """
INSERT INTO meetings_attendeelist (meeting_id, json)
SELECT meeting_id, '[' || string_agg(api_json, ',' ORDER BY id) || ']'
FROM meetings_attendee GROUP BY meeting_id
""",
]

DROP = [
    "DROP TRIGGER IF EXISTS meetings_attendee_list_insert ON meetings_attendee",
    "DROP TRIGGER IF EXISTS meetings_attendee_list_update ON meetings_attendee",
    "DROP TRIGGER IF EXISTS meetings_attendee_list_delete ON meetings_attendee",
    "DROP FUNCTION IF EXISTS meetings_attendee_list_trigger()",
    "DROP FUNCTION IF EXISTS meetings_attendee_list_refresh(bigint[])",
]


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in CREATE:
            schema_editor.execute(statement)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in DROP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("meetings", "0007_attendee_api_json"),
    ]

    operations = [
        migrations.CreateModel(
            name="AttendeeList",
            fields=[
                (
                    "meeting",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="meetings.meeting",
                    ),
                ),
                ("json", models.TextField(default="[]")),
            ],
        ),
        migrations.RunPython(create_triggers, drop_triggers, elidable=False),
    ]

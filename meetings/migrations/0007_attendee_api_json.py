"""Attendee.api_json: the attendee's JSON, stored by the database (PostgreSQL needs an IMMUTABLE
function to escape a string in a generated column: to_json() is only STABLE, though for text
its result depends on nothing but its argument)."""

from django.db import migrations, models
from django.db.models import Value
from django.db.models.functions import Concat

import meetings.models

CREATE_FUNCTION = """
CREATE OR REPLACE FUNCTION visio_json_string(text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT to_json($1)::text $$
"""


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE_FUNCTION)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS visio_json_string(text)")


class Migration(migrations.Migration):

    dependencies = [
        ("meetings", "0006_meeting_changes"),
    ]

    operations = [
        migrations.RunPython(create_function, drop_function, elidable=False),
        migrations.AddField(
            model_name="attendee",
            name="api_json",
            field=models.GeneratedField(
                db_persist=True,
                expression=Concat(
                    Value('{"email":'),
                    meetings.models.JsonString("email"),
                    Value(',"name":'),
                    meetings.models.JsonString("display_name"),
                    Value(',"role":'),
                    meetings.models.JsonString("role"),
                    Value(',"status":'),
                    meetings.models.JsonString("partstat"),
                    Value("}"),
                    output_field=models.TextField(),
                ),
                output_field=models.TextField(),
            ),
        ),
    ]

from django.contrib import admin

from meetings.models import Attendee, Meeting, OccurrenceException


class AttendeeInline(admin.TabularInline):
    model = Attendee
    extra = 0
    raw_id_fields = ["user"]
    fields = ["email", "display_name", "user", "role", "partstat", "responded_at"]
    readonly_fields = ["responded_at"]


class OccurrenceExceptionInline(admin.TabularInline):
    model = OccurrenceException
    extra = 0
    fields = ["recurrence_id", "cancelled", "start", "end"]


@admin.register(Meeting)
class MeetingAdmin(admin.ModelAdmin):
    list_display = ["title", "start", "timezone", "organizer", "host_agency", "status", "sequence"]
    list_filter = ["status", "access_level", "all_day", "host_agency"]
    search_fields = ["title", "uid", "organizer__email"]
    date_hierarchy = "start"
    raw_id_fields = ["organizer", "split_from"]
    filter_horizontal = ["co_organizers"]
    readonly_fields = ["uid", "sequence", "series_end", "created_at", "updated_at"]
    list_select_related = ["organizer", "host_agency"]
    inlines = [AttendeeInline, OccurrenceExceptionInline]

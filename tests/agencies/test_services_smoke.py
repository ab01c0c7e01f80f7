import pytest

from agencies.models import AuditEvent, Role
from agencies.services import membership_change_role


@pytest.mark.django_db
def test_membership_change_role_writes_audit(agency, make_member):
    admin = make_member(agency, Role.ADMIN)
    member = make_member(agency, Role.MEMBER)
    membership_change_role(actor=admin, membership=member.membership, role=Role.ORGANIZER)
    member.membership.refresh_from_db()
    assert member.membership.role == Role.ORGANIZER
    event = AuditEvent.objects.get(action="member.role_changed")
    assert event.actor == admin and event.detail == {"from": "member", "to": "organizer"}

from django.contrib.auth.tokens import PasswordResetTokenGenerator


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    """Invitation links: single use (the hash covers the password) and dead once deactivated."""

    key_salt = "visio_broker.agencies.InvitationTokenGenerator"

    def _make_hash_value(self, user, timestamp):
        return f"{super()._make_hash_value(user, timestamp)}{user.is_active}"


invitation_token = InvitationTokenGenerator()

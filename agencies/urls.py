from django.urls import path

from agencies import views

urlpatterns = [
    path("", views.home, name="home"),
    path("profile/", views.profile, name="profile"),
    path("language/", views.language_set, name="language_set"),
    path("agency/members/", views.member_list, name="member_list"),
    path("agency/members/<int:pk>/role/", views.member_role, name="member_role"),
    path("agency/members/<int:pk>/deactivate/", views.member_deactivate, name="member_deactivate"),
    path("agency/members/<int:pk>/reactivate/", views.member_reactivate, name="member_reactivate"),
    path("agency/integrations/", views.integrations, name="integrations"),
    path("agency/integrations/keys/<int:pk>/revoke/", views.apikey_revoke, name="apikey_revoke"),
    path("invitation/<uidb64>/<token>/", views.invitation_accept, name="invitation_accept"),
]

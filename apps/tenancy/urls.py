"""API routes of the tenancy app (mounted under /api/v1/tenancy/ by config/urls.py)."""

from django.urls import URLPattern, path

from apps.tenancy import apis, member_apis

urlpatterns: list[URLPattern] = [
    path("whoami", apis.WhoAmIApi.as_view(), name="tenancy-whoami"),
    path("api-keys", apis.ApiKeyCreateApi.as_view(), name="tenancy-api-key-create"),
    path("members", member_apis.MembersApi.as_view(), name="tenancy-members"),
    path("members/<int:user_id>", member_apis.MemberDetailApi.as_view(), name="tenancy-member-detail"),
    path("invitations", member_apis.InvitationsApi.as_view(), name="tenancy-invitations"),
    path(
        "invitations/<int:invitation_id>", member_apis.InvitationDetailApi.as_view(), name="tenancy-invitation-detail"
    ),
    path(
        "invitations/<int:invitation_id>/renew",
        member_apis.InvitationRenewApi.as_view(),
        name="tenancy-invitation-renew",
    ),
]

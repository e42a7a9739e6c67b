"""The studio dashboard for photographers and owners, under /studio/."""

from django.urls import path, register_converter

from apps.web.studio.views import (
    announcements,
    api_keys,
    attendees,
    auth,
    events,
    invitations,
    members,
    money,
    overview,
    photos,
    settings,
)


class IdConverter:
    """A row id that fits PostgreSQL's bigint (a longer number is a 404, never a database error)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "studio_id")

app_name = "studio"
urlpatterns = [
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("choose/", auth.choose, name="choose"),
    path("invitations/", invitations.invitations, name="invitations"),
    path("invitations/<studio_id:tenant_id>/accept", invitations.invitation_accept, name="invitation-accept"),
    path("invitations/<studio_id:tenant_id>/decline", invitations.invitation_decline, name="invitation-decline"),
    path("password-reset/", auth.PasswordResetView.as_view(), name="password-reset"),
    path("password-reset/sent/", auth.PasswordResetSentView.as_view(), name="password-reset-sent"),
    path("reset/<uidb64>/<token>/", auth.PasswordResetConfirmView.as_view(), name="password-reset-confirm"),
    path("reset/done/", auth.PasswordResetDoneView.as_view(), name="password-reset-done"),
    path("", overview.overview, name="overview"),
    path("settings/", settings.studio_settings, name="settings"),
    path("events/", events.events, name="events"),
    path("events/<studio_id:event_id>/", events.event_detail, name="event"),
    path("events/<studio_id:event_id>/edit", events.event_edit, name="event-edit"),
    path("events/<studio_id:event_id>/photos", events.event_upload, name="event-upload"),
    path("events/<studio_id:event_id>/attendees", attendees.event_attendees, name="event-attendees"),
    path(
        "events/<studio_id:event_id>/attendees/<studio_id:attendee_id>/reset-link",
        attendees.attendee_link_reset_view,
        name="attendee-reset-link",
    ),
    path(
        "events/<studio_id:event_id>/photos/<studio_id:photo_id>/withdraw",
        photos.photo_withdraw_view,
        name="photo-withdraw",
    ),
    path("events/<studio_id:event_id>/products", events.event_products, name="event-products"),
    path("events/<studio_id:event_id>/products/downloads", events.event_downloads_offer, name="event-downloads-offer"),
    path("events/<studio_id:event_id>/prices", events.event_prices, name="event-prices"),
    path("events/<studio_id:event_id>/prices/currency", events.event_prices_currency, name="event-prices-currency"),
    path(
        "events/<studio_id:event_id>/products/<studio_id:product_id>/active",
        events.product_active,
        name="product-active",
    ),
    path(
        "events/<studio_id:event_id>/products/<studio_id:product_id>/restock",
        events.product_restock,
        name="product-restock",
    ),
    path("sales/", money.sales, name="sales"),
    path("sales.csv", money.sales_export, name="sales-export"),
    path("sales/<uuid:checkout_id>/", money.sale_detail, name="sale"),
    path("sales/<uuid:checkout_id>/ship", money.sale_ship, name="sale-ship"),
    path("sales/<uuid:checkout_id>/refund", money.sale_refund, name="sale-refund"),
    path("wallet/", money.wallet, name="wallet"),
    path("wallet/statement.csv", money.wallet_statement, name="wallet-statement"),
    path("wallet/payout-request", money.wallet_payout_request, name="payout-request"),
    path("wallet/destinations", money.wallet_destination, name="destination"),
    path("announcements/", announcements.announcements, name="announcements"),
    path("announcements/<studio_id:announcement_id>/", announcements.announcement_detail, name="announcement"),
    path(
        "announcements/<studio_id:announcement_id>/send", announcements.announcement_send_view, name="announcement-send"
    ),
    path("announcements/<studio_id:announcement_id>/edit", announcements.announcement_edit, name="announcement-edit"),
    path(
        "announcements/<studio_id:announcement_id>/delete",
        announcements.announcement_delete_view,
        name="announcement-delete",
    ),
    path("api-keys/", api_keys.api_keys, name="api-keys"),
    path("api-keys/<studio_id:api_key_id>/revoke", api_keys.api_key_revoke_view, name="api-key-revoke"),
    path("members/", members.members, name="members"),
    path("members/<studio_id:user_id>/role", members.member_role, name="member-role"),
    path("members/<studio_id:user_id>/remove", members.member_remove_view, name="member-remove"),
    path(
        "members/invitations/<studio_id:invitation_id>/withdraw",
        members.invitation_withdraw_view,
        name="invitation-withdraw",
    ),
    path("members/invitations/<studio_id:invitation_id>/renew", members.invitation_renew_view, name="invitation-renew"),
]

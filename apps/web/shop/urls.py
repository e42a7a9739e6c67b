"""The shoppers' pages (mounted at /s/ by apps/web/urls.py).

The studio's own pages (cart, checkouts, orders) come before the event routes; no event may have
one of their names as its slug (`catalog.models.RESERVED_EVENT_SLUGS`, a check constraint).
"""

from django.urls import URLPattern, path

from apps.web.shop.views import browse, cart, checkout, findme, orders

app_name = "shop"
urlpatterns: list[URLPattern] = [
    path("<slug:studio_slug>/", browse.studio_home, name="studio"),
    path("<slug:studio_slug>/cart/", cart.cart_show, name="cart"),
    path("<slug:studio_slug>/cart/update", cart.cart_update, name="cart-update"),
    path("<slug:studio_slug>/cart/remove", cart.cart_remove, name="cart-remove"),
    path("<slug:studio_slug>/cart/checkout", cart.checkout_submit, name="checkout-create"),
    path("<slug:studio_slug>/checkouts/<uuid:checkout_id>/", checkout.checkout_page, name="checkout"),
    path("<slug:studio_slug>/checkouts/<uuid:checkout_id>/status", checkout.checkout_status, name="checkout-status"),
    path(
        "<slug:studio_slug>/checkouts/<uuid:checkout_id>/refill", checkout.checkout_refill_cart, name="checkout-refill"
    ),
    path("<slug:studio_slug>/orders/", orders.order_lookup, name="orders"),
    # Before the token route: a token always holds a ":" (apps/commerce/order_links.py), so it is never "sent".
    path("<slug:studio_slug>/orders/sent", orders.order_lookup_sent, name="orders-sent"),
    path("<slug:studio_slug>/orders/<str:token>", orders.order_link_open, name="order-link"),
    path("<slug:studio_slug>/<slug:event_slug>/", browse.event_gallery, name="event"),
    path("<slug:studio_slug>/<slug:event_slug>/photos/<int:photo_id>/", browse.photo_detail, name="photo"),
    path("<slug:studio_slug>/<slug:event_slug>/find-me", findme.find_me, name="find-me"),
]

"""Plumbing shared by the shop's views: the studio from the URL, page rendering with the
base template's context, the 404 and message pages, and the access-code gate."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from apps.core.problems import NotFound
from apps.web.shop.selectors import ShopEvent, Studio, studio_by_slug
from apps.web.shop.session import Cart, locked

ShopView = Callable[..., HttpResponse]


def render_page(
    request: HttpRequest,
    template: str,
    *,
    studio: Studio | None,
    context: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """Render a shop page: the studio and its cart's item count reach the base template. Pages
    show the shopper's own cart (and unlocked events), so no shared cache may keep them."""
    base: dict[str, Any] = {"studio": studio, "cart_count": 0}
    if studio is not None:
        base["cart_count"] = Cart(request.session, studio.id).item_count()
    response = render(request, template, {**base, **(context or {})}, status=status)
    response["Cache-Control"] = "private, no-store"
    return response


def not_found(request: HttpRequest, studio: Studio | None, detail: str = "") -> HttpResponse:
    return render_page(request, "shop/not_found.html", studio=studio, context={"detail": detail}, status=404)


def message_page(
    request: HttpRequest,
    *,
    studio: Studio,
    title: str,
    message: str,
    status: int,
    retry_after: int | None = None,
    back_url: str = "",
) -> HttpResponse:
    response = render_page(
        request,
        "shop/message.html",
        studio=studio,
        context={"title": title, "message": message, "back_url": back_url},
        status=status,
    )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def shop_view(view: ShopView) -> ShopView:
    """Resolve `studio_slug` into the studio (passed to the view as `studio`) and turn every
    not-found refusal (unknown studio, event, photo, product, checkout) into the shop's 404 page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, studio_slug: str, **kwargs: Any) -> HttpResponse:
        try:
            studio = studio_by_slug(slug=studio_slug)
        except NotFound:
            return not_found(request, None)
        try:
            return view(request, studio, **kwargs)
        except NotFound:
            return not_found(request, studio)

    return wrapper


def event_url(studio: Studio, event: ShopEvent) -> str:
    return reverse("shop:event", kwargs={"studio_slug": studio.slug, "event_slug": event.slug})


def is_locked(request: HttpRequest, event: ShopEvent) -> bool:
    """A protected event whose code this session has not entered: its photos stay hidden."""
    return locked(request, event_id=event.id, protected=event.protected, fingerprint=event.access_fingerprint)


_EVENT_PAGES = frozenset({"shop:event", "shop:photo", "shop:find-me"})


def safe_next(request: HttpRequest, studio: Studio, event: ShopEvent, candidate: str) -> str:
    """Where to go after unlocking: a page of this event (a local path that resolves to one, so
    `/s/<studio>/<event>/../..` cannot lead elsewhere), else its gallery."""
    gallery = event_url(studio, event)
    if not candidate or not url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()}):
        return gallery
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return gallery
    try:
        match = resolve(parts.path)
    except Resolver404:
        return gallery
    if (
        match.view_name in _EVENT_PAGES
        and match.kwargs.get("studio_slug") == studio.slug
        and match.kwargs.get("event_slug") == event.slug
    ):
        return candidate
    return gallery


def locked_page(
    request: HttpRequest,
    studio: Studio,
    event: ShopEvent,
    *,
    status: int,
    error: str = "",
    next_url: str = "",
    retry_after: int | None = None,
) -> HttpResponse:
    """The access-code form of a protected event (never its photos)."""
    response = render_page(
        request,
        "shop/access_code.html",
        studio=studio,
        context={"event": event, "error": error, "next_url": next_url, "action": event_url(studio, event)},
        status=status,
    )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response

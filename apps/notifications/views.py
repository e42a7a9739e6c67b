"""Attendee-facing pages (no account: the signed link in their e-mails is the credential).

* `GET /attendee/<token>/`: their notifications, newest first, unread ones marked, 50 a page
  (`?older_than=<id>`).
* `POST /attendee/<token>/read`: mark one (`notification` field) or all read.
* `GET /attendee/<token>/unsubscribe`: a confirmation form; `POST` unsubscribes. The POST also
  takes RFC 8058 one-click requests (`List-Unsubscribe=One-Click`) that mail clients send.

The POSTs are exempt from CSRF: the token in the path is the only credential, and a page that
could forge the request already holds it. Every page counts against the client address's
`ATTENDEE_PAGE_RATE` (`apps.notifications.pages`): over it, a 429 problem that writes nothing.
"""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.core.problems import problem_page_or_json
from apps.notifications.pages import attendee_or_problem, attendee_page_limited
from apps.notifications.selectors import notifications_page, unread_count
from apps.notifications.services import attendee_unsubscribe, notifications_mark_read
from apps.tenancy.context import tenant_context

INBOX_PAGE_SIZE = 50


@require_GET
@attendee_page_limited
def inbox(request: HttpRequest, token: str) -> HttpResponse:
    attendee = attendee_or_problem(request, token)
    if isinstance(attendee, HttpResponse):
        return attendee
    raw = request.GET.get("older_than", "")
    older_than = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
    with tenant_context(attendee.tenant_id):
        notifications, more = notifications_page(
            tenant_id=attendee.tenant_id, attendee_id=attendee.pk, older_than=older_than, size=INBOX_PAGE_SIZE
        )
        unread = unread_count(tenant_id=attendee.tenant_id, attendee_id=attendee.pk)
    context = {
        "attendee": attendee,
        "notifications": notifications,
        "unread": unread,
        "token": token,
        "older_url": f"?older_than={notifications[-1].pk}" if more else "",
        "is_first_page": older_than is None,
    }
    response = render(request, "attendee/inbox.html", context)
    response["Cache-Control"] = "private, no-store"
    return response


@csrf_exempt
@require_POST
@attendee_page_limited
def mark_read(request: HttpRequest, token: str) -> HttpResponse:
    attendee = attendee_or_problem(request, token)
    if isinstance(attendee, HttpResponse):
        return attendee
    raw = request.POST.get("notification", "")
    if raw and not re.fullmatch(r"[0-9]{1,18}", raw):
        return problem_page_or_json(
            request, 400, "Bad request", "`notification` must be a notification id.", slug="bad-request"
        )
    with tenant_context(attendee.tenant_id):
        notifications_mark_read(
            tenant_id=attendee.tenant_id, attendee_id=attendee.pk, notification_ids=[int(raw)] if raw else None
        )
    return HttpResponseRedirect(reverse("attendee-inbox", kwargs={"token": token}), status=303)


@csrf_exempt
@require_http_methods(["GET", "POST"])
@attendee_page_limited
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    attendee = attendee_or_problem(request, token)
    if isinstance(attendee, HttpResponse):
        return attendee
    done = attendee.unsubscribed_at is not None
    if request.method == "POST":
        with tenant_context(attendee.tenant_id):
            attendee_unsubscribe(tenant_id=attendee.tenant_id, attendee_id=attendee.pk)
        done = True
    response = render(request, "attendee/unsubscribe.html", {"attendee": attendee, "done": done, "token": token})
    response["Cache-Control"] = "private, no-store"  # it shows their e-mail address, as the inbox does
    return response

"""Attendee-facing pages (no account: the signed link in their e-mails is the credential).

* `GET /attendee/<token>/`: their notifications, newest first, unread ones marked, 50 a page
  (`?older_than=<id>`).
* `POST /attendee/<token>/read`: mark one (`notification` field) or all read; the page's "mark
  all" sends `upto`, the newest id it knew of, so what arrived after it was shown stays unread.
* `GET /attendee/<token>/unsubscribe`: a confirmation form; `POST` unsubscribes. The POST also
  takes RFC 8058 one-click requests (`List-Unsubscribe=One-Click`) that mail clients send. The
  one page a replaced link still opens (`apps.notifications.selectors`).
* `POST /attendee/<token>/new-link`: "someone else has this link": the link is replaced and the
  new one e-mailed to the attendee's own address (`apps.notifications.attendee_links`); 303 to
  `GET /attendee/link-sent/<note>`, which says so with the address masked (the signed note).
* `POST /attendee/<token>/resubscribe`: announcements by e-mail again, after an unsubscribe.

The POSTs are exempt from CSRF: the token in the path is the only credential, and a page that
could forge the request already holds it. Every page counts against the client address's
`ATTENDEE_PAGE_RATE` (`apps.notifications.pages`): over it, a 429 problem that writes nothing.
The unsubscribe POST with a token we signed counts against that attendee instead (mail providers
send one-click unsubscribes from servers many of their users share). The POSTs that write
(mark read, resubscribe) check the link's generation under the attendee's row lock, in the
write's transaction: a link replaced while the request was in flight writes nothing (404).
"""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.core.problems import domain_error_page, problem_page_or_json
from apps.notifications.attendee_links import (
    attendee_link_replace,
    link_sent_note,
    link_sent_note_read,
    masked_email,
)
from apps.notifications.pages import (
    attendee_or_problem,
    attendee_page_limited,
    unsubscribe_limited,
    unsubscribing_attendee_or_problem,
)
from apps.notifications.selectors import (
    LINK_INVALID_DETAIL,
    AttendeeLinkInvalid,
    newest_notification_id,
    notifications_page,
    unread_count,
)
from apps.notifications.services import attendee_resubscribe, attendee_unsubscribe, notifications_mark_read
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
        # Read before the page: "mark all read" then never covers one that arrived while it rendered.
        newest = newest_notification_id(tenant_id=attendee.tenant_id, attendee_id=attendee.pk)
        notifications, more = notifications_page(
            tenant_id=attendee.tenant_id, attendee_id=attendee.pk, older_than=older_than, size=INBOX_PAGE_SIZE
        )
        unread = unread_count(tenant_id=attendee.tenant_id, attendee_id=attendee.pk)
    context = {
        "attendee": attendee,
        "notifications": notifications,
        "unread": unread,
        "newest": newest,
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
    raw, upto = request.POST.get("notification", ""), request.POST.get("upto", "")
    if raw and not re.fullmatch(r"[0-9]{1,18}", raw):
        return problem_page_or_json(
            request, 400, "Bad request", "`notification` must be a notification id.", slug="bad-request"
        )
    if upto and not re.fullmatch(r"[0-9]{1,18}", upto):
        return problem_page_or_json(
            request, 400, "Bad request", "`upto` must be a notification id.", slug="bad-request"
        )
    try:
        with tenant_context(attendee.tenant_id):
            notifications_mark_read(
                tenant_id=attendee.tenant_id,
                attendee_id=attendee.pk,
                link_generation=attendee.link_generation,
                notification_ids=[int(raw)] if raw else None,
                upto=int(upto) if upto else None,
            )
    except AttendeeLinkInvalid as exc:
        return domain_error_page(request, exc)  # replaced mid-request: the 404 of any invalid link
    return HttpResponseRedirect(reverse("attendee-inbox", kwargs={"token": token}), status=303)


@csrf_exempt
@require_http_methods(["GET", "POST"])
@unsubscribe_limited
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """Also for a replaced link (an old e-mail's one-click): its page shows the address masked
    and links nowhere, since it opens nothing else."""
    found = unsubscribing_attendee_or_problem(request, token)
    if isinstance(found, HttpResponse):
        return found
    attendee, current = found
    done = attendee.unsubscribed_at is not None
    if request.method == "POST":
        with tenant_context(attendee.tenant_id):
            attendee_unsubscribe(tenant_id=attendee.tenant_id, attendee_id=attendee.pk)
        done = True
    context = {
        "attendee": attendee,
        "done": done,
        "token": token,
        "current": current,
        "shown_email": attendee.email if current else masked_email(attendee.email),
    }
    response = render(request, "attendee/unsubscribe.html", context)
    response["Cache-Control"] = "private, no-store"  # it shows their e-mail address, as the inbox does
    return response


@csrf_exempt
@require_POST
@attendee_page_limited
def new_link(request: HttpRequest, token: str) -> HttpResponse:
    """Replace the link and e-mail the new one; 303 to the page saying so. A request whose link was
    replaced before its own replacement committed (a second click, the studio's reset) bumps
    nothing and gets the 404 of any replaced link: no e-mail is on its way from it."""
    attendee = attendee_or_problem(request, token)
    if isinstance(attendee, HttpResponse):
        return attendee
    with tenant_context(attendee.tenant_id):
        replaced = attendee_link_replace(
            tenant_id=attendee.tenant_id, attendee_id=attendee.pk, generation=attendee.link_generation
        )
    if not replaced:
        # Replaced meanwhile, and not by this request (a racing click of the same page, or the
        # studio's reset): no e-mail was queued here, so say what any replaced link gets.
        return domain_error_page(request, AttendeeLinkInvalid(LINK_INVALID_DETAIL))
    return HttpResponseRedirect(reverse("attendee-link-sent", kwargs={"token": link_sent_note(attendee)}), status=303)


@require_GET
@attendee_page_limited
def link_sent(request: HttpRequest, token: str) -> HttpResponse:
    """The page saying a new link was e-mailed to j***@example.com. `token` is the signed note of
    `new_link`, not a credential (named so that logs redact it too, as every attendee path's)."""
    note = link_sent_note_read(token)
    if note is None:
        return problem_page_or_json(request, 404, "Page not found", "This page has expired.", slug="not-found")
    response = render(request, "attendee/link_sent.html", note)
    response["Cache-Control"] = "private, no-store"
    return response


@csrf_exempt
@require_POST
@attendee_page_limited
def resubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """Announcements by e-mail again (a second POST changes nothing); 303 to the inbox."""
    attendee = attendee_or_problem(request, token)
    if isinstance(attendee, HttpResponse):
        return attendee
    try:
        with tenant_context(attendee.tenant_id):
            attendee_resubscribe(
                tenant_id=attendee.tenant_id, attendee_id=attendee.pk, link_generation=attendee.link_generation
            )
    except AttendeeLinkInvalid as exc:
        return domain_error_page(request, exc)  # replaced mid-request: the 404 of any invalid link
    return HttpResponseRedirect(reverse("attendee-inbox", kwargs={"token": token}), status=303)

"""submit_once: one effect per rendered form, whatever the browser does with the POST."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import connection
from django.http import HttpRequest
from django.test import RequestFactory

from apps.catalog.models import Event
from apps.core.problems import InvalidInput
from apps.tenancy.context import system_context, tenant_context
from apps.web.submit_once import (
    SubmissionConflict,
    SubmissionInFlight,
    SubmissionMissingNonce,
    form_nonce,
    session_caller,
    submit_once,
)


def _post(data: dict[str, str], session_key: str | None = None) -> HttpRequest:
    request = RequestFactory().post("/s/studio/events/new", data)
    SessionMiddleware(lambda r: None).process_request(request)  # type: ignore[arg-type,return-value]
    if session_key is not None:
        request.session = type(request.session)(session_key)
    return request


def _create_event(tenant_id: int, slug: str) -> Any:
    def effect() -> str:
        with tenant_context(tenant_id):
            event = Event.objects.create(tenant_id=tenant_id, title=slug, slug=slug, date=dt.date(2026, 11, 1))
        return f"/s/events/{event.pk}/"

    return effect


def _events(tenant_id: int) -> int:
    with system_context("test"):
        return Event.objects.filter(tenant_id=tenant_id).count()


@pytest.mark.django_db
def test_a_resubmitted_form_redirects_to_the_first_outcome_and_writes_once(tenant_a: Any) -> None:
    # given: one rendered form (one nonce), submitted twice from the same session
    tenant_id = tenant_a.org.pk
    nonce = form_nonce()
    first = _post({"nonce": nonce, "slug": "gala", "csrfmiddlewaretoken": "a"})
    caller = session_caller(first)
    response = submit_once(first, tenant_id=tenant_id, caller=caller, effect=_create_event(tenant_id, "gala"))
    again = _post({"nonce": nonce, "slug": "gala", "csrfmiddlewaretoken": "b"}, session_key=first.session.session_key)
    replay = submit_once(again, tenant_id=tenant_id, caller=caller, effect=_create_event(tenant_id, "gala-2"))
    # then: both land on the first event's page (303), and only one event exists
    assert response.status_code == replay.status_code == 303
    assert replay["Location"] == response["Location"]
    assert _events(tenant_id) == 1


@pytest.mark.django_db
def test_a_failed_effect_stores_nothing_so_the_same_form_can_be_sent_again(tenant_a: Any) -> None:
    tenant_id = tenant_a.org.pk
    nonce = form_nonce()

    def refuse() -> str:
        _create_event(tenant_id, "half")()
        raise InvalidInput("The date is in the past.")

    request = _post({"nonce": nonce, "slug": "x"})
    caller = session_caller(request)
    with pytest.raises(InvalidInput):
        submit_once(request, tenant_id=tenant_id, caller=caller, effect=refuse)
    assert _events(tenant_id) == 0  # the half-done effect rolled back
    # when: corrected and sent again with the same nonce
    response = submit_once(request, tenant_id=tenant_id, caller=caller, effect=_create_event(tenant_id, "x"))
    assert response.status_code == 303
    assert _events(tenant_id) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("nonce", ["\x00", "abc\x00def"], ids=["nul", "nul inside"])
def test_a_nonce_postgres_cannot_store_is_a_missing_nonce_not_a_500(tenant_a: Any, nonce: str) -> None:
    # given: a form posted with a nonce PostgreSQL text cannot hold (a forged or mangled post)
    tenant_id = tenant_a.org.pk
    request = _post({"nonce": nonce, "slug": "x"})
    # when / then: refused as a form without a valid nonce (400), nothing written
    with pytest.raises(SubmissionMissingNonce):
        submit_once(request, tenant_id=tenant_id, caller=session_caller(request), effect=_create_event(tenant_id, "x"))
    assert _events(tenant_id) == 0


@pytest.mark.django_db
def test_missing_nonce_and_changed_fields_are_refused(tenant_a: Any) -> None:
    tenant_id = tenant_a.org.pk
    request = _post({"slug": "x"})
    with pytest.raises(SubmissionMissingNonce):
        submit_once(request, tenant_id=tenant_id, caller=session_caller(request), effect=_create_event(tenant_id, "x"))
    nonce = form_nonce()
    first = _post({"nonce": nonce, "slug": "one"})
    caller = session_caller(first)
    submit_once(first, tenant_id=tenant_id, caller=caller, effect=_create_event(tenant_id, "one"))
    with pytest.raises(SubmissionConflict):
        submit_once(_post({"nonce": nonce, "slug": "two"}), tenant_id=tenant_id, caller=caller,
                    effect=_create_event(tenant_id, "two"))  # fmt: skip
    assert _events(tenant_id) == 1


@pytest.mark.django_db(transaction=True)
def test_a_second_submission_while_the_first_is_in_its_transaction_is_told_to_wait(tenant_a: Any) -> None:
    tenant_id = tenant_a.org.pk
    nonce = form_nonce()
    request = _post({"nonce": nonce, "slug": "slow"})
    caller = session_caller(request)
    inside, release = threading.Event(), threading.Event()
    outcome: list[Any] = []

    def slow_effect() -> str:
        inside.set()
        assert release.wait(60)
        return _create_event(tenant_id, "slow")()

    def first() -> None:
        try:
            outcome.append(submit_once(request, tenant_id=tenant_id, caller=caller, effect=slow_effect))
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(60)
    try:
        with pytest.raises(SubmissionInFlight):
            submit_once(_post({"nonce": nonce, "slug": "slow"}), tenant_id=tenant_id, caller=caller,
                        effect=_create_event(tenant_id, "slow-2"))  # fmt: skip
    finally:
        release.set()
        thread.join(60)
    assert outcome[0].status_code == 303
    assert _events(tenant_id) == 1


@pytest.mark.django_db
def test_a_form_whose_key_cannot_be_stored_keeps_no_effect_and_is_not_redirected(
    tenant_a: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: storing the form's key fails with a unique violation (another request stored it
    # although this one held its lock: the protocol's "cannot happen" branch)
    from django.db import IntegrityError

    from apps.idempotency import protocol

    def collide(**kwargs: Any) -> None:
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(protocol, "idempotency_key_record", collide)
    request = _post({"nonce": form_nonce(), "slug": "twin"})
    # when: the form is submitted
    with pytest.raises(SubmissionInFlight):
        submit_once(request, tenant_id=tenant_a.org.pk, caller=session_caller(request),
                    effect=_create_event(tenant_a.org.pk, "twin"))  # fmt: skip
    # then: the effect rolled back with the key, and the browser is not sent on as if it worked
    assert _events(tenant_a.org.pk) == 0


def _with_messages(request: HttpRequest) -> HttpRequest:
    from django.contrib.messages.middleware import MessageMiddleware

    MessageMiddleware(lambda r: None).process_request(request)  # type: ignore[arg-type,return-value]
    return request


def _messages_of(request: HttpRequest) -> list[str]:
    from django.contrib import messages

    return [str(message) for message in messages.get_messages(request)]


@pytest.mark.django_db
def test_a_message_the_effect_added_is_dropped_when_its_effect_rolls_back(
    tenant_a: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a concurrent submission of the same form stored its key first, so this one's effect,
    # which had told the user it worked, rolls back with the key (see the test above)
    from django.contrib import messages
    from django.db import IntegrityError

    from apps.idempotency import protocol

    def collide(**kwargs: Any) -> None:
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(protocol, "idempotency_key_record", collide)
    request = _with_messages(_post({"nonce": form_nonce(), "slug": "twin"}))
    messages.info(request, "Shown before the form.")

    def effect() -> str:
        url = _create_event(tenant_a.org.pk, "twin")()
        messages.success(request, "Event created.")
        return url

    # when: the form is submitted
    with pytest.raises(SubmissionInFlight):
        submit_once(request, tenant_id=tenant_a.org.pk, caller=session_caller(request), effect=effect)
    # then: no success message is left to show on the page that says the form is still in flight,
    # and the message queued before the form is kept
    assert _messages_of(request) == ["Shown before the form."]


@pytest.mark.django_db
def test_a_message_added_before_the_effect_refused_is_dropped_and_one_that_worked_is_kept(tenant_a: Any) -> None:
    from django.contrib import messages

    tenant_id = tenant_a.org.pk
    nonce = form_nonce()

    def refuse_late() -> str:
        messages.success(request, "Half done.")
        raise InvalidInput("The date is in the past.")

    request = _with_messages(_post({"nonce": nonce, "slug": "x"}))
    with pytest.raises(InvalidInput):
        submit_once(request, tenant_id=tenant_id, caller=session_caller(request), effect=refuse_late)
    assert _messages_of(request) == []

    again = _with_messages(_post({"nonce": nonce, "slug": "x"}, session_key=request.session.session_key))

    def create() -> str:
        url = _create_event(tenant_id, "x")()
        messages.success(again, "Event created.")
        return url

    submit_once(again, tenant_id=tenant_id, caller=session_caller(again), effect=create)
    assert _messages_of(again) == ["Event created."]

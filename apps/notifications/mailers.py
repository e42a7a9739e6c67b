"""How announcement e-mails leave: one interface, two implementations (ANNOUNCEMENT_MAILER).

* `django` (default): Django's mail backend (SMTP in production: EMAIL_HOST ...), one message
  at a time over one connection. A recipient the server refuses for good (5xx) fails alone; a
  recipient it defers (4xx: a rate limit, "try again later") and any other error stop the
  batch, and the rest stays unsent.
* `postmark`: Postmark's batch API, `POST {POSTMARK_API_URL}/email/batch` with
  `X-Postmark-Server-Token`, up to 500 messages per request on the broadcast message stream
  (POSTMARK_MESSAGE_STREAM). The answer lists one result per message, in order: ErrorCode 0 is
  accepted; 300 (invalid address) and 406 (inactive recipient: bounced, unsubscribed, spam
  complaint) are final refusals; any other code leaves that message for a retry. A request that
  gets no answer, or a 5xx for the whole batch, stops it: nothing in it is counted sent, so a
  retry may repeat what Postmark did accept (the same `Message-ID`). A 4xx for the whole batch
  (429, its rate limit; 401, a wrong token; 422, e.g. a From address that is not a verified
  sender signature) stops it too, but Postmark took none of it: its messages wait without
  spending an attempt, so neither a long throttle nor a configuration error fails anyone.

A mailer never raises for a delivery problem: it reports what was sent, refused and left.
It hands nothing over past `deadline` (a `time.monotonic()` value: the caller's claim on the
messages, less the time one hand-over may take): a message handed over after another sender may
have claimed it would reach its recipient twice. What it did not hand over is left, untried.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from apps.payments.providers.http import HttpRequest, HttpTransport, TransportError, UrllibTransport

POSTMARK_BATCH_LIMIT = 500
POSTMARK_FINAL_CODES = frozenset({300, 406})


@dataclass(frozen=True)
class OutgoingEmail:
    key: int  # the delivery id
    to: str
    subject: str
    body: str
    headers: dict[str, str]


@dataclass
class MailReport:
    sent: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # final refusals: key -> reason
    tried: list[int] = field(default_factory=list)  # handed over without a final answer
    interrupted: str = ""  # why the rest was not sent (empty when everything got an answer)


CLAIM_RAN_OUT = "the claim on the rest ran out before they could be handed over"


def claim_deadline(claim_seconds: float) -> float:
    """The `deadline` of a mailer whose caller claimed its messages for `claim_seconds` just now:
    the last moment a message may be handed over and still be answered (EMAIL_TIMEOUT, at most
    half the claim) before the claim lapses."""
    return time.monotonic() + claim_seconds - min(float(settings.EMAIL_TIMEOUT), claim_seconds / 2)


def _past(deadline: float | None, report: MailReport) -> bool:
    if deadline is not None and time.monotonic() >= deadline:
        report.interrupted = report.interrupted or CLAIM_RAN_OUT
        return True
    return False


class AnnouncementMailer(Protocol):
    def send(self, messages: list[OutgoingEmail], *, from_email: str, deadline: float | None = None) -> MailReport:
        """Send the messages, none after `deadline`; report each as sent, refused (final) or
        neither (left for a retry)."""
        ...


class DjangoMailer:
    """One connection of Django's configured mail backend for the whole list."""

    def send(self, messages: list[OutgoingEmail], *, from_email: str, deadline: float | None = None) -> MailReport:
        import smtplib

        report = MailReport()
        connection = get_connection(fail_silently=False)
        try:
            connection.open()
            for message in messages:
                if _past(deadline, report):
                    break
                email = EmailMessage(
                    subject=message.subject,
                    body=message.body,
                    from_email=from_email,
                    to=[message.to],
                    headers=message.headers,
                    connection=connection,
                )
                try:
                    email.send()
                except smtplib.SMTPRecipientsRefused as exc:
                    reason = f"{type(exc).__name__}: {exc}"[:2000]
                    if all(code >= 500 for code, _ in exc.recipients.values()):
                        report.refused[message.key] = reason  # 5xx: this address, for good
                        continue
                    # 4xx (a rate limit, greylisting, "try again later"): not refused; the rest waits
                    report.tried.append(message.key)
                    report.interrupted = reason
                    break
                except ValueError as exc:  # an address (or header) Django refuses
                    report.refused[message.key] = f"{type(exc).__name__}: {exc}"[:2000]
                except smtplib.SMTPResponseException as exc:
                    if exc.smtp_code >= 500 and not isinstance(exc, smtplib.SMTPSenderRefused):
                        report.refused[message.key] = f"{type(exc).__name__}: {exc}"[:2000]  # this message, for good
                        continue
                    report.tried.append(message.key)
                    report.interrupted = f"{type(exc).__name__}: {exc}"[:2000]
                    break
                except OSError as exc:  # SMTPException is an OSError: the server went away, timed out ...
                    report.tried.append(message.key)
                    report.interrupted = f"{type(exc).__name__}: {exc}"[:2000]
                    break
                else:
                    report.sent.append(message.key)
        except OSError as exc:  # opening the connection failed: nothing was sent
            report.interrupted = f"{type(exc).__name__}: {exc}"[:2000]
        finally:
            try:
                connection.close()
            except OSError:
                pass  # the server already went away; what was sent is recorded
        return report


class PostmarkMailer:
    """Postmark's batch endpoint (see the module docstring)."""

    def __init__(self, *, transport: HttpTransport | None = None) -> None:
        self.transport = transport or UrllibTransport()
        self.url = settings.POSTMARK_API_URL.rstrip("/") + "/email/batch"
        self.token = settings.POSTMARK_SERVER_TOKEN
        self.stream = settings.POSTMARK_MESSAGE_STREAM

    def send(self, messages: list[OutgoingEmail], *, from_email: str, deadline: float | None = None) -> MailReport:
        report = MailReport()
        for start in range(0, len(messages), POSTMARK_BATCH_LIMIT):
            if _past(deadline, report):
                break
            self._batch(messages[start : start + POSTMARK_BATCH_LIMIT], from_email=from_email, report=report)
            if report.interrupted:
                break
        return report

    def _batch(self, batch: list[OutgoingEmail], *, from_email: str, report: MailReport) -> None:
        body = [
            {
                "From": from_email,
                "To": message.to,
                "Subject": message.subject,
                "TextBody": message.body,
                "Headers": [{"Name": name, "Value": value} for name, value in message.headers.items()],
                "MessageStream": self.stream,
            }
            for message in batch
        ]
        request = HttpRequest(
            method="POST",
            url=self.url,
            headers={
                "Accept": "application/json",
                "Content-Type": "application/json",
                "X-Postmark-Server-Token": self.token,
            },
            body=json.dumps(body).encode(),
        )
        try:
            response = self.transport.send(request, timeout=float(settings.EMAIL_TIMEOUT))
        except TransportError as exc:
            report.tried.extend(message.key for message in batch)
            report.interrupted = f"postmark: no answer: {exc}"[:2000]
            return
        if response.status == 429:  # throttled: Postmark took none of them, so none was tried
            report.interrupted = f"postmark: HTTP 429 (rate limited): {response.body[:500]!r}"
            return
        if 400 <= response.status < 500:
            # The request refused as a whole (401 token, 422 sender signature, account or request
            # problem): Postmark took none of them, so none was tried. They wait for the fix, as
            # an unreachable service's do, rather than fail everyone on a configuration error.
            report.interrupted = f"postmark: HTTP {response.status}: {response.body[:500]!r}"
            return
        if response.status != 200:
            report.tried.extend(message.key for message in batch)
            report.interrupted = f"postmark: HTTP {response.status}: {response.body[:500]!r}"
            return
        try:
            results = json.loads(response.body)
            if not isinstance(results, list) or len(results) != len(batch):
                raise ValueError(f"{len(batch)} messages, answer {type(results).__name__}")
            codes = [(int(r["ErrorCode"]), str(r.get("Message", ""))) for r in results]
        except (ValueError, TypeError, KeyError) as exc:
            report.tried.extend(message.key for message in batch)
            report.interrupted = f"postmark: unreadable answer: {exc}"[:2000]
            return
        for message, (code, text) in zip(batch, codes, strict=True):
            if code == 0:
                report.sent.append(message.key)
            elif code in POSTMARK_FINAL_CODES:
                report.refused[message.key] = f"postmark {code}: {text}"[:2000]
            else:
                report.tried.append(message.key)
                report.interrupted = report.interrupted or f"postmark {code}: {text}"[:2000]


def get_mailer() -> AnnouncementMailer:
    if settings.ANNOUNCEMENT_MAILER == "postmark":
        return PostmarkMailer()
    return DjangoMailer()

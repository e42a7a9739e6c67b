"""Signed deliveries for each provider, computed here from locally generated secrets and keys
(independently of the adapters), for the webhook endpoint tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.core.cache import cache

PAYPAL_CERT_URL = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-darkroom-test"


def stripe_headers(body: bytes, *, secret: str | None = None, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    key = secret if secret is not None else settings.STRIPE_WEBHOOK_SECRETS[0]
    digest = hmac.new(key.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={ts},v1={digest}", "Content-Type": "application/json"}


def stripe_session_completed(*, checkout_id: str, amount_minor: int, event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:16]}",
            "type": "checkout.session.completed",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": f"cs_test_{uuid.uuid4().hex[:12]}",
                    "client_reference_id": checkout_id,
                    "payment_status": "paid",
                    "amount_total": amount_minor,
                    "currency": "eur",
                    "payment_intent": "pi_test_1",
                    "metadata": {"checkout_id": checkout_id},
                }
            },
        }
    ).encode()


def sandbox_headers(body: bytes, *, secret: str | None = None, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    key = secret if secret is not None else settings.SANDBOX_WEBHOOK_SECRET
    digest = hmac.new(key.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Sandbox-Signature": f"t={ts},v1={digest}", "Content-Type": "application/json"}


def flutterwave_headers(body: bytes, *, secret_hash: str | None = None) -> dict[str, str]:
    key = secret_hash if secret_hash is not None else settings.FLUTTERWAVE_SECRET_HASH
    signature = base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
    return {"flutterwave-signature": signature, "Content-Type": "application/json"}


def flutterwave_charge_completed(*, checkout_id: str, amount: str = "9.00", status: str = "successful") -> bytes:
    """A v3 `charge.completed` event: one charge attempt (a new charge id) for the checkout."""
    return json.dumps(
        {
            "event": "charge.completed",
            "data": {
                "id": 4_000_000 + uuid.uuid4().int % 1_000_000,
                "tx_ref": checkout_id,
                "amount": amount,
                "currency": "EUR",
                "status": status,
            },
        }
    ).encode()


def paypal_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def paypal_trust(key: rsa.RSAPrivateKey, url: str = PAYPAL_CERT_URL) -> None:
    """Put a locally made certificate for `url` where the adapter caches fetched ones (no network)."""
    cache.set(f"payments:paypal-cert:{hashlib.sha256(url.encode()).hexdigest()}", paypal_cert_pem(key), timeout=3600)


def paypal_cert_pem(key: rsa.RSAPrivateKey) -> bytes:
    """A self-signed certificate of `key`, valid from yesterday for 30 days, as PayPal serves one (PEM)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.sandbox.paypal.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def paypal_headers(body: bytes, key: rsa.RSAPrivateKey, *, cert_url: str = PAYPAL_CERT_URL) -> dict[str, str]:
    tid = str(uuid.uuid4())
    ttime = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = f"{tid}|{ttime}|{settings.PAYPAL_WEBHOOK_ID}|{zlib.crc32(body)}".encode()
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "PAYPAL-TRANSMISSION-ID": tid,
        "PAYPAL-TRANSMISSION-TIME": ttime,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
        "PAYPAL-CERT-URL": cert_url,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        "Content-Type": "application/json",
    }


def paypal_capture_completed(*, checkout_id: str, amount: str = "9.00", order_id: str | None = None) -> bytes:
    payload: dict[str, Any] = {
        "id": f"WH-{uuid.uuid4().hex[:12]}",
        "event_version": "1.0",
        "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "resource_type": "capture",
        "resource": {
            "id": f"CAP-{uuid.uuid4().hex[:8]}",
            "status": "COMPLETED",
            "amount": {"currency_code": "EUR", "value": amount},
            "custom_id": checkout_id,
            "supplementary_data": {"related_ids": {"order_id": order_id or f"ORDER-{uuid.uuid4().hex[:8]}"}},
        },
    }
    return json.dumps(payload).encode()

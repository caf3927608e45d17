"""A real local HTTP server speaking the Payment Service's §7 wire format, for integration tests.

Runs in-process on 127.0.0.1 (a free port). Each test steers it: fail the next N requests with
500 (optionally after creating the payment, as when an answer is lost), answer 429, hang, settle
a payment, and build correctly (or wrongly) signed webhooks. Every request is recorded, so a test
can check which Idempotency-Keys were sent.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from integrations.payments.webhook import webhook_sign

PAYMENT_PATH = re.compile(r"^/api/v1/payments/(?P<payment_id>[\w-]+)$")
REFUND_PATH = re.compile(r"^/api/v1/payments/(?P<payment_id>[\w-]+)/refund$")


@dataclass
class StubRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address) -> None:
        """A client that gave up on a hanging answer closes the socket; that is expected."""


class PaymentServiceStub:
    def __init__(self, *, api_key: str | None = None, webhook_secret: str | None = None):
        self.api_key = api_key or "stub-api-key"
        self.webhook_secret = webhook_secret or "stub-whsec"
        self.payments: dict[str, dict] = {}
        self.requests: list[StubRequest] = []
        self.fail_next = 0  # answer 500 to the next N requests
        self.fail_after_create = False  # ... but a failing create still creates the payment
        self.rate_limit_next = 0  # answer 429 (Retry-After: 0) to the next N requests
        self.hang_seconds = 0.0  # wait this long before answering any request
        # A refund's answered status per payment (default "refunded"): "pending", "failed"...
        self.refund_status: dict[str, str] = {}
        # Payments whose refund the provider refuses (422: a person must look at it).
        self.refund_refused: set[str] = set()
        self._by_key: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _QuietServer | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> PaymentServiceStub:
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- what tests look at and steer -----------------------------------------------------

    def requests_to(self, suffix: str, method: str = "POST") -> list[StubRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    @property
    def create_requests(self) -> list[StubRequest]:
        return self.requests_to("/create")

    def settle(self, payment_id: str, status: str) -> None:
        with self._lock:
            self.payments[payment_id]["status"] = status

    def webhook(
        self,
        payment_id: str,
        event_type: str = "payment.succeeded",
        *,
        event_id: str | None = None,
        amount: str | None = None,
        currency: str | None = None,
        secret: str | None = None,
    ) -> tuple[bytes, str]:
        """A webhook body and its X-Signature header, as the Payment Service would send."""
        with self._lock:
            payment = self.payments[payment_id]
            body = json.dumps(
                {
                    "event_id": event_id or f"evt_{uuid.uuid4().hex}",
                    "type": event_type,
                    "payment_id": payment_id,
                    "booking_id": payment["booking_id"],
                    "amount": amount or payment["amount"],
                    "currency": currency or payment["currency"],
                    "occurred_at": timezone.now().isoformat(),
                }
            ).encode()
        return body, webhook_sign(body=body, secret=secret or self.webhook_secret)

    # --- the wire format ------------------------------------------------------------------

    def _answer(self, method: str, path: str, headers: dict[str, str], body: dict):
        """(status, json body, extra headers) for one request."""
        with self._lock:
            self.requests.append(StubRequest(method, path, headers, body))
        if self.hang_seconds:
            self._stopping.wait(self.hang_seconds)
        if headers.get("x-api-key") != self.api_key:
            return 401, {"error": "bad api key"}, {}
        with self._lock:
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                return 429, {"error": "slow down"}, {"Retry-After": "0"}
            if self.fail_next > 0:
                self.fail_next -= 1
                if self.fail_after_create and method == "POST" and path.endswith("/create"):
                    self._create(headers, body)
                return 500, {"error": "boom"}, {}
            if method == "POST" and path == "/api/v1/payments/create":
                return self._create(headers, body)
            if method == "POST" and (match := REFUND_PATH.match(path)):
                payment = self.payments.get(match["payment_id"])
                if payment is None:
                    return 404, {"error": "no such payment"}, {}
                if payment["payment_id"] in self.refund_refused:
                    return 422, {"error": "refund not allowed for this payment"}, {}
                status = self.refund_status.get(payment["payment_id"], "refunded")
                if status == "refunded":
                    payment["status"] = "refunded"
                return 200, {"payment_id": payment["payment_id"], "status": status}, {}
            if method == "GET" and (match := PAYMENT_PATH.match(path)):
                payment = self.payments.get(match["payment_id"])
                if payment is None:
                    return 404, {"error": "no such payment"}, {}
                fields = ("payment_id", "status", "amount", "currency")
                return 200, {k: payment[k] for k in fields}, {}
        return 404, {"error": "no such route"}, {}

    def _create(self, headers: dict[str, str], body: dict):
        key = headers.get("idempotency-key")
        if not key:
            return 400, {"error": "Idempotency-Key required"}, {}
        missing = [k for k in ("booking_id", "amount", "currency") if not body.get(k)]
        if missing:
            return 400, {"error": f"missing {missing}"}, {}
        payment_id = self._by_key.get(key)
        status = 200
        if payment_id is None:
            payment_id = f"pay_{uuid.uuid4().hex[:16]}"
            self._by_key[key] = payment_id
            self.payments[payment_id] = {
                "payment_id": payment_id,
                "status": "pending",
                "amount": f"{Decimal(body['amount']):.2f}",
                "currency": body["currency"],
                "booking_id": body["booking_id"],
            }
            status = 201
        return (
            status,
            {
                "payment_id": payment_id,
                "status": self.payments[payment_id]["status"],
                "checkout_url": f"{self.url}/checkout/{payment_id}",
            },
            {},
        )

    def _handler_class(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms wait for a delayed ACK before the body

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer, extra = stub._answer(self.command, self.path, headers, body)
                encoded = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(encoded)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(encoded)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args) -> None:
                """Silent: the test output is for the tests."""

        return Handler


@pytest.fixture
def payment_stub(settings):
    """A running stub Payment Service, with the settings pointing at it and tight timings so a
    slow or failing provider costs a test well under a second or two."""
    stub = PaymentServiceStub().start()
    settings.PAYMENT_SERVICE_URL = stub.url
    settings.PAYMENT_API_KEY = stub.api_key
    settings.PAYMENT_WEBHOOK_SECRET = stub.webhook_secret
    settings.PAYMENT_TIMEOUT_SECONDS = 0.5
    settings.PAYMENT_RETRY_BACKOFF_SECONDS = 0.01
    settings.PAYMENT_TOTAL_DEADLINE_SECONDS = 2.0
    try:
        yield stub
    finally:
        stub.stop()

"""The User, Clinic and Payment Services of the benchmark stack: one process, three loopback
ports, a few milliseconds of latency per answer (a same-region HTTP call), the wire format of
the contract (the clients in integrations/ parse it).

    python -m benchmarks.stubs --user-port 8811 --clinic-port 8812 --payment-port 8813 \
        --latency-ms 3 --owners 400

Owners are `bench-owner-<i>` with one dog `bench-pet-<i>`; the clinic is `bench-clinic` with
the service `bench-checkup` (no payment needed, cancellable until the start). The Payment
Service creates payments as pending and answers GET/refund; it never calls a webhook.
Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CLINIC_ID = "bench-clinic"
SERVICE_ID = "bench-checkup"
CLINIC = {"id": CLINIC_ID, "name": "Bench Vet", "timezone": "Europe/Berlin", "active": True}
SERVICES = [
    {
        "id": SERVICE_ID,
        "name": "Checkup",
        "duration_minutes": 15,
        "price": "40.00",
        "currency": "EUR",
        "species": ["dog", "cat"],
        "requires_payment": False,
        "cancellation_window_hours": 0,
    },
    {
        "id": "bench-dental",
        "name": "Dental",
        "duration_minutes": 15,
        "price": "60.00",
        "currency": "EUR",
        "species": ["dog", "cat"],
        "requires_payment": False,
        "cancellation_window_hours": 0,
    },
]
USER = re.compile(r"^/api/v1/users/bench-owner-(\d+)$")
PETS = re.compile(r"^/api/v1/users/bench-owner-(\d+)/pets$")
PAYMENT = re.compile(r"^/api/v1/payments/([\w-]+)(/refund)?$")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address) -> None:
        """A client that gave up closes its socket; nothing to report."""


def handler(route, latency: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The headers and the body go out in two writes. With Nagle's algorithm on, the body
        # waits for the client's delayed ACK of the headers: 40 ms on Linux, on every answer
        # of a kept-alive connection, where a same-region call takes a few.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            time.sleep(latency)
            status, answer = route(self.command, self.path.split("?", 1)[0], body)
            encoded = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args) -> None:
            """Quiet."""

    return Handler


def user_route(owners: int):
    def route(method: str, path: str, body: dict):
        if match := PETS.match(path):
            index = int(match[1])
            if index < owners:
                return 200, [{"id": f"bench-pet-{index}", "name": f"Rex {index}", "species": "dog"}]
        if match := USER.match(path):
            index = int(match[1])
            if index < owners:
                return 200, {
                    "id": f"bench-owner-{index}",
                    "name": f"Owner {index}",
                    "email": f"owner{index}@example.test",
                    "phone": "",
                    "preferences": {"channels": ["email", "push"], "locale": "en"},
                }
        return 404, {"error": "not found"}

    return route


def clinic_route(method: str, path: str, body: dict):
    if path == f"/api/v1/clinics/{CLINIC_ID}":
        return 200, CLINIC
    if path == f"/api/v1/clinics/{CLINIC_ID}/services":
        return 200, SERVICES
    return 404, {"error": "not found"}


def payment_route():
    payments: dict[str, dict] = {}
    lock = threading.Lock()

    def route(method: str, path: str, body: dict):
        with lock:
            if method == "POST" and path == "/api/v1/payments/create":
                payment_id = f"pay_{uuid.uuid4().hex[:16]}"
                payments[payment_id] = {
                    "payment_id": payment_id,
                    "status": "pending",
                    "amount": str(body.get("amount", "0")),
                    "currency": str(body.get("currency", "EUR")),
                }
                return 201, {
                    **payments[payment_id],
                    "checkout_url": f"https://pay.example.test/{payment_id}",
                }
            if match := PAYMENT.match(path):
                payment = payments.get(match[1])
                if payment is None:
                    return 404, {"error": "no such payment"}
                if match[2]:
                    payment["status"] = "refunded"
                return 200, payment
        return 404, {"error": "not found"}

    return route


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--user-port", type=int, default=8811)
    parser.add_argument("--clinic-port", type=int, default=8812)
    parser.add_argument("--payment-port", type=int, default=8813)
    parser.add_argument("--latency-ms", type=float, default=3.0)
    parser.add_argument("--owners", type=int, default=400)
    args = parser.parse_args(argv)
    latency = args.latency_ms / 1000
    servers = [
        _Server(("127.0.0.1", args.user_port), handler(user_route(args.owners), latency)),
        _Server(("127.0.0.1", args.clinic_port), handler(clinic_route, latency)),
        _Server(("127.0.0.1", args.payment_port), handler(payment_route(), latency)),
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("stubs ready", flush=True)
    stop.wait()
    for server in servers:
        server.shutdown()


if __name__ == "__main__":
    main()

"""The least each request must do. Search: a filtered, ordered ModelSerializer list of 20 with
DRF's page-number pagination (its COUNT included). Hold: one transaction that locks the slot
row, takes a unit with a conditional UPDATE and INSERTs the hold. Confirm: one transaction that
locks the hold, moves the unit from held to booked and marks the hold confirmed.

The guarded hold (`GuardedHoldCreate`, `/guarded/api/v1/reservations`) is the bare hold plus
the guarantees the service's contract keeps, each done the plainest way, and nothing else:
a yardstick of what a hold that keeps the same round trips costs without the rest of what the
service does (its docstring lists what it leaves out)."""

import datetime as dt
import json
import threading
import time
import uuid

import jwt
import redis
from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.db.models import F
from django.http import JsonResponse
from psycopg import errors as pg_errors
from rest_framework import exceptions, generics, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import Hold, Slot


class SlotSerializer(serializers.ModelSerializer):
    class Meta:
        model = Slot
        fields = [
            "id",
            "clinic_id",
            "service_id",
            "start_at",
            "end_at",
            "capacity",
            "booked_count",
            "held_count",
        ]


class SlotList(generics.ListAPIView):
    serializer_class = SlotSerializer

    def get_queryset(self):
        params = self.request.query_params
        queryset = Slot.objects.filter(
            clinic_id=params.get("clinic_id", ""), service_id=params.get("service_id", "")
        )
        if params.get("start_from"):
            queryset = queryset.filter(start_at__gte=params["start_from"])
        return queryset.order_by("start_at", "id")


class HoldInput(serializers.Serializer):
    slot_id = serializers.UUIDField()
    pet_id = serializers.CharField(max_length=64)


class HoldCreate(APIView):
    def post(self, request):
        body = HoldInput(data=request.data)
        body.is_valid(raise_exception=True)
        slot_id = body.validated_data["slot_id"]
        with transaction.atomic():
            Slot.objects.select_for_update().filter(id=slot_id).values_list("id").first()
            taken = Slot.objects.filter(
                id=slot_id, held_count__lt=F("capacity") - F("booked_count")
            ).update(held_count=F("held_count") + 1)
            if not taken:
                return Response({"error": {"code": "slot_unavailable"}}, status=409)
            hold = Hold.objects.create(
                slot_id=slot_id, user_id="owner", pet_id=body.validated_data["pet_id"]
            )
        return Response({"id": str(hold.id), "slot_id": str(slot_id)}, status=201)


class HoldConfirm(APIView):
    def post(self, request, hold_id):
        with transaction.atomic():
            hold = Hold.objects.select_for_update().filter(id=hold_id, status="held").first()
            if hold is None:
                return Response({"error": {"code": "reservation_not_held"}}, status=409)
            Slot.objects.filter(id=hold.slot_id).update(
                held_count=F("held_count") - 1, booked_count=F("booked_count") + 1
            )
            hold.status = "confirmed"
            hold.save(update_fields=["status"])
        return Response({"id": str(hold.id), "status": "confirmed"}, status=201)


# --- the guarded hold ---------------------------------------------------------------------

HOLD_SECONDS = 600
LOCK_MILLISECONDS = 10_000
THROTTLE_PER_MINUTE = 10**8  # evaluated, never refusing (as the service's in the benchmark)
LIVE_HOLDS_MAX = 10**8  # the fair-use limit, likewise
SERIALIZABLE_ATTEMPTS = 8
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_redis_lock = threading.Lock()
_redis_client: redis.Redis | None = None
_verified: dict[str, tuple[str, float]] = {}


def _redis() -> redis.Redis:
    global _redis_client
    with _redis_lock:
        if _redis_client is None:
            _redis_client = redis.Redis.from_url(settings.GUARDED_REDIS_URL)
        return _redis_client


class GuardedJWT(BaseAuthentication):
    """The service's token check: HS256 signature, expiry, issuer and audience, a token this
    process verified remembered until its expiry (the service keeps them too)."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Bearer "):
            raise exceptions.NotAuthenticated()
        token = header[7:]
        remembered = _verified.get(token)
        if remembered is not None and time.time() < remembered[1]:
            return remembered[0], token
        try:
            claims = jwt.decode(
                token,
                settings.GUARDED_JWT_KEY,
                algorithms=["HS256"],
                issuer=settings.GUARDED_JWT_ISSUER or None,
                audience=settings.GUARDED_JWT_AUDIENCE or None,
                options={"require": ["sub", "exp"]},
            )
        except jwt.PyJWTError as exc:
            raise exceptions.AuthenticationFailed() from exc
        _verified[token] = (str(claims["sub"]), float(claims["exp"]))
        return str(claims["sub"]), token


def _serialization_failure(exc: OperationalError) -> bool:
    return isinstance(exc.__cause__, pg_errors.SerializationFailure | pg_errors.DeadlockDetected)


# The guarded hold's write: the conditional UPDATE that takes a unit, the hold with its expiry
# and its event, in one statement (a hold and its event exist only if the unit was taken).
_GUARDED_WRITE = """
WITH taken AS (
    UPDATE guarded_slots SET held_count = held_count + 1
    WHERE id = %(slot)s AND held_count < capacity - booked_count
    RETURNING id
), hold AS (
    INSERT INTO guarded_holds (id, slot_id, user_id, pet_id, status, expires_at, created_at)
    SELECT %(hold)s, id, %(owner)s, %(pet)s, 'held', %(expires)s, now() FROM taken
    RETURNING id
)
INSERT INTO guarded_events
    (event_id, aggregate_id, aggregate_version, event_type, payload, created_at)
SELECT %(event)s, %(hold_text)s, 1, 'ReservationCreated', %(payload)s::jsonb, now() FROM hold
RETURNING id
"""


class GuardedHoldCreate(APIView):
    """The bare hold with the guarantees of the service's hold, in the plainest form:

    * the caller's token verified (HS256, issuer, audience; remembered per process);
    * a per-owner rate limit counted in Redis (one round trip: INCR, EXPIRE);
    * the owner's and the slot's Redis locks (one round trip: two SET NX PX; taken or 409 at
      once, no wait), released with a compare-and-delete script, with the search-generation
      bump when a hold was made (one round trip);
    * the owner's live holds counted under the owner's lock (fair use; one round trip);
    * one SERIALIZABLE transaction, retried on 40001/40P01, whose one statement takes the unit
      (conditional UPDATE) and inserts the hold with its expiry (the fence) and its event in
      the outbox table; BEGIN and COMMIT as Django sends them (on the `serializable` alias:
      a second connection per thread, isolation set once per connection).

    Left out, though the service does them: the slot read before the lock (the service's lock
    keys and the pet's species check need the slot's clinic and service), the booking rules
    (slot open and not started, clinic and service active, notice, horizon), the pet's check
    against the User Service, the per-IP rate limit, the slot's version bump, a bounded wait
    for a busy lock, idempotency keys (the load sends none), the event's metadata, the access
    log line, metrics, tracing, and publishing the events (the service's Celery worker relays
    them)."""

    authentication_classes = [GuardedJWT]

    def post(self, request):
        owner = request.user
        client = _redis()
        window = f"throttle:hold:{owner}:{int(time.time() // 60)}"
        with client.pipeline(transaction=False) as pipe:
            pipe.incr(window)
            pipe.expire(window, 120)
            count, _ = pipe.execute()
        if count > THROTTLE_PER_MINUTE:
            return Response({"error": {"code": "rate_limited"}}, status=429)
        body = HoldInput(data=request.data)
        body.is_valid(raise_exception=True)
        slot_id = body.validated_data["slot_id"]
        pet_id = body.validated_data["pet_id"]
        keys = [f"lock:owner:{owner}", f"lock:slot:{{{slot_id}}}"]
        token = uuid.uuid4().hex
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, token, nx=True, px=LOCK_MILLISECONDS)
            taken = pipe.execute()
        response = None
        try:
            if all(taken):
                response = self._hold(owner, slot_id, pet_id)
            else:
                response = Response({"error": {"code": "slot_busy"}}, status=409)
            return response
        finally:
            with client.pipeline(transaction=False) as pipe:
                for key, got in zip(keys, taken, strict=True):
                    if got:
                        pipe.eval(_RELEASE, 1, key, token)
                if response is not None and response.status_code == 201:
                    pipe.incr("search-generation")
                pipe.execute()

    def _hold(self, owner: str, slot_id: uuid.UUID, pet_id: str) -> Response:
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM guarded_holds"
                " WHERE user_id = %s AND status = 'held' AND expires_at > now()",
                [owner],
            )
            (live,) = cursor.fetchone()
        if live >= LIVE_HOLDS_MAX:
            return Response({"error": {"code": "limit_exceeded"}}, status=409)
        hold_id = uuid.uuid4()
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=HOLD_SECONDS)
        for attempt in range(1, SERIALIZABLE_ATTEMPTS + 1):
            try:
                written = self._write(owner, slot_id, pet_id, hold_id, expires_at)
                break
            except OperationalError as exc:
                if not _serialization_failure(exc) or attempt == SERIALIZABLE_ATTEMPTS:
                    raise
        if not written:
            return Response({"error": {"code": "slot_unavailable"}}, status=409)
        return Response(
            {
                "id": str(hold_id),
                "slot_id": str(slot_id),
                "status": "held",
                "expires_at": expires_at.isoformat(),
            },
            status=201,
        )

    def _write(
        self,
        owner: str,
        slot_id: uuid.UUID,
        pet_id: str,
        hold_id: uuid.UUID,
        expires_at: dt.datetime,
    ) -> bool:
        payload = {
            "reservation_id": str(hold_id),
            "slot_id": str(slot_id),
            "user_id": owner,
            "pet_id": pet_id,
            "status": "held",
            "expires_at": expires_at.isoformat(),
        }
        with (
            transaction.atomic(using="serializable"),
            connections["serializable"].cursor() as cursor,
        ):
            cursor.execute(
                _GUARDED_WRITE,
                {
                    "slot": slot_id,
                    "hold": hold_id,
                    "hold_text": str(hold_id),
                    "owner": owner,
                    "pet": pet_id,
                    "expires": expires_at,
                    "event": uuid.uuid4(),
                    "payload": json.dumps(payload),
                },
            )
            return cursor.fetchone() is not None


def healthz(request):
    return JsonResponse({"status": "ok"})

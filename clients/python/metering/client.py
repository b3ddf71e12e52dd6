"""The client: every call has a deadline; UNAVAILABLE, ABORTED and DEADLINE_EXCEEDED are retried
with backoff, writes with the same idempotency key (made here when the caller gives none), so a
retry never records a charge twice. Refusals raise MeteringError (BadRequestError with the fields
a google.rpc.BadRequest names)."""
import datetime
import random
import threading
import time
import uuid

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from metering.v1 import charge_queries_pb2, events_pb2, limits_pb2, metering_service_pb2 as pb, metering_service_pb2_grpc as rpc

RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED)
#: RPCs never retried by the client: a second attempt would do it twice.
NOT_RETRIED = frozenset({"CreateApiKey"})
#: The server's message size limit both ways (MAX_MESSAGE_BYTES of the contract).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class MeteringRequestError(ValueError):
    """A request the client refuses before sending: ``field`` is its path (``estimate.prompt_tokens``)."""

    def __init__(self, field, reason):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class MeteringError(Exception):
    """A call the server refused (or that failed after every retry).

    ``code`` is the grpc.StatusCode, ``details`` the server's message, ``reason`` and
    ``metadata`` the google.rpc.ErrorInfo's (e.g. ``RESERVATION_RELEASED``), ``field_violations``
    a dict field -> description from a google.rpc.BadRequest."""

    def __init__(self, rpc_error):
        self.rpc_error = rpc_error
        self.code = rpc_error.code()
        self.details = rpc_error.details()
        self.reason = ""
        self.metadata = {}
        self.field_violations = {}
        for key, value in rpc_error.trailing_metadata() or ():
            if key != "grpc-status-details-bin":
                continue
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    self.field_violations.update({v.field: v.description for v in bad.field_violations})
                elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    self.reason, self.metadata = info.reason, dict(info.metadata)
        super().__init__(f"{self.code.name}: {self.details}")

    @staticmethod
    def of(rpc_error):
        err = MeteringError(rpc_error)
        return BadRequestError(rpc_error) if err.field_violations else err


class BadRequestError(MeteringError):
    """INVALID_ARGUMENT with a google.rpc.BadRequest: ``fields`` lists the fields it names."""

    @property
    def fields(self):
        return sorted(self.field_violations)


class BudgetExceeded(Exception):
    """CheckLimits said no: raised by ``MeteringClient.reserve`` before the LLM call.
    ``response`` is the CheckLimitsResponse (reason, message, the usage that was counted)."""

    def __init__(self, response):
        super().__init__(response.message)
        self.response = response


def _build(cls, fields, path=""):
    """A message of type ``cls`` from keyword fields (nested messages as dicts, Struct as a dict,
    Timestamp as a datetime); a value the field cannot hold raises MeteringRequestError naming it."""
    message = cls()
    for name, value in fields.items():
        where = f"{path}{name}"
        field = cls.DESCRIPTOR.fields_by_name.get(name)
        if field is None:
            raise MeteringRequestError(where, f"{cls.DESCRIPTOR.full_name} has no field {name}")
        if value is None:
            continue
        target = field.message_type
        try:
            if target is not None and field.label != field.LABEL_REPEATED:
                if target.full_name == "google.protobuf.Struct" and isinstance(value, dict):
                    getattr(message, name).update(value)
                elif target.full_name == "google.protobuf.Timestamp" and isinstance(value, datetime.datetime):
                    getattr(message, name).FromDatetime(value.astimezone(datetime.timezone.utc).replace(tzinfo=None))
                elif isinstance(value, dict):
                    getattr(message, name).CopyFrom(_build(getattr(message, name).__class__, value, f"{where}."))
                else:
                    getattr(message, name).CopyFrom(value)
            elif field.label == field.LABEL_REPEATED and target is None:
                getattr(message, name).extend(value)
            elif field.label == field.LABEL_REPEATED:
                container = getattr(message, name)
                if isinstance(value, dict):  # a map
                    container.update(value)
                else:
                    container.extend(value)
            else:
                if isinstance(value, float) and field.cpp_type in (field.CPPTYPE_INT64, field.CPPTYPE_INT32, field.CPPTYPE_UINT64, field.CPPTYPE_UINT32):
                    raise TypeError(f"{value!r} is not a whole number: counts are whole units, round before sending (math.ceil)")
                if isinstance(value, str) and field.cpp_type in (field.CPPTYPE_INT64, field.CPPTYPE_INT32, field.CPPTYPE_UINT64, field.CPPTYPE_UINT32):
                    if not value.lstrip("-").isdigit():
                        raise TypeError(f"{value!r} is not a whole number")
                    value = int(value)
                setattr(message, name, value)
        except (TypeError, ValueError) as err:
            if isinstance(err, MeteringRequestError):
                raise
            raise MeteringRequestError(where, str(err)) from None
    return message


class Reservation:
    """A held reservation (``MeteringClient.reserve``): ``record(...)`` records the call against it;
    leaving the ``with`` block without recording (an exception, or no call made) releases it."""

    def __init__(self, client, user_id, account_id, response, defaults):
        self.client = client
        self.user_id = user_id
        self.account_id = account_id
        self.response = response
        self.reservation_id = response.reservation.reservation_id
        self.defaults = defaults
        self.recorded = None

    def record(self, **fields):
        """RecordCharge against the reservation: counts (``prompt_tokens=...``) or the provider's
        usage object (``usage=response.usage.model_dump(), usage_format=...``)."""
        self.recorded = self.client.record_charge(
            **{**self.defaults, "user_id": self.user_id, "account_id": self.account_id, "reservation_id": self.reservation_id, **fields})
        return self.recorded

    def release(self):
        return self.client.release_reservation(self.account_id, self.reservation_id)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.recorded is None:
            self.release()
        return False


class MeteringClient:
    """``MeteringClient("metering:50051", api_key=...)``. ``deadline``: seconds per attempt (5);
    ``attempts``: per call, the first included (4); backoff doubles from 50 ms to 2 s, with jitter.
    ``credentials``: grpc.ssl_channel_credentials(...) for TLS (insecure without)."""

    def __init__(self, address, api_key=None, deadline=5.0, attempts=4, credentials=None):
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        self.channel = grpc.secure_channel(address, credentials, options) if credentials else grpc.insecure_channel(address, options)
        self.stub = rpc.MeteringServiceStub(self.channel)
        self.deadline = deadline
        self.attempts = max(1, attempts)
        self.api_key = api_key

    def _metadata(self):
        return [("authorization", f"Bearer {self.api_key}")] if self.api_key else []

    def call(self, method, request, _track=None):
        """Any unary RPC by its name (``"GetDailyUsage"``) with a request message, deadline and retries."""
        stub_method = getattr(self.stub, method)
        attempts = 1 if method in NOT_RETRIED else self.attempts
        for attempt in range(attempts):
            if attempt:
                if _track is not None:
                    _track["retried"] = True
                time.sleep(min(2.0, 0.05 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
            try:
                return stub_method(request, metadata=self._metadata(), timeout=self.deadline)
            except grpc.RpcError as err:
                if err.code() not in RETRIED or attempt == attempts - 1:
                    raise MeteringError.of(err) from None

    def request(self, name, **fields):
        """A request message of ``metering.v1`` by name from keyword fields (checked, see _build)."""
        for module in (pb, charge_queries_pb2, limits_pb2, events_pb2):
            if hasattr(module, name):
                return _build(getattr(module, name), fields)
        raise MeteringRequestError(name, "no such request message in metering.v1")

    def record_charge(self, *, user_id, provider, model, idempotency_key=None, **fields):
        """Records an LLM call. Without an idempotency key one is made and reused by every retry."""
        return self.call("RecordCharge", self.request(
            "RecordChargeRequest", user_id=user_id, provider=provider, model=model, idempotency_key=idempotency_key or str(uuid.uuid4()), **fields))

    def check_limits(self, *, user_id, reserve=False, idempotency_key=None, **fields):
        """CheckLimits; with ``reserve=True`` holds the estimate (a key is made when missing)."""
        if reserve and not idempotency_key:
            idempotency_key = str(uuid.uuid4())
        return self.call("CheckLimits", self.request("CheckLimitsRequest", user_id=user_id, reserve=reserve, idempotency_key=idempotency_key, **fields))

    def release_reservation(self, account_id, reservation_id):
        """Voids a hold. When a retry finds it released by this call's own earlier attempt, that is a success."""
        track = {}
        try:
            return self.call("ReleaseReservation", pb.ReleaseReservationRequest(account_id=account_id, reservation_id=reservation_id), track)
        except MeteringError as err:
            if not track.get("retried") or err.reason != "RESERVATION_RELEASED":
                raise
            return self.call("GetReservation", pb.GetReservationRequest(account_id=account_id, reservation_id=reservation_id))

    def reserve(self, *, user_id, provider, model, account_id="", hold_seconds=None, **estimate):
        """The flow around an LLM call, as a context manager::

            with metering.reserve(user_id="u1", provider="openai", model="gpt-4o", prompt_tokens=1200, completion_tokens=800) as held:
                completion = openai_client.chat.completions.create(...)
                held.record(idempotency_key=completion.id, usage=completion.usage.model_dump(), usage_format=charge_pb2.USAGE_FORMAT_OPENAI_CHAT)

        Raises BudgetExceeded (before the call) when a limit says no; a block left without
        ``record`` releases the hold."""
        response = self.check_limits(user_id=user_id, account_id=account_id, reserve=True, hold_seconds=hold_seconds,
                                     estimate={"provider": provider, "model": model, **estimate})
        if not response.allowed:
            raise BudgetExceeded(response)
        return Reservation(self, user_id, account_id, response, {"provider": provider, "model": model})

    def watch_charges(self, account_id="", after_sequence=None, on_start=None, stop=None):
        """The account's events (metering.v1.ChargeEvent), from after ``after_sequence`` (None: from
        now on), reconnecting with backoff from the last one yielded: none missed or repeated.
        ``stop``: a threading.Event that ends it. ``on_start(after_sequence)`` is told where each
        (re)connected stream starts."""
        cursor = after_sequence
        failures = 0
        while stop is None or not stop.is_set():
            request = pb.WatchChargesRequest(account_id=account_id)
            if cursor is not None:
                request.after_sequence = int(cursor)
            stream = self.stub.WatchCharges(request, metadata=self._metadata())
            if stop is not None:  # a set stop ends a stream that is waiting for its next event
                threading.Thread(target=lambda s=stream: (stop.wait(), s.cancel()), daemon=True).start()
            try:
                start = dict(stream.initial_metadata()).get("x-start-after-sequence")
                if start is not None:
                    cursor = int(start) if cursor is None else cursor
                    if on_start:
                        on_start(int(start))
                for message in stream:
                    event = message.event
                    if cursor is not None and event.sequence <= cursor:
                        continue
                    cursor = event.sequence
                    failures = 0
                    yield event
                    if stop is not None and stop.is_set():
                        stream.cancel()
                        return
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.CANCELLED and stop is not None and stop.is_set():
                    return
                if err.code() not in RETRIED + (grpc.StatusCode.INTERNAL,):
                    raise MeteringError.of(err) from None
            time.sleep(min(2.0, 0.05 * 2 ** failures))
            failures += 1

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# Re-exported for `from metering.client import ...` users.
ChargeEventKind = events_pb2.ChargeEventKind
ReservationStatus = limits_pb2.ReservationStatus
Struct = struct_pb2.Struct
Timestamp = timestamp_pb2.Timestamp

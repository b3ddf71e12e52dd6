"""Capture without code for the ``openai`` and ``anthropic`` Python SDKs, as an adapter for their
response objects (Debian packages neither SDK, so this package does not depend on them: anything
with the SDKs' shape works, a pydantic model with ``model_dump()``, an object with attributes, or
the JSON body as a dict)::

    from metering.llm import meter_call

    with meter_call(metering, user_id="u1", provider="openai", request={"model": "gpt-4o", "max_tokens": 300, "messages": messages}) as call:
        completion = openai_client.chat.completions.create(**call.request)
        call.record(completion)

``meter_call`` reserves the request's expected usage (its model, its max tokens and its input at
~4 characters a token) and raises ``BudgetExceeded`` before the block runs when a limit says no;
``call.record(response)`` records the provider's usage object as it came (RecordCharge with
``usage`` + ``usage_format``) against the reservation, with the response id (``chatcmpl-...``,
``resp_...``, ``msg_...``) as the idempotency key, so a retried record is a replay; leaving the
block without recording (an exception, no call) releases the hold. ``call.stream(events)`` wraps
a stream (for an OpenAI chat stream, ``call.request`` already asks for
``stream_options.include_usage``): it yields every event and records the final usage when the
stream ends; a stream left before its usage arrived releases the hold. ``record_openai`` and
``record_anthropic`` record a response without a reservation.

A metering outage here is fail-closed: the errors of MeteringClient (after its retries) reach the
caller; the TypeScript wrappers also offer fail-open with a local retry queue.
"""
import json
import math

from metering.client import BudgetExceeded  # noqa: F401  (raised by meter_call)
from metering.v1 import charge_pb2

OPENAI_CHAT = charge_pb2.USAGE_FORMAT_OPENAI_CHAT
OPENAI_RESPONSES = charge_pb2.USAGE_FORMAT_OPENAI_RESPONSES
ANTHROPIC_MESSAGES = charge_pb2.USAGE_FORMAT_ANTHROPIC_MESSAGES

#: Output tokens reserved when the request sets no maximum (OpenAI's is optional).
DEFAULT_MAX_TOKENS = 4096


def plain(obj):
    """The SDK object as its JSON shape: a pydantic model's ``model_dump()``, a dict as it is, an
    object's attributes (recursively); None stays None."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    if hasattr(obj, "__dict__"):
        return {k: plain(v) for k, v in vars(obj).items() if not k.startswith("_")}
    raise TypeError(f"not a provider object: {type(obj).__name__}")


def _format(provider, body):
    if provider == "anthropic":
        return ANTHROPIC_MESSAGES
    usage = body.get("usage") or {}
    return OPENAI_RESPONSES if body.get("object") == "response" or "input_tokens" in usage else OPENAI_CHAT


def _charge(provider, body, usage_format=None):
    """What RecordCharge needs from a response: id, model, usage object and its format."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        raise ValueError("the response has no usage object: nothing to record")
    return {"id": body.get("id") or None, "model": body.get("model"), "usage": usage, "usage_format": usage_format or _format(provider, body)}


def _record(metering, provider, response, user_id, account_id="", reservation_id="", idempotency_key=None, model=None, usage_format=None):
    got = _charge(provider, plain(response), usage_format)
    return metering.record_charge(
        user_id=user_id, account_id=account_id, provider=provider, model=got["model"] or model,
        idempotency_key=idempotency_key or got["id"], usage=got["usage"], usage_format=got["usage_format"],
        reservation_id=reservation_id or None)


def record_openai(metering, response, *, user_id, account_id="", reservation_id="", idempotency_key=None, usage_format=None):
    """Records an OpenAI chat completion or Responses API response (the format from its shape)
    under its id (or ``idempotency_key``)."""
    return _record(metering, "openai", response, user_id, account_id, reservation_id, idempotency_key, usage_format=usage_format)


def record_anthropic(metering, message, *, user_id, account_id="", reservation_id="", idempotency_key=None):
    """Records an Anthropic message under its id (or ``idempotency_key``)."""
    return _record(metering, "anthropic", message, user_id, account_id, reservation_id, idempotency_key)


class StreamUsage:
    """Follows a stream's events: the id, the model and the final usage object.

    OpenAI chat: the last chunk's ``usage`` (with ``stream_options.include_usage``); Responses:
    ``response.completed`` / ``.incomplete`` / ``.failed``'s ``response.usage``; Anthropic:
    ``message_start``'s usage with the counts of ``message_delta``'s replacing it."""

    def __init__(self, provider):
        self.provider = provider
        self.id = None
        self.model = None
        self.usage = None
        self.final = False
        self.usage_format = None

    def observe(self, event):
        e = plain(event)
        if not isinstance(e, dict):
            return
        if self.provider == "anthropic":
            self.usage_format = ANTHROPIC_MESSAGES
            if e.get("type") == "message_start" and isinstance(e.get("message"), dict):
                self.id = self.id or e["message"].get("id")
                self.model = self.model or e["message"].get("model")
                self.usage = dict(e["message"].get("usage") or {})
            elif e.get("type") == "message_delta" and isinstance(e.get("usage"), dict):
                self.usage = {**(self.usage or {}), **{k: v for k, v in e["usage"].items() if v is not None}}
                self.final = True
        elif isinstance(e.get("response"), dict):
            self.usage_format = OPENAI_RESPONSES
            self.id = self.id or e["response"].get("id")
            self.model = self.model or e["response"].get("model")
            if isinstance(e["response"].get("usage"), dict):
                self.usage, self.final = e["response"]["usage"], True
        else:
            self.usage_format = OPENAI_CHAT
            self.id = self.id or e.get("id")
            self.model = self.model or e.get("model")
            if isinstance(e.get("usage"), dict):
                self.usage, self.final = e["usage"], True


class MeteredCall:
    """The reservation of one provider call (see ``meter_call``)."""

    def __init__(self, metering, held, provider, request, user_id, account_id, idempotency_key):
        self.metering = metering
        self.held = held
        self.provider = provider
        self.request = request
        self.user_id = user_id
        self.account_id = account_id
        self.idempotency_key = idempotency_key
        self.recorded = None

    @property
    def reservation_id(self):
        return self.held.reservation_id

    def record(self, response, usage_format=None):
        """Records the response's usage object against the reservation; returns RecordChargeResponse."""
        self.recorded = _record(self.metering, self.provider, response, self.user_id, self.account_id, self.held.reservation_id,
                                self.idempotency_key, model=self.request.get("model"), usage_format=usage_format)
        self.held.recorded = self.recorded
        return self.recorded

    def stream(self, events):
        """Yields the stream's events; at its end records the final usage. Left early (``break``,
        an exception), it releases the hold (``with`` does, on leaving the block)."""
        seen = StreamUsage(self.provider)
        for event in events:
            seen.observe(event)
            yield event
        if not (seen.final and seen.usage):
            raise ValueError("the stream ended without a usage object: nothing recorded")
        self.record({"id": seen.id, "model": seen.model, "usage": seen.usage}, usage_format=seen.usage_format)


class meter_call:
    """``with meter_call(metering, user_id=..., provider="openai" | "anthropic", request={...}) as call:``

    Reserves before the block (``BudgetExceeded`` when a limit denies, before any provider
    request); ``call.request`` is the request to send (for an OpenAI chat stream with
    ``stream_options.include_usage`` set); ``call.record(response)`` or ``call.stream(events)``
    records; leaving without a record releases. ``estimate``: ``(prompt_tokens, completion_tokens)``
    instead of the request's."""

    def __init__(self, metering, *, user_id, provider, request, account_id="", idempotency_key=None, estimate=None, hold_seconds=None):
        if provider not in ("openai", "anthropic"):
            raise ValueError("provider: 'openai' or 'anthropic'")
        request = dict(request)
        if provider == "openai" and request.get("stream") is True and "messages" in request:
            request["stream_options"] = {**(request.get("stream_options") or {}), "include_usage": True}
        self.metering = metering
        self.args = dict(user_id=user_id, provider=provider, request=request, account_id=account_id, idempotency_key=idempotency_key,
                         estimate=estimate, hold_seconds=hold_seconds)
        self.held = None

    def __enter__(self):
        a = self.args
        request = a["request"]
        if a["estimate"]:
            prompt, completion = a["estimate"]
        else:
            keys = ("system", "messages", "tools") if a["provider"] == "anthropic" else ("messages",) if "messages" in request else ("instructions", "input")
            prompt = math.ceil(len(json.dumps([request.get(k) for k in keys if k in request], separators=(",", ":"))) / 4)
            limit = request.get("max_completion_tokens") or request.get("max_tokens") or request.get("max_output_tokens") or DEFAULT_MAX_TOKENS
            completion = limit * max(1, request.get("n") or 1)
        self.held = self.metering.reserve(user_id=a["user_id"], account_id=a["account_id"], provider=a["provider"], model=request.get("model", ""),
                                          hold_seconds=a["hold_seconds"], prompt_tokens=int(prompt), completion_tokens=int(completion))
        return MeteredCall(self.metering, self.held, a["provider"], request, a["user_id"], a["account_id"], a["idempotency_key"])

    def __exit__(self, exc_type, exc, tb):
        return self.held.__exit__(exc_type, exc, tb)

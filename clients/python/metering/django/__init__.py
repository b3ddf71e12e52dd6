"""Metering for a Django project, in place of the Django models this service replaces
(Charge, DailyBillingRecord, TokenUsage, LLMPrices).

Settings (settings.py)::

    INSTALLED_APPS = [..., "metering.django"]
    METERING = {
        "ADDRESS": "metering:50051",        # host:port of the gRPC server
        "API_KEY": env("METERING_API_KEY"),  # the account's key (scopes record, read)
        "ACCOUNT_ID": "",                     # "" = the key's own account
        "DEADLINE": 5.0,                      # seconds per attempt
        "ATTEMPTS": 4,
    }

``record_charge(user, provider, model, ...)`` records a call (``user`` a Django user or an id).
``new_charge_created`` is the old signal, sent for every charge the service records
(``sender=Charge`` the protobuf message class, ``charge=`` the metering.v1.Charge,
``event=`` the metering.v1.ChargeEvent): ``python manage.py metering_charge_stream`` follows the
charge stream and sends it, so receivers written for the Django models keep working.
"""
import threading

from django.conf import settings
from django.dispatch import Signal

from metering.client import MeteringClient
from metering.v1 import charge_pb2, events_pb2


#: Sent once per recorded charge, in commit order, by ``run_charge_stream``.
new_charge_created = Signal()

_lock = threading.Lock()
_client = None


def _settings():
    return getattr(settings, "METERING", {})


def get_client():
    """The process's MeteringClient, made from settings.METERING on first use."""
    global _client
    with _lock:
        if _client is None:
            conf = _settings()
            _client = MeteringClient(conf.get("ADDRESS", "127.0.0.1:50051"), api_key=conf.get("API_KEY"),
                                     deadline=conf.get("DEADLINE", 5.0), attempts=conf.get("ATTEMPTS", 4))
        return _client


def reset_client():
    """Closes the client (e.g. after settings change in tests); the next call makes a new one."""
    global _client
    with _lock:
        if _client is not None:
            _client.close()
        _client = None


def user_id_of(user):
    """A user's id as the service keys it: a Django user's primary key as a string, or the string given."""
    return str(getattr(user, "pk", user))


def record_charge(user, provider, model, **fields):
    """RecordCharge for ``user`` (prompt_tokens=..., completion_tokens=..., or usage=<the provider's
    usage dict>, usage_format=...; idempotency_key= the provider's response id when there is one).
    Returns the metering.v1.Charge."""
    fields.setdefault("account_id", _settings().get("ACCOUNT_ID", ""))
    return get_client().record_charge(user_id=user_id_of(user), provider=provider, model=model, **fields).charge


def run_charge_stream(after_sequence=None, stop=None, on_event=None):
    """Follows the charge stream and sends ``new_charge_created`` for each recorded charge; returns
    when ``stop`` (a threading.Event) is set. ``on_event(event)`` is called after each event's
    receivers (persist ``event.sequence`` there to resume with ``after_sequence``)."""
    for event in get_client().watch_charges(account_id=_settings().get("ACCOUNT_ID", ""), after_sequence=after_sequence, stop=stop):
        if event.kind == events_pb2.CHARGE_EVENT_KIND_CHARGE_RECORDED:
            new_charge_created.send(sender=charge_pb2.Charge, charge=event.charge, event=event)
        if on_event:
            on_event(event)

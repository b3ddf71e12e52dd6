"""A Python backend using Metering, with stubs generated from proto/ (see buf.gen.yaml).

It does what a backend does around an LLM call, and checks every answer:
  1. with the operator key, create an API key for its account (RECORD + READ + ADMIN);
  2. set a daily cost limit, then reserve the expected usage (CheckLimits reserve=true, a model and token mix);
  3. record the call against the reservation (RecordCharge with reservation_id), and once more (a replay);
  4. read the day's usage (GetDailyUsage) and the limit's state (ListLimits);
  5. send a bad request and read the google.rpc.BadRequest naming the bad fields;
  6. try another account's data with its key (PERMISSION_DENIED);
  7. read the charge stream (WatchCharges) from the start, and from now (where it starts is in its headers);
  8. record calls by sending the provider's own usage object as it came back (an OpenAI chat completion's
     and an Anthropic message's), and check each costs exactly what the same call sent as counts costs;
  9. grant prepaid credits (CreateGrant, idempotent by key), record a call, and read the balance
     (GetBalance) and its history (ListBalanceEntries): the call burned exactly its cost.
Run by examples/run-python.sh (and CI) against a real server: /usr/bin/python3 backend.py --address HOST:PORT --operator-key KEY
"""
import argparse
import os
import sys
import uuid
from datetime import date
from decimal import Decimal

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from metering.v1 import account_pb2, charge_pb2, credits_pb2, limits_pb2, money_pb2, metering_service_pb2 as pb, metering_service_pb2_grpc as rpc  # noqa: E402


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def status_details(err):
    """The google.rpc.Status a failed call carries in its grpc-status-details-bin trailer."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return None


def struct(value):
    """A dict (e.g. an SDK's `response.usage.model_dump()`) as a google.protobuf.Struct."""
    s = struct_pb2.Struct()
    s.update(value)
    return s


def bad_fields(err):
    """The fields a google.rpc.BadRequest in a failed call names."""
    bad = error_details_pb2.BadRequest()
    for any_detail in status_details(err).details:
        if any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            any_detail.Unpack(bad)
    return sorted(v.field for v in bad.field_violations)


def record_usage_objects(stub, key):
    """Step 8: usage objects as the providers return them, against the same calls sent as counts."""
    # An OpenAI chat completion's response.usage (gpt-4o: 2.50 / 1.25 cached / 10.00 per 1M):
    # 156 x 2.50 + 1024 x 1.25 + 310 x 10.00 = 390 + 1280 + 3100 per 1M = 0.00477 USD.
    openai_usage = {
        "prompt_tokens": 1180, "completion_tokens": 310, "total_tokens": 1490,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }
    # An Anthropic message's usage (claude-sonnet-4-5: 3 / 0.30 cache read / 3.75 cache write / 15 per 1M), whose
    # input_tokens leave out the cache reads and writes: 25 x 3 + 3000 x 0.30 + 1200 x 3.75 + 450 x 15 = 75 + 900 + 4500 + 6750
    # per 1M = 0.012225 USD.
    anthropic_usage = {
        "input_tokens": 25, "cache_creation_input_tokens": 1200, "cache_read_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1200, "ephemeral_1h_input_tokens": 0}, "output_tokens": 450, "service_tier": "standard",
    }
    calls = [
        ("OpenAI chat", "openai", "gpt-4o", charge_pb2.USAGE_FORMAT_OPENAI_CHAT, openai_usage,
         {"prompt_tokens": 1180, "cached_prompt_tokens": 1024, "completion_tokens": 310}, "0.00477"),
        ("Anthropic message", "anthropic", "claude-sonnet-4-5", charge_pb2.USAGE_FORMAT_ANTHROPIC_MESSAGES, anthropic_usage,
         {"prompt_tokens": 4225, "cached_prompt_tokens": 3000, "cache_write_tokens": 1200, "completion_tokens": 450}, "0.012225"),
    ]
    for name, provider, model, usage_format, usage, counts, expected in calls:
        as_object = stub.RecordCharge(pb.RecordChargeRequest(
            user_id="carol", idempotency_key=f"call-{uuid.uuid4()}", provider=provider, model=model,
            usage=struct(usage), usage_format=usage_format), metadata=key, timeout=5)
        as_counts = stub.RecordCharge(pb.RecordChargeRequest(
            user_id="carol", idempotency_key=f"call-{uuid.uuid4()}", provider=provider, model=model, **counts), metadata=key, timeout=5)
        cost = as_object.charge.total_cost.amount
        check(cost == as_counts.charge.total_cost.amount == expected, f"an {name} usage object costs what its counts cost ({cost} USD)")
        check(as_object.charge.tokens.prompt_tokens == counts["prompt_tokens"], f"the {name} usage object is mapped to the token classes")
    try:
        stub.RecordCharge(pb.RecordChargeRequest(
            user_id="carol", idempotency_key=f"call-{uuid.uuid4()}", provider="openai", model="gpt-4o",
            usage=struct(openai_usage), usage_format=charge_pb2.USAGE_FORMAT_OPENAI_CHAT, prompt_tokens=156), metadata=key, timeout=5)
        check(False, "counts that disagree with the usage object are refused")
    except grpc.RpcError as err:
        check(err.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_fields(err) == ["prompt_tokens"], "counts that disagree with the usage object are INVALID_ARGUMENT naming them")


def read_balance(stub, key):
    """Step 9: prepaid credits. A grant of 1.00 USD, a call that burns it, and the balance read back."""
    topup = credits_pb2.CreateGrantRequest(
        idempotency_key=f"topup-{uuid.uuid4()}", amount=money_pb2.Money(amount="1.00", currency_code="USD"),
        kind=credits_pb2.GRANT_KIND_PAID, reason="top-up", actor="python example")
    grant = stub.CreateGrant(topup, metadata=key, timeout=5)
    check(not grant.replayed and grant.grant.remaining.amount == "1", "CreateGrant grants 1.00 USD")
    check(stub.CreateGrant(topup, metadata=key, timeout=5).replayed, "the same grant request again is a replay")
    call = stub.RecordCharge(pb.RecordChargeRequest(
        user_id="dave", idempotency_key=f"call-{uuid.uuid4()}", provider="openai", model="gpt-4o", prompt_tokens=100, completion_tokens=200), metadata=key, timeout=5)
    balance = stub.GetBalance(credits_pb2.GetBalanceRequest(), metadata=key, timeout=5).balance
    left = Decimal("1.00") - Decimal(call.charge.total_cost.amount)
    check(balance.has_credits and Decimal(balance.available.amount) == left, f"GetBalance: {balance.available.amount} USD available after a call of {call.charge.total_cost.amount} USD")
    entries = stub.ListBalanceEntries(credits_pb2.ListBalanceEntriesRequest(), metadata=key, timeout=5).entries
    check([e.kind for e in entries] == [credits_pb2.BALANCE_ENTRY_KIND_GRANT, credits_pb2.BALANCE_ENTRY_KIND_BURN]
          and entries[1].charge_id == call.charge.charge_id and Decimal(entries[1].balance_after.amount) == left,
          "ListBalanceEntries: the grant, then the burn naming the charge, with the running balance")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--operator-key", required=True)
    args = parser.parse_args()
    channel = grpc.insecure_channel(args.address)
    stub = rpc.MeteringServiceStub(channel)
    account = f"py-{uuid.uuid4().hex[:8]}"
    operator = [("authorization", f"Bearer {args.operator_key}")]

    created = stub.CreateApiKey(
        pb.CreateApiKeyRequest(account_id=account, name="python backend", scopes=[account_pb2.API_KEY_SCOPE_RECORD, account_pb2.API_KEY_SCOPE_READ, account_pb2.API_KEY_SCOPE_ADMIN]),
        metadata=operator, timeout=5)
    check(created.secret.startswith("mk."), "CreateApiKey returns the key's secret once")
    key = [("authorization", f"Bearer {created.secret}")]

    stub.PutLimit(pb.PutLimitRequest(period=limits_pb2.LIMIT_PERIOD_DAY, measure=limits_pb2.LIMIT_MEASURE_COST, amount="1.00"), metadata=key, timeout=5)
    reserved = stub.CheckLimits(pb.CheckLimitsRequest(
        user_id="alice", reserve=True, idempotency_key=f"hold-{uuid.uuid4()}",
        estimate=limits_pb2.ReservationEstimate(provider="openai", model="gpt-4o", prompt_tokens=1200, completion_tokens=800)),
        metadata=key, timeout=5)
    check(reserved.allowed and reserved.reservation.held_cost.amount == "0.011", f"CheckLimits reserves the estimate's cost ({reserved.reservation.held_cost.amount} USD)")

    request = pb.RecordChargeRequest(
        user_id="alice", idempotency_key=f"call-{uuid.uuid4()}", provider="openai", model="gpt-4o",
        prompt_tokens=1180, completion_tokens=310, reservation_id=reserved.reservation.reservation_id)
    recorded = stub.RecordCharge(request, metadata=key, timeout=5)
    check(recorded.charge.account_id == account, "the account comes from the API key")
    check(recorded.charge.total_cost.amount == "0.00605", f"RecordCharge prices the call exactly ({recorded.charge.total_cost.amount} USD)")
    check(recorded.reservation.status == limits_pb2.RESERVATION_STATUS_SETTLED, "the charge settles the reservation")
    again = stub.RecordCharge(request, metadata=key, timeout=5)
    check(again.replayed and again.charge.charge_id == recorded.charge.charge_id, "a retry with the same idempotency key is a replay")

    today = date.today().isoformat()
    usage = stub.GetDailyUsage(pb.GetDailyUsageRequest(start_date=today, end_date=today), metadata=key, timeout=5)
    check(usage.totals.message_count == 1 and usage.totals.total_cost.amount == "0.00605", "GetDailyUsage sums the day")
    limits = stub.ListLimits(pb.ListLimitsRequest(), metadata=key, timeout=5)
    check(limits.limits[0].used == "0.00605" and limits.limits[0].remaining == "0.99395", "ListLimits shows used and remaining")

    try:
        stub.RecordCharge(pb.RecordChargeRequest(user_id="alice", provider="OpenAI", model="gpt-4o", prompt_tokens=-1), metadata=key, timeout=5)
        check(False, "a bad request is refused")
    except grpc.RpcError as err:
        fields = bad_fields(err)
        check(err.code() == grpc.StatusCode.INVALID_ARGUMENT and fields == ["idempotency_key", "prompt_tokens", "provider"], f"INVALID_ARGUMENT names the bad fields {fields}")

    try:
        stub.GetDailyUsage(pb.GetDailyUsageRequest(account_id="someone-else", start_date=today, end_date=today), metadata=key, timeout=5)
        check(False, "another account's usage is refused")
    except grpc.RpcError as err:
        check(err.code() == grpc.StatusCode.PERMISSION_DENIED, "another account's usage is PERMISSION_DENIED")

    stream = stub.WatchCharges(pb.WatchChargesRequest(after_sequence=0), metadata=key, timeout=5)
    first = next(iter(stream))
    stream.cancel()
    check(first.event.sequence == 1 and first.event.charge.charge_id == recorded.charge.charge_id, "WatchCharges streams the recorded charge with its sequence")

    live = stub.WatchCharges(pb.WatchChargesRequest(), metadata=key, timeout=5)
    start = dict(live.initial_metadata()).get("x-start-after-sequence")
    check(start == "1", f"a stream from now says where it starts (x-start-after-sequence {start})")
    later = stub.RecordCharge(pb.RecordChargeRequest(user_id="bob", idempotency_key=f"call-{uuid.uuid4()}", provider="openai", model="gpt-4o-mini", prompt_tokens=10, completion_tokens=5), metadata=key, timeout=5)
    nxt = next(iter(live))
    live.cancel()
    check(nxt.event.sequence == 2 and nxt.event.charge.charge_id == later.charge.charge_id, "and streams what commits after that")

    record_usage_objects(stub, key)
    read_balance(stub, key)
    print(f"python backend: all checks passed (account {account})")


if __name__ == "__main__":
    main()

"""A Python backend using Metering, with stubs generated from proto/ (see buf.gen.yaml).

It does what a backend does around an LLM call, and checks every answer:
  1. with the operator key, create an API key for its account (RECORD + READ + ADMIN);
  2. set a daily cost limit, then reserve the expected usage (CheckLimits reserve=true, a model and token mix);
  3. record the call against the reservation (RecordCharge with reservation_id), and once more (a replay);
  4. read the day's usage (GetDailyUsage) and the limit's state (ListLimits);
  5. send a bad request and read the google.rpc.BadRequest naming the bad fields;
  6. try another account's data with its key (PERMISSION_DENIED);
  7. read the charge stream (WatchCharges) from the start, and from now (where it starts is in its headers).
Run by examples/run-python.sh (and CI) against a real server: /usr/bin/python3 backend.py --address HOST:PORT --operator-key KEY
"""
import argparse
import os
import sys
import uuid
from datetime import date

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from metering.v1 import account_pb2, limits_pb2, metering_service_pb2 as pb, metering_service_pb2_grpc as rpc  # noqa: E402


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
        details = status_details(err)
        bad = error_details_pb2.BadRequest()
        for any_detail in details.details:
            if any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                any_detail.Unpack(bad)
        fields = sorted(v.field for v in bad.field_violations)
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
    print(f"python backend: all checks passed (account {account})")


if __name__ == "__main__":
    main()

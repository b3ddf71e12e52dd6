"""The Python package against the real server (clients/python/run-tests.sh runs it, and CI does).

Each test class starts the bundled server (dist/apps/metering/main.js, embedded database in a
temporary folder, API keys required) on a free port; the retry test SIGKILLs and restarts it.
Run: python -m unittest discover -s clients/python/tests (with the package installed)."""
import copy
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import types
import unittest
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal

import grpc

from metering import BadRequestError, BudgetExceeded, MeteringClient, MeteringError, MeteringRequestError
from metering.llm import meter_call, record_openai
from metering.v1 import account_pb2, charge_pb2, charge_queries_pb2, limits_pb2, metering_service_pb2 as pb

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MAIN = os.path.join(ROOT, "dist", "apps", "metering", "main.js")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The real server process on 127.0.0.1:port; start() waits for its "listening" log line."""

    def __init__(self, auth="keys"):
        self.auth = auth
        self.dir = tempfile.mkdtemp(prefix="metering-py-")
        self.port = free_port()
        self.operator_key = uuid.uuid4().hex + uuid.uuid4().hex
        self.process = None

    def start(self):
        env = {"PATH": os.environ["PATH"], "PORT": str(self.port), "METERING_HOST": "127.0.0.1", "METERING_AUTH": self.auth,
               "METERING_OPERATOR_KEY": self.operator_key, "METERING_DATA_DIR": os.path.join(self.dir, "data")}
        self.log = log = open(os.path.join(self.dir, "log"), "ab")
        self.process = subprocess.Popen(["node", MAIN], env=env, stdout=subprocess.PIPE, stderr=log, cwd=ROOT)
        for line in self.process.stdout:
            log.write(line)
            if b'"msg":"listening"' in line:
                threading.Thread(target=lambda out=self.process.stdout: [log.write(x) for x in out], daemon=True).start()
                return
        raise RuntimeError(f"server did not start: {open(os.path.join(self.dir, 'log')).read()}")

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        if self.process:
            self.process.stdout.close()
            self.log.close()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def account_key(self, account):
        operator = MeteringClient(self.address, api_key=self.operator_key)
        created = operator.call("CreateApiKey", pb.CreateApiKeyRequest(
            account_id=account, name="python tests", scopes=[account_pb2.API_KEY_SCOPE_RECORD, account_pb2.API_KEY_SCOPE_READ, account_pb2.API_KEY_SCOPE_ADMIN]))
        operator.close()
        return created.secret


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def client(self, account=None, **options):
        client = MeteringClient(self.server.address, api_key=self.server.account_key(account or f"py-{uuid.uuid4().hex[:8]}"), **options)
        self.addCleanup(client.close)
        return client

    def test_reserve_call_record_then_replay(self):
        metering = self.client()
        with metering.reserve(user_id="u1", provider="openai", model="gpt-4o", prompt_tokens=1200, completion_tokens=800) as held:
            self.assertTrue(held.response.allowed)
            recorded = held.record(idempotency_key="chatcmpl-1", prompt_tokens=100, completion_tokens=200)
        self.assertEqual(recorded.reservation.status, limits_pb2.RESERVATION_STATUS_SETTLED)
        self.assertEqual(recorded.reservation.charge_id, recorded.charge.charge_id)
        again = metering.record_charge(user_id="u1", provider="openai", model="gpt-4o", idempotency_key="chatcmpl-1",
                                       prompt_tokens=100, completion_tokens=200, reservation_id=held.reservation_id)
        self.assertTrue(again.replayed)
        self.assertEqual(again.charge.charge_id, recorded.charge.charge_id)
        today = date.today().isoformat()
        usage = metering.call("GetDailyUsage", pb.GetDailyUsageRequest(start_date=today, end_date=today))
        self.assertEqual(usage.totals.message_count, 1)
        self.assertEqual(usage.totals.total_cost.amount, recorded.charge.total_cost.amount)

    def test_a_block_that_fails_releases_its_hold(self):
        metering = self.client()
        with self.assertRaises(RuntimeError):
            with metering.reserve(user_id="u1", provider="openai", model="gpt-4o", prompt_tokens=10) as held:
                raise RuntimeError("the LLM call failed")
        got = metering.call("GetReservation", pb.GetReservationRequest(reservation_id=held.reservation_id))
        self.assertEqual(got.reservation.status, limits_pb2.RESERVATION_STATUS_RELEASED)

    def test_a_denied_budget_raises_before_the_call(self):
        metering = self.client()
        metering.call("PutLimit", pb.PutLimitRequest(period=limits_pb2.LIMIT_PERIOD_DAY, measure=limits_pb2.LIMIT_MEASURE_COST, amount="0.000001"))
        metering.record_charge(user_id="u1", provider="openai", model="gpt-4o", prompt_tokens=100, completion_tokens=200)
        calls = []
        with self.assertRaises(BudgetExceeded) as denied:
            with metering.reserve(user_id="u1", provider="openai", model="gpt-4o", prompt_tokens=10):
                calls.append("llm")
        self.assertEqual(calls, [])
        self.assertFalse(denied.exception.response.allowed)
        self.assertTrue(str(denied.exception))

    def test_bad_request_names_the_fields(self):
        metering = self.client()
        with self.assertRaises(BadRequestError) as bad:
            metering.record_charge(user_id="alice", provider="OpenAI", model="gpt-4o", idempotency_key="", prompt_tokens=-1)
        self.assertEqual(bad.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("prompt_tokens", bad.exception.fields)
        self.assertIn("provider", bad.exception.fields)

    def test_a_fractional_count_is_refused_on_the_client_naming_the_field(self):
        metering = self.client()
        prompt = "Summarise the attached contract in three sentences."
        with self.assertRaises(MeteringRequestError) as refused:
            metering.check_limits(user_id="u1", reserve=True, estimate={"provider": "openai", "model": "gpt-4o", "prompt_tokens": len(prompt) / 4})
        self.assertEqual(refused.exception.field, "estimate.prompt_tokens")
        with self.assertRaises(MeteringRequestError) as unknown:
            metering.record_charge(user_id="u1", provider="openai", model="gpt-4o", prompt_tokenz=1)
        self.assertEqual(unknown.exception.field, "prompt_tokenz")
        ok = metering.check_limits(user_id="u1", reserve=True, estimate={"provider": "openai", "model": "gpt-4o", "prompt_tokens": math.ceil(len(prompt) / 4)})
        self.assertTrue(ok.allowed)

    def test_the_provider_usage_object_as_it_came_back(self):
        metering = self.client()
        usage = {"prompt_tokens": 1490, "completion_tokens": 310, "total_tokens": 1800, "prompt_tokens_details": {"cached_tokens": 1024}}
        as_object = metering.record_charge(user_id="u1", provider="openai", model="gpt-4o", usage=usage, usage_format=charge_pb2.USAGE_FORMAT_OPENAI_CHAT)
        as_counts = metering.record_charge(user_id="u1", provider="openai", model="gpt-4o", prompt_tokens=1490, completion_tokens=310, cached_prompt_tokens=1024)
        self.assertEqual(as_object.charge.total_cost.amount, as_counts.charge.total_cost.amount)

    def test_permission_denied_is_a_metering_error(self):
        metering = self.client()
        today = date.today().isoformat()
        with self.assertRaises(MeteringError) as denied:
            metering.call("GetDailyUsage", pb.GetDailyUsageRequest(account_id="someone-else", start_date=today, end_date=today))
        self.assertEqual(denied.exception.code, grpc.StatusCode.PERMISSION_DENIED)

    def test_watch_charges_from_the_start_and_stops(self):
        metering = self.client()
        ids = [metering.record_charge(user_id="u1", provider="openai", model="gpt-4o-mini", prompt_tokens=10, completion_tokens=5).charge.charge_id for _ in range(3)]
        stop = threading.Event()
        seen = []
        for event in metering.watch_charges(after_sequence=0, stop=stop):
            seen.append(event.charge.charge_id)
            if len(seen) == 3:
                stop.set()
        self.assertEqual(seen, ids)


def sdk_object(body):
    """Stands in for the SDKs' response objects (pydantic models): the JSON body's fields as
    attributes, and model_dump() giving the body back."""
    if isinstance(body, list):
        return [sdk_object(v) for v in body]
    if not isinstance(body, dict):
        return body
    obj = types.SimpleNamespace(**{k: sdk_object(v) for k, v in body.items()})
    obj.model_dump = lambda: copy.deepcopy(body)
    return obj


def chat_completion(completion_tokens=42):
    """A chat.completion as OpenAI's wire format has it."""
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()), "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "It renews yearly.", "refusal": None, "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1490, "completion_tokens": completion_tokens, "total_tokens": 1490 + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
            "service_tier": "default", "system_fingerprint": "fp_07871e2ad8"}


def chat_chunks():
    """An OpenAI chat stream with include_usage: the usage in a last chunk with empty choices."""
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk", "created": int(time.time()), "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_07871e2ad8", "usage": None}
    words = ["It", " renews", " yearly", "."]
    return ([{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]}]
            + [{**head, "choices": [{"index": 0, "delta": {"content": w}, "logprobs": None, "finish_reason": None}]} for w in words]
            + [{**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]},
               {**head, "choices": [], "usage": {"prompt_tokens": 310, "completion_tokens": 5, "total_tokens": 315, "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                                                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}}])


def response_object():
    """A Responses API response."""
    return {"id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time()), "status": "completed", "model": "gpt-4o-2024-08-06",
            "output": [{"type": "message", "id": f"msg_{uuid.uuid4().hex}", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": "It renews yearly.", "annotations": []}]}],
            "usage": {"input_tokens": 880, "input_tokens_details": {"cached_tokens": 512}, "output_tokens": 61, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 941}}


def anthropic_message():
    return {"id": f"msg_01{uuid.uuid4().hex[:22]}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "It renews yearly."}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 2100, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1800, "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                      "output_tokens": 95, "service_tier": "standard"}}


def anthropic_events():
    """An Anthropic message stream: message_start's usage, message_delta's cumulative output_tokens."""
    message = anthropic_message()
    return [{"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "It renews yearly."}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 95}},
            {"type": "message_stop"}]


class LlmAdapterTest(unittest.TestCase):
    """metering.llm: the adapter for the openai and anthropic SDKs' response objects (Debian packages
    neither SDK): objects shaped like theirs, built from their JSON wire bodies, against the real server."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(auth="off")
        cls.server.start()
        cls.metering = MeteringClient(cls.server.address, deadline=20.0)

    @classmethod
    def tearDownClass(cls):
        cls.metering.close()
        cls.server.close()

    def daily_cost(self, account):
        today = date.today().isoformat()
        usage = self.metering.call("GetDailyUsage", pb.GetDailyUsageRequest(account_id=account, start_date=today, end_date=today))
        return Decimal(usage.totals.total_cost.amount or "0")

    def assert_charged(self, account, before, recorded, response_id, provider, model, usage, usage_format):
        """The charge is the usage object priced by the server (the same object by hand costs the same),
        the daily usage moved by exactly that, the reservation settled by it."""
        charge = recorded.charge
        self.assertEqual(charge.idempotency_key, response_id)
        self.assertEqual((charge.provider, charge.model), (provider, model))
        by_hand = self.metering.record_charge(user_id="u1", account_id="py-by-hand", provider=provider, model=model, usage=usage, usage_format=usage_format)
        self.assertEqual(charge.total_cost.amount, by_hand.charge.total_cost.amount)
        self.assertGreater(Decimal(charge.total_cost.amount), 0)
        self.assertEqual(self.daily_cost(account) - before, Decimal(charge.total_cost.amount))
        self.assertEqual(recorded.reservation.status, limits_pb2.RESERVATION_STATUS_SETTLED)
        self.assertEqual(recorded.reservation.charge_id, charge.charge_id)

    def test_openai_chat_completion_and_its_replay(self):
        before = self.daily_cost("py-chat")
        body = chat_completion()
        request = {"model": "gpt-4o", "max_tokens": 300, "messages": [{"role": "user", "content": "Does the contract renew?"}]}
        with meter_call(self.metering, user_id="u1", account_id="py-chat", provider="openai", request=request) as call:
            self.assertEqual(call.held.response.reservation.held_tokens, math.ceil(len(json.dumps([request["messages"]], separators=(",", ":"))) / 4) + 300)
            recorded = call.record(sdk_object(body))
        self.assert_charged("py-chat", before, recorded, body["id"], "openai", body["model"], body["usage"], charge_pb2.USAGE_FORMAT_OPENAI_CHAT)
        after = self.daily_cost("py-chat")
        again = record_openai(self.metering, sdk_object(body), user_id="u1", account_id="py-chat", reservation_id=call.reservation_id)
        self.assertTrue(again.replayed)
        self.assertEqual(again.charge.charge_id, recorded.charge.charge_id)
        self.assertEqual(self.daily_cost("py-chat"), after)

    def test_openai_chat_stream_asks_for_usage_and_records_the_last_chunk(self):
        before = self.daily_cost("py-stream")
        chunks = chat_chunks()
        with meter_call(self.metering, user_id="u1", account_id="py-stream", provider="openai",
                        request={"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}], "stream": True}) as call:
            self.assertEqual(call.request["stream_options"], {"include_usage": True})
            seen = [c for c in call.stream(sdk_object(chunks))]
        self.assertEqual([c.model_dump() for c in seen], chunks)
        self.assert_charged("py-stream", before, call.recorded, chunks[-1]["id"], "openai", chunks[-1]["model"], chunks[-1]["usage"], charge_pb2.USAGE_FORMAT_OPENAI_CHAT)

    def test_openai_responses_and_anthropic_messages_plain_and_streamed(self):
        before = self.daily_cost("py-mixed")
        body = response_object()
        with meter_call(self.metering, user_id="u1", account_id="py-mixed", provider="openai", request={"model": "gpt-4o", "input": "Does it renew?", "max_output_tokens": 200}) as call:
            recorded = call.record(sdk_object(body))
        self.assert_charged("py-mixed", before, recorded, body["id"], "openai", body["model"], body["usage"], charge_pb2.USAGE_FORMAT_OPENAI_RESPONSES)

        before = self.daily_cost("py-mixed")
        message = anthropic_message()
        with meter_call(self.metering, user_id="u1", account_id="py-mixed", provider="anthropic", request={"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": "Hi"}]}) as call:
            recorded = call.record(sdk_object(message))
        self.assert_charged("py-mixed", before, recorded, message["id"], "anthropic", message["model"], message["usage"], charge_pb2.USAGE_FORMAT_ANTHROPIC_MESSAGES)

        before = self.daily_cost("py-mixed")
        events = anthropic_events()
        with meter_call(self.metering, user_id="u1", account_id="py-mixed", provider="anthropic", request={"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": "Hi"}], "stream": True}) as call:
            for _ in call.stream(sdk_object(events)):
                pass
        start = events[0]["message"]
        usage = {**start["usage"], "output_tokens": events[-2]["usage"]["output_tokens"]}
        self.assert_charged("py-mixed", before, call.recorded, start["id"], "anthropic", start["model"], usage, charge_pb2.USAGE_FORMAT_ANTHROPIC_MESSAGES)

    def test_a_failed_call_and_an_abandoned_stream_release_their_holds(self):
        with self.assertRaises(RuntimeError):
            with meter_call(self.metering, user_id="u1", account_id="py-released", provider="openai", request={"model": "gpt-4o", "max_tokens": 50, "messages": []}) as failed:
                raise RuntimeError("400 invalid_request_error from the provider")
        with meter_call(self.metering, user_id="u1", account_id="py-released", provider="anthropic", request={"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [], "stream": True}) as abandoned:
            for _ in abandoned.stream(sdk_object(anthropic_events())):
                break
        for call in (failed, abandoned):
            got = self.metering.call("GetReservation", pb.GetReservationRequest(account_id="py-released", reservation_id=call.reservation_id))
            self.assertEqual(got.reservation.status, limits_pb2.RESERVATION_STATUS_RELEASED)
        self.assertEqual(self.daily_cost("py-released"), 0)

    def test_a_denied_budget_raises_before_the_call(self):
        self.metering.call("PutLimit", pb.PutLimitRequest(account_id="py-broke", period=limits_pb2.LIMIT_PERIOD_DAY, measure=limits_pb2.LIMIT_MEASURE_COST, amount="0.000001"))
        self.metering.record_charge(user_id="u1", account_id="py-broke", provider="openai", model="gpt-4o", prompt_tokens=100, completion_tokens=200)
        calls = []
        with self.assertRaises(BudgetExceeded):
            with meter_call(self.metering, user_id="u1", account_id="py-broke", provider="openai", request={"model": "gpt-4o", "max_tokens": 50, "messages": []}):
                calls.append("provider")
        self.assertEqual(calls, [])


class ReadmeTest(unittest.TestCase):
    """The README's "Getting started / Python" program as written (only the server's address replaced),
    with this installed package; run-tests.sh ran the install lines above it the same way."""

    def test_getting_started_python_runs_as_written(self):
        import re
        import sys
        readme = open(os.path.join(ROOT, "README.md")).read()
        section = readme[readme.index("### Python (Debian's python3-grpcio and python3-protobuf)"):]
        block = re.search(r"```sh\n(.*?)\n```", section, re.S).group(1)
        program = re.search(r"<<'PY'\n(.*?)\nPY", block, re.S).group(1)
        server = Server(auth="off")
        self.addCleanup(server.close)
        server.start()
        out = subprocess.run([sys.executable, "-"], input=program.replace("127.0.0.1:50051", server.address), capture_output=True, text=True, check=True).stdout
        charge_id, amount, currency = out.strip().splitlines()[-1].split(" ")
        metering = MeteringClient(server.address)
        self.addCleanup(metering.close)
        today = date.today().isoformat()
        stored = metering.call("ListCharges", charge_queries_pb2.ListChargesRequest(account_id="acme", start_date=today, end_date=today))
        self.assertEqual([(c.charge_id, c.total_cost.amount, c.total_cost.currency_code) for c in stored.charges], [(charge_id, amount, currency)])


class RetryTest(unittest.TestCase):
    def test_retries_through_sigkills_reuse_the_idempotency_key(self):
        server = Server()
        self.addCleanup(server.close)
        server.start()
        metering = MeteringClient(server.address, api_key=server.account_key("retry"), deadline=2.0, attempts=40)
        self.addCleanup(metering.close)

        def one(n):
            time.sleep(n * 0.04)
            return metering.record_charge(user_id=f"u{n % 3}", provider="openai", model="gpt-4o-mini", prompt_tokens=10, completion_tokens=5).charge.charge_id

        with ThreadPoolExecutor(max_workers=40) as pool:
            calls = [pool.submit(one, n) for n in range(40)]
            for _ in range(2):
                time.sleep(0.5)
                server.stop(signal.SIGKILL)
                server.start()
            answered = [c.result() for c in calls]
        self.assertEqual(len(set(answered)), 40)
        today = date.today().isoformat()
        listed = metering.call("ListCharges", charge_queries_pb2.ListChargesRequest(start_date=today, end_date=today, page_size=1000))
        self.assertEqual(sorted(c.charge_id for c in listed.charges), sorted(answered))


class DjangoTest(unittest.TestCase):
    """metering.django: settings, record_charge() with a user object, new_charge_created from the stream."""

    @classmethod
    def setUpClass(cls):
        try:
            import django
            from django.conf import settings
        except ImportError:
            if os.environ.get("CI"):
                raise
            raise unittest.SkipTest("Django is not installed (apt-get install python3-django)")
        cls.server = Server()
        cls.server.start()
        if not settings.configured:
            settings.configure(INSTALLED_APPS=["metering.django"], METERING={})
            django.setup()
        settings.METERING = {"ADDRESS": cls.server.address, "API_KEY": cls.server.account_key("django-app"), "DEADLINE": 5.0}

    @classmethod
    def tearDownClass(cls):
        from metering.django import reset_client
        reset_client()
        cls.server.close()

    def test_record_charge_and_the_old_signal_from_the_charge_stream(self):
        from metering import django as metering_django

        received = []
        three = threading.Event()

        def receiver(sender, charge, event, **kwargs):
            received.append((sender, charge.charge_id, charge.user_id, event.sequence))
            if len(received) == 3:
                three.set()

        metering_django.new_charge_created.connect(receiver)
        self.addCleanup(metering_django.new_charge_created.disconnect, receiver)
        user = types.SimpleNamespace(pk=42)
        charges = [metering_django.record_charge(user, "openai", "gpt-4o", prompt_tokens=100 * (n + 1), completion_tokens=10) for n in range(3)]
        self.assertEqual({c.user_id for c in charges}, {"42"})
        stop = threading.Event()
        cursors = []
        stream = threading.Thread(target=metering_django.run_charge_stream, kwargs={"after_sequence": 0, "stop": stop, "on_event": lambda e: cursors.append(e.sequence)})
        stream.start()
        three.wait(60)
        stop.set()
        stream.join(60)
        self.assertFalse(stream.is_alive())
        self.assertEqual([r[1] for r in received], [c.charge_id for c in charges])
        self.assertEqual({r[0] for r in received}, {charge_pb2.Charge})
        self.assertEqual(cursors, [r[3] for r in received])

    def test_the_management_command_is_found(self):
        from django.core.management import get_commands
        self.assertEqual(get_commands().get("metering_charge_stream"), "metering.django")


if __name__ == "__main__":
    unittest.main()

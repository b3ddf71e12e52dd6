"""The Python package against the real server (clients/python/run-tests.sh runs it, and CI does).

Each test class starts the bundled server (dist/apps/metering/main.js, embedded database in a
temporary folder, API keys required) on a free port; the retry test SIGKILLs and restarts it.
Run: python -m unittest discover -s clients/python/tests (with the package installed)."""
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

import grpc

from metering import BadRequestError, BudgetExceeded, MeteringClient, MeteringError, MeteringRequestError
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

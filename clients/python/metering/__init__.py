"""Metering's Python client: the generated messages and stubs (``metering.v1``) and a small
client with deadlines, retries that reuse the idempotency key, errors that name the fields, and
the reserve -> LLM call -> record flow. See clients/python/README.md."""
from metering.client import (  # noqa: F401
    BadRequestError,
    BudgetExceeded,
    MeteringClient,
    MeteringError,
    MeteringRequestError,
    Reservation,
)

__all__ = ["BadRequestError", "BudgetExceeded", "MeteringClient", "MeteringError", "MeteringRequestError", "Reservation"]

"""A gateway wrapper that injects faults at the PaymentGateway Protocol boundary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from adapters.base import (
    PaymentGateway,
    RefundRequest,
    RefundResult,
    StartPayment,
    StartResult,
    StatusQuery,
    StatusResult,
)


class Crash(Exception):
    """Stands for the process dying at this point."""


class FaultyGateway:
    """Delegates to a real adapter; ``faults[method]`` is a list of exceptions to raise on the next calls.

    ``after_call`` faults fire after the real call went through (the gateway acted, we never heard back)."""

    def __init__(self, inner: PaymentGateway) -> None:
        self.inner = inner
        self.name = inner.name
        self.faults: dict[str, list[BaseException]] = {}
        self.after_call: dict[str, list[BaseException]] = {}
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _call(self, method: str, *args: Any) -> Any:
        self.calls[method] += 1
        if self.faults.get(method):
            raise self.faults[method].pop(0)
        result = getattr(self.inner, method)(*args)
        if self.after_call.get(method):
            raise self.after_call[method].pop(0)
        return result

    def start_payment(self, request: StartPayment) -> StartResult:
        return self._call("start_payment", request)  # type: ignore[no-any-return]

    def query_status(self, query: StatusQuery) -> StatusResult:
        return self._call("query_status", query)  # type: ignore[no-any-return]

    def cancel(self, query: StatusQuery) -> StatusResult:
        return self._call("cancel", query)  # type: ignore[no-any-return]

    def refund(self, request: RefundRequest) -> RefundResult:
        return self._call("refund", request)  # type: ignore[no-any-return]

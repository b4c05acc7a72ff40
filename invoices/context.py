"""What the invoices package needs from the running service, beyond the payment core's needs: its settings and the
agencies' signing keys. The composition root's container has both."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, Request

from invoices.config import ReceiptSettings
from invoices.keys import SignerStore
from payments.core.context import AppContext
from payments.core.ratelimit import Limiter


class ReceiptContext(AppContext, Protocol):
    @property
    def settings(self) -> ReceiptSettings: ...
    @property
    def signers(self) -> SignerStore: ...
    @property
    def lookup_limiter(self) -> Limiter:
        """Public receipt lookups per minute per client address; fails closed when its store is down."""


async def get_receipt_ctx(request: Request) -> ReceiptContext:
    ctx: ReceiptContext = request.app.state.ctx
    return ctx


ReceiptCtxDep = Annotated[ReceiptContext, Depends(get_receipt_ctx)]

"""The reconciliation pages' router, with the routes of both modules on it."""

from console.reconcile import imports, queue
from console.reconcile.common import router

__all__ = ["imports", "queue", "router"]

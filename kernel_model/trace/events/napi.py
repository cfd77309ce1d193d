"""napi:napi_poll (include/trace/events/napi.h)."""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent

NO_DEV = "(no_device)"


def _napi_poll(napi: Any, work: int, budget: int) -> tuple:
    dev = getattr(napi, "dev", None)
    return (napi.addr, dev.name if dev is not None else NO_DEV, work, budget)


def events() -> list[TraceEvent]:
    return [TraceEvent(
        "napi", "napi_poll",
        [("struct napi_struct *", "napi"), ("__string", "dev_name"), ("int", "work"),
         ("int", "budget")],
        '"napi poll on napi struct %p for device %s work %d budget %d", REC->napi, '
        "__get_str(dev_name), REC->work, REC->budget",
        _napi_poll, proto="struct napi_struct *napi, int work, int budget")]

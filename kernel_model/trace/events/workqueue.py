"""workqueue:* (include/trace/events/workqueue.h, 6.18): queue, activate, execute start/end.

A work item is a model object with ``addr`` (the ``work_struct``) and ``func`` (the address
of its function, printed ``%ps``).
"""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent

WORK_CPU_UNBOUND = 2   # NR_CPUS on the 2-CPU model: req_cpu of queue_work()


def _queue(req_cpu: int, wq_name: str, work: Any, cpu: int) -> tuple:
    return (work.addr, work.func, wq_name, req_cpu, cpu)


def _work(work: Any) -> tuple:
    return (work.addr, work.func)


def _work_func(work: Any, function: int) -> tuple:
    return (work.addr, function)


_WORK_FIELDS = [("void *", "work"), ("void *", "function")]


def events() -> list[TraceEvent]:
    return [
        TraceEvent(
            "workqueue", "workqueue_queue_work",
            [("void *", "work"), ("void *", "function"), ("__string", "workqueue"),
             ("int", "req_cpu"), ("int", "cpu")],
            '"work struct=%p function=%ps workqueue=%s req_cpu=%d cpu=%d", REC->work, '
            "REC->function, __get_str(workqueue), REC->req_cpu, REC->cpu",
            _queue, proto="int req_cpu, struct pool_workqueue *pwq, struct work_struct *work"),
        TraceEvent("workqueue", "workqueue_activate_work", _WORK_FIELDS,
                   '"work struct %p function=%ps ", REC->work, REC->function', _work,
                   proto="struct work_struct *work"),
        TraceEvent("workqueue", "workqueue_execute_start", _WORK_FIELDS,
                   '"work struct %p: function %ps", REC->work, REC->function', _work,
                   proto="struct work_struct *work"),
        TraceEvent("workqueue", "workqueue_execute_end", _WORK_FIELDS,
                   '"work struct %p: function %ps", REC->work, REC->function', _work_func,
                   proto="struct work_struct *work, work_func_t function"),
    ]

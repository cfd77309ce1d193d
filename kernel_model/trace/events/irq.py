"""irq:irq_handler_entry/exit and softirq_entry/exit/raise (include/trace/events/irq.h, 6.18).

Softirq vectors are the ``enum`` of include/linux/interrupt.h, which the TP_printk's
``show_softirq_name`` table prints by number (TRACE_DEFINE_ENUM replaced them).
"""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent

HI_SOFTIRQ, TIMER_SOFTIRQ, NET_TX_SOFTIRQ, NET_RX_SOFTIRQ, BLOCK_SOFTIRQ = range(5)
IRQ_POLL_SOFTIRQ, TASKLET_SOFTIRQ, SCHED_SOFTIRQ, HRTIMER_SOFTIRQ, RCU_SOFTIRQ = range(5, 10)
SOFTIRQ_NAMES = ("HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED",
                 "HRTIMER", "RCU")
IRQ_HANDLED = 1

_VEC_FMT = ('"vec=%u [action=%s]", REC->vec, __print_symbolic(REC->vec, '
            + ", ".join(f'{{ {n}, "{name}" }}' for n, name in enumerate(SOFTIRQ_NAMES)) + ")")


def _handler_entry(irq: int, action: Any) -> tuple:
    return (irq, action.name)


def _handler_exit(irq: int, action: Any, ret: int) -> tuple:
    return (irq, ret)


def _vec(vec_nr: int) -> tuple:
    return (vec_nr,)


def events() -> list[TraceEvent]:
    out = [
        TraceEvent("irq", "irq_handler_entry", [("int", "irq"), ("__string", "name")],
                   '"irq=%d name=%s", REC->irq, __get_str(name)', _handler_entry,
                   proto="int irq, struct irqaction *action"),
        TraceEvent("irq", "irq_handler_exit", [("int", "irq"), ("int", "ret")],
                   '"irq=%d ret=%s", REC->irq, REC->ret ? "handled" : "unhandled"',
                   _handler_exit, proto="int irq, struct irqaction *action, int ret"),
    ]
    out += [TraceEvent("irq", name, [("unsigned int", "vec")], _VEC_FMT, _vec,
                       proto="unsigned int vec_nr")
            for name in ("softirq_entry", "softirq_exit", "softirq_raise")]
    return out

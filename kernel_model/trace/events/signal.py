"""signal:signal_generate and signal_deliver (include/trace/events/signal.h, 6.18)."""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent

# enum of TRACE_SIGNAL_* results
TRACE_SIGNAL_DELIVERED = 0
TRACE_SIGNAL_IGNORED = 1
TRACE_SIGNAL_ALREADY_PENDING = 2
SI_USER = 0


def _generate(sig: int, code: int, task: Any, group: int, result: int) -> tuple:
    # TP_STORE_SIGINFO: errno 0 for a kill(); code is the siginfo's si_code
    return (sig, 0, code, task.comm, task.pid, group, result)


def _deliver(sig: int, code: int, sa_handler: int, sa_flags: int) -> tuple:
    return (sig, 0, code, sa_handler, sa_flags)


def events() -> list[TraceEvent]:
    return [
        TraceEvent(
            "signal", "signal_generate",
            [("int", "sig"), ("int", "errno"), ("int", "code"), ("char[16]", "comm"),
             ("pid_t", "pid"), ("int", "group"), ("int", "result")],
            '"sig=%d errno=%d code=%d comm=%s pid=%d grp=%d res=%d", REC->sig, REC->errno, '
            "REC->code, REC->comm, REC->pid, REC->group, REC->result",
            _generate, proto="int sig, struct kernel_siginfo *info, struct task_struct *task, "
                             "int group, int result"),
        TraceEvent(
            "signal", "signal_deliver",
            [("int", "sig"), ("int", "errno"), ("int", "code"), ("unsigned long", "sa_handler"),
             ("unsigned long", "sa_flags")],
            '"sig=%d errno=%d code=%d sa_handler=%lx sa_flags=%lx", REC->sig, REC->errno, '
            "REC->code, REC->sa_handler, REC->sa_flags",
            _deliver, proto="int sig, struct kernel_siginfo *info, struct k_sigaction *ka"),
    ]

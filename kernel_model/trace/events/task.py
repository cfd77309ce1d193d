"""task:task_newtask and task:task_rename (include/trace/events/task.h, 6.18)."""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent


def _newtask(task: Any, clone_flags: int) -> tuple:
    # the child's comm is still its parent's here (copy_process); oom_score_adj 0 for a task
    # nobody adjusted
    return (task.pid, task.comm, clone_flags, 0)


def _rename(task: Any, comm: str) -> tuple:
    return (task.pid, task.comm, comm[:15], 0)


def events() -> list[TraceEvent]:
    return [
        TraceEvent("task", "task_newtask",
                   [("pid_t", "pid"), ("char[16]", "comm"), ("u64", "clone_flags"),
                    ("short", "oom_score_adj")],
                   '"pid=%d comm=%s clone_flags=%llx oom_score_adj=%hd", REC->pid, REC->comm, '
                   "REC->clone_flags, REC->oom_score_adj",
                   _newtask, proto="struct task_struct *task, u64 clone_flags"),
        TraceEvent("task", "task_rename",
                   [("pid_t", "pid"), ("char[16]", "oldcomm"), ("char[16]", "newcomm"),
                    ("short", "oom_score_adj")],
                   '"pid=%d oldcomm=%s newcomm=%s oom_score_adj=%hd", REC->pid, REC->oldcomm, '
                   "REC->newcomm, REC->oom_score_adj",
                   _rename, proto="struct task_struct *task, const char *comm"),
    ]

"""timer:* events the model emits (include/trace/events/timer.h, 6.18): hrtimer start, expiry
and cancel, timer-wheel start and expiry, tick_stop.

An hrtimer or timer_list is a model object with ``addr`` and ``function`` (an address, printed
``%ps``). ``hrtimer_start``'s TP_printk names the ``enum hrtimer_mode`` values without a
TRACE_DEFINE_ENUM, so its ``format`` shows the names; the kernel's printing evaluates them, and
so does the printer here (the values of include/linux/hrtimer_defs.h).
"""
from __future__ import annotations

from typing import Any

from tracesim.kernel_model.trace.event import TraceEvent
from tracesim.kernel_model.trace.printfmt import compile_print_fmt

HRTIMER_MODE_ABS, HRTIMER_MODE_REL = 0x0, 0x1
HRTIMER_MODE_PINNED, HRTIMER_MODE_SOFT, HRTIMER_MODE_HARD = 0x2, 0x4, 0x8
HRTIMER_MODE_ABS_PINNED_HARD = HRTIMER_MODE_ABS | HRTIMER_MODE_PINNED | HRTIMER_MODE_HARD
_MODES = ("ABS", "REL", "ABS_PINNED", "REL_PINNED", "ABS_SOFT", "REL_SOFT", "ABS_PINNED_SOFT",
          "REL_PINNED_SOFT", "ABS_HARD", "REL_HARD", "ABS_PINNED_HARD", "REL_PINNED_HARD")
MODE_VALUES = {f"HRTIMER_MODE_{m}": n for n, m in enumerate(_MODES)}

# timer_list flags (include/linux/timer.h)
TIMER_CPUMASK = 0x0003FFFF
TIMER_DEFERRABLE = 0x00080000
TIMER_PINNED = 0x00100000
TIMER_ARRAYSHIFT = 22

HRTIMER_START_FMT = (
    '"hrtimer=%p function=%ps expires=%llu softexpires=%llu mode=%s was_armed=%d", REC->hrtimer,'
    " REC->function, (unsigned long long) REC->expires, (unsigned long long) REC->softexpires, "
    "__print_symbolic(REC->mode, "
    + ", ".join(f'{{ HRTIMER_MODE_{m}, "{m.replace("_", "|")}" }}' for m in _MODES)
    + "), REC->was_armed")

TIMER_START_FMT = (
    '"timer=%p function=%ps expires=%lu [timeout=%ld] bucket_expiry=%lu cpu=%u idx=%u flags=%s",'
    " REC->timer, REC->function, REC->expires, (long)REC->expires - REC->now, "
    "REC->bucket_expiry, REC->flags & 0x0003FFFF, REC->flags >> 22, __print_flags(REC->flags & "
    '(0x00040000 | 0x00080000 | 0x00100000 | 0x00200000), "|", { 0x00040000, "M" }, '
    '{ 0x00080000, "D" }, { 0x00100000, "P" }, { 0x00200000, "I" })')

TICK_DEP_FMT = (
    '"success=%d dependency=%s", REC->success, __print_symbolic(REC->dependency, { 0, "NONE" }, '
    '{ (1 << 0), "POSIX_TIMER" }, { (1 << 1), "PERF_EVENTS" }, { (1 << 2), "SCHED" }, '
    '{ (1 << 3), "CLOCK_UNSTABLE" }, { (1 << 4), "RCU" }, { (1 << 5), "RCU_EXP" })')


def _mode_printer(event: TraceEvent) -> Any:
    text = event.print_fmt
    for name in sorted(MODE_VALUES, key=len, reverse=True):
        text = text.replace(name, str(MODE_VALUES[name]))
    return compile_print_fmt(text, event)


def _hrtimer_start(timer: Any, mode: int, was_armed: bool) -> tuple:
    return (timer.addr, timer.function, timer.expires, timer.expires, mode, was_armed)


def _hrtimer_expire_entry(timer: Any, now: int) -> tuple:
    return (timer.addr, now, timer.function)


def _addr_only(timer: Any) -> tuple:
    return (timer.addr,)


def _timer_start(timer: Any, bucket_expiry: int, now: int) -> tuple:
    return (timer.addr, timer.function, timer.expires, bucket_expiry, now, timer.flags)


def _timer_expire_entry(timer: Any, baseclk: int, now: int) -> tuple:
    return (timer.addr, now, timer.function, baseclk)


def _tick_stop(success: int, dependency: int) -> tuple:
    return (success, dependency)


def events() -> list[TraceEvent]:
    hr = [("void *", "hrtimer")]
    tl = [("void *", "timer")]
    return [
        TraceEvent("timer", "hrtimer_start",
                   [("void *", "hrtimer"), ("void *", "function"), ("s64", "expires"),
                    ("s64", "softexpires"), ("enum hrtimer_mode", "mode"), ("bool", "was_armed")],
                   HRTIMER_START_FMT, _hrtimer_start, printer=_mode_printer,
                   proto="struct hrtimer *hrtimer, enum hrtimer_mode mode, bool was_armed"),
        TraceEvent("timer", "hrtimer_expire_entry",
                   [("void *", "hrtimer"), ("s64", "now"), ("void *", "function")],
                   '"hrtimer=%p function=%ps now=%llu", REC->hrtimer, REC->function, '
                   "(unsigned long long) REC->now",
                   _hrtimer_expire_entry, proto="struct hrtimer *hrtimer, ktime_t *now"),
        TraceEvent("timer", "hrtimer_expire_exit", hr, '"hrtimer=%p", REC->hrtimer', _addr_only,
                   proto="struct hrtimer *hrtimer"),
        TraceEvent("timer", "hrtimer_cancel", hr, '"hrtimer=%p", REC->hrtimer', _addr_only,
                   proto="struct hrtimer *hrtimer"),
        TraceEvent("timer", "timer_start",
                   [("void *", "timer"), ("void *", "function"), ("unsigned long", "expires"),
                    ("unsigned long", "bucket_expiry"), ("unsigned long", "now"),
                    ("unsigned int", "flags")],
                   TIMER_START_FMT, _timer_start,
                   proto="struct timer_list *timer, unsigned long bucket_expiry"),
        TraceEvent("timer", "timer_expire_entry",
                   [("void *", "timer"), ("unsigned long", "now"), ("void *", "function"),
                    ("unsigned long", "baseclk")],
                   '"timer=%p function=%ps now=%lu baseclk=%lu", REC->timer, REC->function, '
                   "REC->now, REC->baseclk",
                   _timer_expire_entry, proto="struct timer_list *timer, unsigned long baseclk"),
        TraceEvent("timer", "timer_expire_exit", tl, '"timer=%p", REC->timer', _addr_only,
                   proto="struct timer_list *timer"),
        TraceEvent("timer", "tick_stop", [("int", "success"), ("int", "dependency")],
                   TICK_DEP_FMT, _tick_stop, proto="int success, int dependency"),
    ]

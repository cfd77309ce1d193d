"""Every modelled event's ``format`` file and printed line, byte for byte against Linux 6.18.

The expected texts are written out here from the kernel sources named at each test: the field
lines follow f_show (``field:<type> <name>;`` with ``offset/size/signed`` as the x86-64 struct
lays them out), the ``print fmt`` is the TP_printk arguments as the preprocessor stringifies
them (``__entry`` -> ``REC``), with TRACE_DEFINE_ENUM names replaced by their values. The long
gfp table was produced by running ``gcc -E`` over the 6.18 macros (gfp_types.h, mmflags.h,
vdso/bits.h, uapi/linux/const.h, kconfig.h; CONFIG_MEMCG=y so CONFIG_SLAB_OBJ_EXT=y, no
KASAN_HW_TAGS, no LOCKDEP) and then the ``update_event_printk`` replacement of ``___GFP_*_BIT``.
"""
from __future__ import annotations

import re
from types import SimpleNamespace as NS

import pytest

from kernel_model import trace_output
from kernel_model.kernel import Kernel

SKB = 0xffff888100004000
COMMON = ("format:\n"
          "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
          "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
          "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
          "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n"
          "\n")


def field(decl: str, offset: int, size: int, signed: int) -> str:
    return f"\tfield:{decl};\toffset:{offset};\tsize:{size};\tsigned:{signed};\n"


def expected(name: str, fields: list[str], print_fmt: str) -> str:
    return f"name: {name}\nID: N\n" + COMMON + "".join(fields) + f"\nprint fmt: {print_fmt}\n"


@pytest.fixture(scope="module")
def kernel() -> Kernel:
    return Kernel(cpus=2, seed=3)


def format_of(kernel: Kernel, system: str, name: str) -> str:
    text = kernel.tracing.event(system, name).format_text()
    return re.sub(r"^ID: \d+$", "ID: N", text, flags=re.M)


def printed(kernel: Kernel, system: str, name: str, *args) -> str:
    """The text after the context columns of the event's trace line (line ends included)."""
    ev = kernel.tracing.event(system, name)
    return ev.line_text(ev.build(ev.assign(*args), 0x10, 1, 42), kernel.tracing.symbols)


def hashed(kernel: Kernel, addr: int) -> str:
    return f"{kernel.tracing.symbols.hash_ptr(addr):016x}"


def body_lines(kernel: Kernel) -> list[str]:
    text = trace_output.trace_text(kernel.tracing.top)
    return [ln for ln in text.split("\n")[:-1] if not ln.startswith("#")]


# --- line ends: TP_printk always adds "\n"; ftrace print entries carry their own ------------

def test_bpf_printk_message_with_newline_is_followed_by_an_empty_line() -> None:
    # include/trace/trace_events.h: #define TP_printk(fmt, args...) fmt "\n", args, and
    # kernel/trace/bpf_trace.h prints TP_printk("%s", __get_str(bpf_string)): a message that
    # ends with "\n" (bpf_printk("...\n")) shows as its line plus an empty one (libbpf #514)
    kernel = Kernel(cpus=2, seed=3)
    kernel.tracing.trace_printk("abc\n")
    kernel.tracing.trace_printk("no newline")
    lines = body_lines(kernel)
    assert [ln.split(": ", 1)[-1] for ln in lines] == ["bpf_trace_printk: abc", "",
                                                       "bpf_trace_printk: no newline"]
    assert lines[1] == ""


def test_trace_marker_gets_one_newline_only_when_it_lacks_one() -> None:
    # tracing_mark_write stores the text with a "\n" appended only if missing;
    # trace_print_print prints ": %s" without adding one
    kernel = Kernel(cpus=2, seed=3)
    top = kernel.tracing.top
    top.trace_marker_write("one")
    top.trace_marker_write("two\n")
    top.trace_marker_write("three\n\n")
    assert [ln.split(": ", 1)[-1] for ln in body_lines(kernel)] == [
        "tracing_mark_write: one", "tracing_mark_write: two", "tracing_mark_write: three", ""]


def test_tracepoint_lines_end_once(kernel: Kernel) -> None:
    text = printed(kernel, "net", "netif_rx", NS(addr=SKB, len=60, dev=NS(name="eth0")))
    assert text == f"netif_rx: dev=eth0 skbaddr={hashed(kernel, SKB)} len=60\n"


# --- ftrace's own entries (kernel/trace/trace_entries.h, trace_export.c) --------------------

def test_ftrace_print_format(kernel: Kernel) -> None:
    # FTRACE_ENTRY(print, print_entry, TRACE_PRINT, F_STRUCT(__field(unsigned long, ip)
    # __dynamic_array(char, buf)), F_printk("%ps: %s", (void *)__entry->ip, __entry->buf))
    want = expected("print", [field("unsigned long ip", 8, 8, 0), field("char buf[]", 16, 0, 1)],
                    '"%ps: %s", (void *)REC->ip, REC->buf')
    assert format_of(kernel, "ftrace", "print") == want
    assert kernel.tracing.event("ftrace", "print").id == 5


def test_ftrace_print_line_names_the_ip(kernel: Kernel) -> None:
    ev = kernel.tracing.event("ftrace", "print")
    ip = kernel.kallsyms.address_of("tracing_mark_write")
    for addr, name in ((ip + 0x20, "tracing_mark_write"), (0, "0"), (0x1234, "0x00001234")):
        rec = ev.build(ev.assign(addr, b"hi\n"), 0, 0, 1)
        assert ev.line_text(rec, kernel.tracing.symbols) == f"{name}: hi\n"


def test_kernel_stack_format(kernel: Kernel) -> None:
    # FTRACE_ENTRY(kernel_stack, stack_entry, TRACE_STACK, F_STRUCT(__field(int, size)
    # __stack_array(unsigned long, caller, FTRACE_STACK_ENTRIES, size)), F_printk(
    # "\t=> %ps\n\t=> %ps\n\t=> %ps\n" "\t=> %ps\n\t=> %ps\n\t=> %ps\n" "\t=> %ps\n\t=> %ps\n",
    # (void *)__entry->caller[0], ...): __stringify keeps the three literals apart
    fmt = ('"\\t=> %ps\\n\\t=> %ps\\n\\t=> %ps\\n" "\\t=> %ps\\n\\t=> %ps\\n\\t=> %ps\\n" '
           '"\\t=> %ps\\n\\t=> %ps\\n", (void *)REC->caller[0], (void *)REC->caller[1], '
           "(void *)REC->caller[2], (void *)REC->caller[3], (void *)REC->caller[4], "
           "(void *)REC->caller[5], (void *)REC->caller[6], (void *)REC->caller[7]")
    want = expected("kernel_stack", [field("int size", 8, 4, 1),
                                     field("unsigned long caller[8]", 16, 64, 0)], fmt)
    assert format_of(kernel, "ftrace", "kernel_stack") == want
    assert kernel.tracing.event("ftrace", "kernel_stack").id == 4


def test_kernel_stack_lines_have_no_offsets_by_default(kernel: Kernel) -> None:
    # trace_stack_print: "<stack trace>\n" then " => " seq_print_ip_sym "\n" per caller;
    # sym-offset is off by default
    ev = kernel.tracing.event("ftrace", "kernel_stack")
    a = kernel.kallsyms.address_of("netif_receive_skb") + 0x11
    b = kernel.kallsyms.address_of("ip_rcv") + 0x7
    rec = ev.build(ev.assign([a, b]), 0, 0, 1)
    assert ev.line_text(rec, kernel.tracing.symbols) == \
        "<stack trace>\n => netif_receive_skb\n => ip_rcv\n"


# --- bpf_trace (kernel/trace/bpf_trace.h) -----------------------------------------------------

def test_bpf_trace_printk_format(kernel: Kernel) -> None:
    # TRACE_EVENT(bpf_trace_printk, TP_PROTO(const char *bpf_string), TP_STRUCT__entry(
    # __string(bpf_string, bpf_string)), TP_printk("%s", __get_str(bpf_string)))
    want = expected("bpf_trace_printk", [field("__data_loc char[] bpf_string", 8, 4, 0)],
                    '"%s", __get_str(bpf_string)')
    assert format_of(kernel, "bpf_trace", "bpf_trace_printk") == want

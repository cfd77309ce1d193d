"""The kallsyms table: an address, a size and a type for every modelled kernel function.

Functions are laid out in kernel text from ``_stext`` (0xffffffff81000000) in table order, each
at a 16-byte aligned address; their sizes are plausible for a 6.18 x86-64 build. The text is
mapped in simulated memory (each function starts with ``endbr64`` and is padded with ``int3``)
so reading a function's bytes works, as ``probe_read`` of kernel text does on Linux.

Names are the real 6.18 symbols: wrappers that are ``static inline`` in 6.18 have no symbol
(``kfree_skb`` → ``sk_skb_reason_drop``, ``netdev_alloc_skb`` → ``__netdev_alloc_skb``,
``dev_queue_xmit`` → ``__dev_queue_xmit``, ``kmalloc`` → ``__kmalloc_noprof``).
The symbols of the 2013 RFC's benchmark module carry its module name, as /proc/kallsyms shows
module symbols (``... t skb_bench_run\t[skb_bench]``).

The table is the model's ``/proc/kallsyms`` and ``available_filter_functions``. Beside it the
names of every text symbol of a real 6.18 build ship as package data (``data/kallsyms_text.gz``,
``TYPE NAME`` a line, in address order): ``address_of``/``find``/``lookup`` also know those, at
stand-in addresses after the modelled text (``REAL_ONLY_BASE``, ``REAL_ONLY_SIZE`` bytes each),
so ``kprobe_events`` accepts any real symbol; the model never runs their code. ``real_count``
says how many symbols of a real build carry a name (static functions repeat: ``NON_UNIQ``).
Iterating a ``Kallsyms`` gives the modelled table only; ``listing()`` gives what
``/proc/kallsyms`` shows: the modelled functions, every real 6.18 text symbol the model does not
model (at its stand-in address, so a tool that reads an address there can probe it), and the
data symbols the model keeps in memory (``DATA_SYMBOLS``: ``linux_banner`` and
``linux_proc_banner`` in .rodata, ``version.py``).

To add a modelled function, append a row to ``FUNCTIONS`` (before ``_etext``, or with its
module after it); the order is the text layout, so appending never moves earlier addresses
of the same region.
"""
from __future__ import annotations

import bisect
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from tracesim.kernel_model.mm.memory import KERNEL_TEXT_BASE, Memory
from tracesim.kernel_model.version import LINUX_BANNER, LINUX_PROC_BANNER

ENDBR64 = b"\xf3\x0f\x1e\xfa"
INT3 = 0xcc

# The scheduler, syscall, interrupt and timer functions the task model (sched.py, syscalls.py,
# idle.py) runs through kprobe sites, with their 6.18 names and C argument counts.
TASK_FUNCTIONS: tuple[tuple[str, int, str, str | None, int | None], ...] = (
    ("do_syscall_64", 0x110, "T", None, None),
    ("__x64_sys_read", 0x20, "T", None, 1),
    ("__x64_sys_write", 0x20, "T", None, 1),
    ("__x64_sys_close", 0x40, "T", None, 1),
    ("__x64_sys_nanosleep", 0xa0, "T", None, 1),
    ("__x64_sys_socket", 0x20, "T", None, 1),
    ("__x64_sys_connect", 0x20, "T", None, 1),
    ("__x64_sys_sendto", 0x30, "T", None, 1),
    ("__x64_sys_recvfrom", 0x30, "T", None, 1),
    ("__x64_sys_clone", 0x90, "T", None, 1),
    ("__x64_sys_execve", 0x50, "T", None, 1),
    ("__x64_sys_wait4", 0xb0, "T", None, 1),
    ("__x64_sys_kill", 0x180, "T", None, 1),
    ("__x64_sys_exit_group", 0x20, "T", None, 1),
    ("__x64_sys_openat", 0x90, "T", None, 1),
    ("__x64_sys_accept4", 0x20, "T", None, 1),
    ("ksys_read", 0xe0, "T", None, 3),
    ("vfs_read", 0x2f0, "T", None, 4),
    ("ksys_write", 0xe0, "T", None, 3),
    ("vfs_write", 0x410, "T", None, 4),
    ("do_sys_openat2", 0xe0, "t", None, 3),
    ("file_close_fd", 0x50, "T", None, 1),
    ("filp_flush", 0x70, "t", None, 2),
    ("__sys_socket", 0xf0, "T", None, 3),
    ("__sys_connect", 0xb0, "T", None, 3),
    ("__sys_sendto", 0x1e0, "T", None, 6),
    ("__sys_recvfrom", 0x1b0, "T", None, 6),
    ("__sys_accept4", 0xc0, "T", None, 4),
    ("hrtimer_nanosleep", 0xe0, "T", None, 3),
    ("do_nanosleep", 0x130, "t", None, 2),
    ("hrtimer_wakeup", 0x30, "t", None, 1),
    ("kernel_clone", 0x3d0, "T", None, 1),
    ("copy_process", 0x1b90, "T", None, 4),
    ("sched_fork", 0x1f0, "T", None, 2),
    ("wake_up_new_task", 0x2e0, "T", None, 1),
    ("bprm_execve", 0x540, "t", None, 1),
    ("begin_new_exec", 0xb60, "T", None, 1),
    ("do_group_exit", 0xa0, "T", None, 1),
    ("do_exit", 0xba0, "T", None, 1),
    ("kernel_wait4", 0x120, "T", None, 4),
    ("do_wait", 0x150, "t", None, 1),
    ("release_task", 0x5b0, "T", None, 1),
    ("delayed_put_task_struct", 0xd0, "t", None, 1),
    ("kill_something_info", 0x140, "t", None, 3),
    ("__send_signal_locked", 0x2d0, "t", None, 4),
    ("schedule", 0xa0, "T", None, 0),
    ("try_to_wake_up", 0x5e0, "T", None, 3),
    ("update_curr", 0x1d0, "t", None, 1),
    ("common_interrupt", 0xa0, "T", None, 2),
    ("vp_interrupt", 0x90, "t", None, 2),
    ("handle_softirqs", 0x2b0, "t", None, 1),
    ("run_timer_softirq", 0x60, "t", None, 0),
    ("rcu_core_si", 0x10, "t", None, 0),
    ("rcu_do_batch", 0x4b0, "t", None, 1),
    ("sysvec_apic_timer_interrupt", 0x90, "T", None, 1),
    ("tick_nohz_handler", 0xd0, "t", None, 1),
    ("sched_tick", 0x1a0, "T", None, 0),
    ("delayed_work_timer_fn", 0x20, "T", None, 1),
    ("process_timeout", 0x20, "t", None, 1),
    ("process_one_work", 0x310, "t", None, 2),
    ("vmstat_update", 0x70, "t", None, 1),
    ("psi_avgs_work", 0xd0, "t", None, 1),
    ("rcu_gp_kthread", 0x190, "t", None, 1),
)

# (name, size, type, module, nargs): type 'T' global text, 't' static text; nargs is the C
# function's argument count when the model calls it through a kprobe site, None when the model
# has no call site for it (it exists for addresses: call sites, drop locations), so it cannot
# be probed
FUNCTIONS: tuple[tuple[str, int, str, str | None, int | None], ...] = (
    ("_stext", 0, "T", None, None),
    ("kmem_cache_alloc_noprof", 0x2b0, "T", None, 2),
    ("kmem_cache_free", 0x3f0, "T", None, 2),
    ("__kmalloc_noprof", 0x310, "T", None, 2),
    ("__kmalloc_large_node_noprof", 0xd0, "T", None, 3),
    ("kfree", 0x2e0, "T", None, 1),
    ("__alloc_skb", 0x2d0, "T", None, 4),
    ("__netdev_alloc_skb", 0x1a0, "T", None, 3),
    ("skb_put", 0x50, "T", None, None),
    ("skb_release_data", 0x1c0, "t", None, 2),
    ("kfree_skbmem", 0x90, "t", None, 1),
    ("__kfree_skb", 0x30, "T", None, 1),
    ("sk_skb_reason_drop", 0x110, "T", None, 3),
    ("consume_skb", 0x80, "T", None, 1),
    ("eth_type_trans", 0x160, "T", None, 2),
    ("__dev_queue_xmit", 0xf10, "T", None, 2),
    ("dev_hard_start_xmit", 0x130, "T", None, 4),
    ("loopback_xmit", 0x150, "t", None, 2),
    ("netif_rx", 0x100, "T", None, 1),
    ("enqueue_to_backlog", 0x2a0, "t", None, 3),
    ("netif_receive_skb", 0xd0, "T", None, 1),
    ("__netif_receive_skb", 0x70, "t", None, 1),
    ("__netif_receive_skb_core", 0x1180, "t", None, 3),
    ("process_backlog", 0x1b0, "t", None, 2),
    ("napi_poll", 0x220, "t", None, 2),
    ("net_rx_action", 0x3a0, "t", None, 0),
    ("ip_rcv", 0xe0, "T", None, 4),
    ("ipv6_rcv", 0xf0, "T", None, 4),
    ("icmp_rcv", 0x370, "T", None, 1),
    ("virtnet_poll", 0x4e0, "t", None, 2),
    ("dup_task_struct", 0x2a0, "t", None, None),
    ("tracing_mark_write", 0x1f0, "t", None, None),   # trace_marker entries' ip (trace.c)
    *TASK_FUNCTIONS,
    # the network data path and sockets below the IP layer (kernel_model/net.py, sockets.py)
    ("kmalloc_reserve", 0x150, "t", None, 4),
    ("skb_clone", 0xd0, "T", None, 2),
    ("__netif_rx", 0x80, "T", None, 1),
    ("ip_rcv_core", 0x360, "t", None, None),
    ("ip_rcv_finish", 0x90, "t", None, 3),
    ("ip_local_deliver", 0xc0, "T", None, 1),
    ("ip_local_deliver_finish", 0x70, "t", None, 3),
    ("ip_protocol_deliver_rcu", 0x1b0, "T", None, 3),
    ("ip6_input", 0x60, "T", None, 1),
    ("ip6_protocol_deliver_rcu", 0x500, "T", None, 4),
    ("ip_local_out", 0x50, "T", None, 3),
    ("ip_output", 0xf0, "T", None, 3),
    ("ip_finish_output2", 0x530, "t", None, 3),
    ("udp_rcv", 0x20, "T", None, 1),
    ("udpv6_rcv", 0x20, "t", None, 1),
    ("__udp4_lib_rcv", 0xbd0, "T", None, 3),
    ("__udp6_lib_rcv", 0xc70, "t", None, 3),
    ("udp_unicast_rcv_skb", 0x90, "t", None, 3),
    ("udp_queue_rcv_skb", 0x1a0, "t", None, 2),
    ("udp_queue_rcv_one_skb", 0x4c0, "t", None, 2),
    ("__udp_enqueue_schedule_skb", 0x2f0, "T", None, 2),
    ("sock_def_readable", 0xa0, "T", None, 1),
    ("udp_recvmsg", 0x4d0, "T", None, 5),
    ("skb_consume_udp", 0xb0, "T", None, 3),
    ("skb_copy_datagram_iter", 0x90, "T", None, 4),
    ("skb_free_datagram", 0x20, "T", None, 2),
    ("sock_sendmsg", 0xc0, "T", None, 2),
    ("sock_recvmsg", 0x80, "T", None, 3),
    ("ping_v4_sendmsg", 0x5a0, "t", None, 3),
    ("ping_rcv", 0x100, "T", None, 1),
    ("ping_queue_rcv_skb", 0x40, "T", None, 2),
    ("ping_recvmsg", 0x2e0, "T", None, 5),
    ("tcp_v4_rcv", 0x1100, "T", None, 1),
    ("tcp_v6_rcv", 0x1090, "t", None, 1),
    ("tcp_v4_do_rcv", 0x2a0, "T", None, 2),
    ("tcp_rcv_established", 0x7c0, "T", None, 2),
    ("tcp_rcv_state_process", 0x1320, "T", None, 2),
    ("tcp_v4_send_reset", 0x4f0, "t", None, 3),
    ("tcp_set_state", 0x1a0, "T", None, 2),
    ("tcp_v4_connect", 0x5b0, "T", None, 3),
    ("tcp_finish_connect", 0x120, "T", None, 2),
    ("tcp_conn_request", 0xa80, "T", None, 4),
    ("inet_csk_clone_lock", 0x1c0, "T", None, 3),
    ("tcp_sendmsg", 0x50, "T", None, 3),
    ("tcp_recvmsg", 0x1d0, "T", None, 5),
    ("tcp_rcv_space_adjust", 0x220, "T", None, 1),
    ("__tcp_transmit_skb", 0xcd0, "t", None, 5),
    ("tcp_retransmit_timer", 0x6b0, "T", None, 1),
    ("tcp_retransmit_skb", 0x90, "T", None, 3),
    ("tcp_close", 0x80, "T", None, 2),
    ("tcp_fin", 0x1c0, "T", None, 1),
    ("tcp_done", 0xd0, "T", None, 1),
    ("tcp_v4_destroy_sock", 0x170, "T", None, 1),
    ("tcp_send_ack", 0x20, "T", None, 1),
    ("inet_listen", 0xe0, "T", None, 2),
    ("sk_prot_alloc", 0x110, "t", None, None),
    ("tcp_data_queue", 0xf30, "t", None, None),
    ("nf_hook_slow", 0xe0, "T", None, None),
    # locks the model takes on its paths (sched_tick's run-queue lock, a seq_file read's
    # m->lock), execve's common body, and sys_ni_syscall (x86-64's unimplemented syscalls
    # return from __x64_sys_ni_syscall without it, so nothing calls it)
    ("raw_spin_rq_lock_nested", 0x40, "T", None, 2),
    ("raw_spin_rq_unlock", 0x20, "T", None, 1),
    ("_raw_spin_lock", 0x30, "T", None, 1),
    ("_raw_spin_unlock", 0x20, "T", None, 1),
    ("mutex_lock", 0x30, "T", None, 1),
    ("mutex_unlock", 0x30, "T", None, 1),
    ("do_execveat_common.isra.0", 0x1f0, "t", None, 5),
    ("sys_ni_syscall", 0x10, "T", None, None),
    # tracefs: an event's directory (event_create_dir, when a dynamic event is added)
    ("eventfs_create_dir", 0x1d0, "T", None, 5),
    # the last fput of a file (__fput, task work on the way back to user space)
    ("dput", 0x270, "T", None, 1),
    ("_etext", 0, "T", None, None),
    ("skb_bench_run", 0x90, "t", "skb_bench", None),
    ("skb_bench_init", 0x40, "t", "skb_bench", None),
)
# functions built without the ftrace hook (kernel/trace/ is compiled without -pg): not in
# available_filter_functions
NOTRACE = frozenset({"tracing_mark_write"})
MODULE_TEXT_BASE = 0xffffffffc0000000
REAL_SYMBOLS_FILE = Path(__file__).resolve().parent / "data" / "kallsyms_text.gz"
REAL_ONLY_BASE = KERNEL_TEXT_BASE + 0x0100_0000     # past any modelled text
REAL_ONLY_SIZE = 0x40

# .rodata, past the stand-in text of the real-only symbols (2 MiB aligned, as the kernel's
# sections are); the data symbols the model has bytes for, in their layout order:
# (name, type, bytes). Both are ``const char []`` (nm type R), aligned to 32 bytes as gcc
# aligns arrays of that size on x86-64.
RODATA_BASE = KERNEL_TEXT_BASE + 0x0180_0000
DATA_SYMBOLS: tuple[tuple[str, str, bytes], ...] = (
    ("linux_banner", "R", LINUX_BANNER.encode() + b"\0"),
    ("linux_proc_banner", "R", LINUX_PROC_BANNER.encode() + b"\0"),
)

_real_names: tuple[list[str], list[str], dict[str, int], dict[str, int]] | None = None


def real_text_symbols() -> tuple[list[str], list[str], dict[str, int], dict[str, int]]:
    """The 6.18 text symbols: (names, types, first index by name, count by name), read once
    per process (the file is immutable package data)."""
    global _real_names
    if _real_names is None:
        names: list[str] = []
        types: list[str] = []
        first: dict[str, int] = {}
        count: dict[str, int] = {}
        with gzip.open(REAL_SYMBOLS_FILE, "rt", encoding="ascii") as f:
            for i, line in enumerate(f):
                typ, _, name = line.rstrip("\n").partition(" ")
                names.append(name)
                types.append(typ)
                first.setdefault(name, i)
                count[name] = count.get(name, 0) + 1
        _real_names = (names, types, first, count)
    return _real_names


def _real_at(i: int) -> Symbol:
    names, types, _first, _count = real_text_symbols()
    return Symbol(REAL_ONLY_BASE + i * REAL_ONLY_SIZE, REAL_ONLY_SIZE, types[i], names[i],
                  None, None)


class Symbol(NamedTuple):
    addr: int
    size: int
    type: str
    name: str
    module: str | None
    nargs: int | None      # None: the model has no kprobe site for it


class Kallsyms:
    """Lookup by name (``addr``, ``symbol``) and by address (``lookup``, ``sprint_symbol``)."""

    def __init__(self, mem: Memory | None = None) -> None:
        self._symbols: list[Symbol] = []
        self._place([f for f in FUNCTIONS if f[3] is None], KERNEL_TEXT_BASE, mem)
        self._place([f for f in FUNCTIONS if f[3] is not None], MODULE_TEXT_BASE, mem)
        self._symbols.sort()
        self._addrs = [s.addr for s in self._symbols]
        self._by_name = {s.name: s for s in self._symbols}
        self._data = _place_data(mem)
        self._data_by_name = {s.name: s for s in self._data}

    def _place(self, funcs: list, base: int, mem: Memory | None) -> None:
        """Lay ``funcs`` out from ``base``; with memory, map their text there."""
        total = sum((f[1] + 15) & ~15 for f in funcs)
        if mem is not None:
            region = mem.map(total, "kernel text", at=base)
            region.buf[:] = bytes([INT3]) * region.size
        addr = base
        for name, size, typ, module, nargs in funcs:
            self._symbols.append(Symbol(addr, size, typ, name, module, nargs))
            if mem is not None and size:
                mem.write(addr, ENDBR64)
            addr += (size + 15) & ~15

    def symbol(self, name: str) -> Symbol:
        """The symbol called ``name`` (modelled, a data symbol, else of the real 6.18 list);
        KeyError if there is none."""
        s = self._by_name.get(name) or self._data_by_name.get(name)
        if s is None:
            s = self._real_symbol(name)
            if s is None:
                raise KeyError(name)
        return s

    def _real_symbol(self, name: str) -> Symbol | None:
        """A symbol of the real list the model does not run, at its stand-in address."""
        i = real_text_symbols()[2].get(name)
        return None if i is None else _real_at(i)

    def real_count(self, name: str) -> int:
        """How many text symbols of a real 6.18 build are called ``name`` (0: not a symbol)."""
        return real_text_symbols()[3].get(name, 0)

    def is_modelled(self, name: str) -> bool:
        """Whether ``name`` is in the model's own table (its kallsyms)."""
        return name in self._by_name

    def addr(self, name: str) -> int:
        return self._by_name[name].addr

    def __contains__(self, name: str) -> bool:
        return (name in self._by_name or name in self._data_by_name
                or self._real_symbol(name) is not None)

    def address_of(self, name: str) -> int | None:
        """The address of ``name``, or None if there is no such symbol."""
        s = self._by_name.get(name) or self._data_by_name.get(name) or self._real_symbol(name)
        return None if s is None else s.addr

    def find(self, addr: int) -> Symbol | None:
        """The symbol of the function (or data object) containing ``addr``, or None."""
        if RODATA_BASE <= addr < MODULE_TEXT_BASE:
            return next((s for s in self._data if s.addr <= addr < s.addr + s.size), None)
        if REAL_ONLY_BASE <= addr < MODULE_TEXT_BASE:
            i = (addr - REAL_ONLY_BASE) // REAL_ONLY_SIZE
            return _real_at(i) if i < len(real_text_symbols()[0]) else None
        i = bisect.bisect_right(self._addrs, addr) - 1
        while i >= 0 and self._symbols[i].size == 0 and self._symbols[i].addr != addr:
            i -= 1                       # markers like _etext contain nothing
        if i < 0:
            return None
        s = self._symbols[i]
        return s if addr - s.addr < max(s.size, 1) else None

    def lookup(self, addr: int) -> tuple[str, int, int] | None:
        """``(name, offset, size)`` of the function containing ``addr``, or None."""
        s = self.find(addr)
        return None if s is None else (s.name, addr - s.addr, s.size)

    def __iter__(self) -> Iterator[Symbol]:
        return iter(self._symbols)

    def listing(self) -> list[Symbol]:
        """Every symbol ``/proc/kallsyms`` shows, in address order: the modelled ones, the
        real 6.18 text symbols the model does not model (each at its stand-in address; a
        real name the model has, and its ``__pfx_`` padding symbol, only once: the
        model's), and the data symbols."""
        return sorted((*self._symbols, *_real_only_listing(frozenset(self._by_name)),
                       *self._data), key=lambda s: (s.addr, s.name))


_real_listing: tuple[frozenset[str], list[Symbol]] | None = None


def _real_only_listing(modelled: frozenset[str]) -> list[Symbol]:
    """The real-only symbols for ``listing``, made once per process and table."""
    global _real_listing
    if _real_listing is None or _real_listing[0] != modelled:
        names = real_text_symbols()[0]
        _real_listing = (modelled, [
            _real_at(i) for i, name in enumerate(names)
            if name not in modelled and name.removeprefix("__pfx_") not in modelled])
    return _real_listing[1]


def _place_data(mem: Memory | None) -> list[Symbol]:
    """Lay ``DATA_SYMBOLS`` out from ``RODATA_BASE``; with memory, map and fill them."""
    out: list[Symbol] = []
    addr = RODATA_BASE
    for name, typ, data in DATA_SYMBOLS:
        out.append(Symbol(addr, len(data), typ, name, None, None))
        addr = (addr + len(data) + 31) & ~31
    if mem is not None:
        mem.map(addr - RODATA_BASE, "kernel rodata", at=RODATA_BASE)
        for sym, (_name, _typ, data) in zip(out, DATA_SYMBOLS, strict=True):
            mem.write(sym.addr, data)
    return out

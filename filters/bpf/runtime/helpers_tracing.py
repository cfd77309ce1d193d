"""Helpers for tracing programs (kprobe and tracepoint events), with the kernel's ids and semantics.
Which id each implements, and who may call it, is ``tracesim.filters.bpf.runtime.helper_table``.

The engine's ``vm.env`` is a ``TraceEnv``-like object built by ``tracesim.filters.bpf.event_filter``: it
gives the running CPU, the modelled kernel (memory for probe_read, clocks, current task) and the
trace array the program runs in (for bpf_trace_printk).  Helpers never see kernel objects any other
way, so a program reaches kernel memory only through them.
"""
from __future__ import annotations

import errno
import re
import weakref
from typing import Any

from tracesim.filters.bpf.runtime.helpers import VMContext
from tracesim.filters.bpf.runtime.helpers_maps import current_cpu
from tracesim.filters.bpf.vm.memory import VMError
from tracesim.kernel_model.mm.memory import PAGE_SHIFT, TASK_SIZE

M64 = 0xFFFFFFFFFFFFFFFF
TRACE_PRINTK_SIZE = 1024     # BPF_TRACE_PRINTK_SIZE
# x86-64 kernel half: the modelled kernel's memory lives here, the VM's own regions (stack, maps,
# context) far below it, so an address says which side to read without trying both.
KERNEL_HALF = 0xFFFF_8000_0000_0000
MAX_PRINTK_ARGS = 3


def _neg(err: int) -> int:
    return -err & M64


# ---------------------------------------------------------------- memory

def _read_any(vm: VMContext, addr: int, size: int) -> tuple[int, bytes]:
    """probe_read semantics over both address spaces: BPF-visible memory (stack, maps, ctx) and
    the modelled kernel's memory. A fault gives ``-EFAULT`` and zeros."""
    env = vm.env
    if addr >= KERNEL_HALF and env is not None:
        return env.kernel.mem.probe_read(addr, size)
    try:
        return 0, vm.mem.read(addr, size)
    except VMError:
        pass
    if env is None:
        return -errno.EFAULT, bytes(size)
    return env.kernel.mem.probe_read(addr, size)


def probe_read_kernel(vm: VMContext, r1: int, r2: int, r3: int, r4: int = 0, r5: int = 0) -> int:
    env = vm.env
    stack = vm.mem.regions[0]          # the usual destination: a buffer on the BPF stack
    start = r1 - stack.start
    to_stack = start >= 0 and r1 + r2 <= stack.end
    if to_stack and r3 >= KERNEL_HALF and env is not None and r2 > 0:
        # The hot case (a field of a kernel object -> stack), copied in place from the region
        # that holds it; anything else (a fault, a read across objects or regions) takes the
        # general path below.
        region = env.kpages.get(r3 >> PAGE_SHIFT)
        off = r3 - region.base if region is not None else 0
        end = off + r2
        if region is not None and end <= region.size:
            live = region.live
            if live is None:
                readable = True
            else:                      # a slab: the object must be allocated (Region.accessible)
                first = off // region.obj_size
                readable = (live[first] if first == (end - 1) // region.obj_size < len(live)
                            else region.accessible(off, end))
            if readable:
                stack.buf[start:start + r2] = region.buf[off:end]
                return 0
    err, data = _read_any(vm, r3, r2)
    if to_stack:
        stack.buf[start:start + r2] = data
    else:
        vm.mem.write(r1, data)
    return err & M64


def _read_str(vm: VMContext, addr: int, size: int) -> tuple[int, bytes]:
    if size <= 0:
        return 0, b""
    env = vm.env
    if addr >= KERNEL_HALF and env is not None:
        return env.kernel.mem.probe_read_str(addr, size)
    try:                      # a string in BPF memory (stack, map value)
        out = bytearray()
        while len(out) < size - 1:
            c = vm.mem.read(addr + len(out), 1)
            if c == b"\0":
                break
            out += c
        return len(out) + 1, bytes(out) + b"\0"
    except VMError:
        pass
    if env is None:
        return -errno.EFAULT, bytes(size)
    return env.kernel.mem.probe_read_str(addr, size)


def probe_read_kernel_str(vm: VMContext, r1: int, r2: int, r3: int, *_: int) -> int:
    n, data = _read_str(vm, r3, r2)
    vm.mem.write(r1, data)
    return n & M64


def _bpf_memory(vm: VMContext, addr: int) -> bool:
    """Whether ``addr`` is in the program's own memory (stack, maps, context): kernel memory,
    though the VM lays it out low."""
    return any(region.start <= addr < region.end for region in vm.mem.regions)


def _user_env(vm: VMContext, addr: int) -> Any:
    """The environment whose task's user memory holds ``addr``, or None (no kernel, or the
    address is the program's own memory, which is the kernel's)."""
    env = vm.env
    if env is None or addr >= KERNEL_HALF or _bpf_memory(vm, addr):
        return None
    return env


def probe_read_user(vm: VMContext, r1: int, r2: int, r3: int, *_: int) -> int:
    """bpf_probe_read_user: ``copy_from_user_nofault`` from the current task's user memory
    (zeros and -EFAULT where it faults)."""
    env = _user_env(vm, r3)
    err, data = ((-errno.EFAULT, bytes(r2)) if env is None
                 else env.kernel.mem.probe_read_user(r3, r2))
    vm.mem.write(r1, data)
    return err & M64


def probe_read_user_str(vm: VMContext, r1: int, r2: int, r3: int, *_: int) -> int:
    """bpf_probe_read_user_str: ``strncpy_from_user_nofault``; the length with the NUL, or
    -EFAULT with the buffer cleared."""
    if r2 <= 0:
        return 0
    env = _user_env(vm, r3)
    n, data = ((-errno.EFAULT, bytes(r2)) if env is None
               else env.kernel.mem.probe_read_user_str(r3, r2))
    vm.mem.write(r1, data)
    return n & M64


def probe_read_compat(vm: VMContext, r1: int, r2: int, r3: int, r4: int = 0, r5: int = 0) -> int:
    """bpf_probe_read (x86-64, whose halves do not overlap): a user address is read as user
    memory, anything else as probe_read_kernel reads it."""
    if r3 < TASK_SIZE and _user_env(vm, r3) is not None:
        return probe_read_user(vm, r1, r2, r3)
    return probe_read_kernel(vm, r1, r2, r3, r4, r5)


def probe_read_compat_str(vm: VMContext, r1: int, r2: int, r3: int, *_: int) -> int:
    """bpf_probe_read_str: a user string below TASK_SIZE, else probe_read_kernel_str's."""
    if r3 < TASK_SIZE and _user_env(vm, r3) is not None:
        return probe_read_user_str(vm, r1, r2, r3)
    return probe_read_kernel_str(vm, r1, r2, r3)


# ---------------------------------------------------------------- context

def ktime_get_ns(vm: VMContext, *_: int) -> int:
    clock = getattr(vm.env, "ktime_ns", None)
    if clock is None:
        raise VMError("bpf_ktime_get_ns: this run's env has no kernel clock")
    return clock() & M64


def get_smp_processor_id(vm: VMContext, *_: int) -> int:
    return current_cpu(vm)


def get_current_pid_tgid(vm: VMContext, *_: int) -> int:
    task = vm.env.task()
    return ((task.tgid << 32) | (task.pid & 0xFFFFFFFF)) & M64


def get_current_uid_gid(vm: VMContext, *_: int) -> int:
    """gid << 32 | uid of the current task (the model's tasks run as root unless they say)."""
    task = vm.env.task()
    return (getattr(task, "gid", 0) << 32 | getattr(task, "uid", 0)) & M64


def ktime_get_boot_ns(vm: VMContext, *_: int) -> int:
    """CLOCK_BOOTTIME: the model never suspends, so it is the monotonic clock plus the boot
    offset the env's kernel keeps (0 without one)."""
    clock = getattr(vm.env, "boot_ns", None)
    return (clock() if clock is not None else ktime_get_ns(vm)) & M64


def get_func_ip(vm: VMContext, *_: int) -> int:
    """The traced function's address (kprobe at a function entry, fentry/fexit), or 0."""
    ip = getattr(vm.env, "func_ip", None)
    return ip() & M64 if ip is not None else 0


def get_attach_cookie(vm: VMContext, *_: int) -> int:
    """The bpf_cookie the program's link was attached with (0 without one)."""
    cookie = getattr(vm.env, "attach_cookie", None)
    return cookie() & M64 if cookie is not None else 0


def _func_nargs(vm: VMContext) -> int:
    nargs = getattr(vm.env, "func_nargs", None)
    return nargs() if nargs is not None else 0


def get_func_arg(vm: VMContext, r1: int, r2: int, r3: int, *_: int) -> int:
    """fentry/fexit: argument ``r2`` of the traced function (ctx[r2]) into ``*r3``."""
    if r2 & 0xFFFF_FFFF >= _func_nargs(vm):
        return _neg(errno.EINVAL)
    vm.mem.write(r3, vm.mem.read(r1 + 8 * (r2 & 0xFFFF_FFFF), 8))
    return 0


def get_func_ret(vm: VMContext, r1: int, r2: int, *_: int) -> int:
    """fexit: the traced function's return value (ctx[nargs]) into ``*r2``."""
    if not getattr(vm.env, "func_returned", False):
        return _neg(errno.EOPNOTSUPP)
    vm.mem.write(r2, vm.mem.read(r1 + 8 * _func_nargs(vm), 8))
    return 0


def get_func_arg_cnt(vm: VMContext, *_: int) -> int:
    return _func_nargs(vm)


# per-CPU variables (kernel_model.percpu): each CPU's instance is a small read-only buffer mapped
# into the engine's memory, refreshed from the model at every bpf_per_cpu_ptr/this_cpu_ptr
_PERCPU_BUFS: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], bytearray]] = \
    weakref.WeakKeyDictionary()


def _percpu_instance(vm: VMContext, symbol: int, cpu: int) -> int:
    from tracesim.kernel_model import percpu
    var = percpu.BY_OFFSET.get(symbol)
    kernel = getattr(vm.env, "kernel", None)
    ncpus = kernel.ncpus if kernel is not None else 1
    if var is None or cpu >= ncpus:
        return 0
    bufs = _PERCPU_BUFS.setdefault(vm.mem, {})
    buf = bufs.get((var.name, cpu))
    if buf is None:
        buf = bufs[(var.name, cpu)] = bytearray(var.size)
    buf[:] = percpu.value(kernel, var, cpu)
    return vm.mem.address_of(buf, writable=False, name=f"percpu {var.name} cpu{cpu}")


def per_cpu_ptr(vm: VMContext, r1: int, r2: int, *_: int) -> int:
    """CPU ``r2``'s instance of the per-CPU variable ``r1`` (NULL past the last CPU)."""
    return _percpu_instance(vm, r1, r2 & 0xFFFF_FFFF)


def this_cpu_ptr(vm: VMContext, r1: int, *_: int) -> int:
    """This CPU's instance of the per-CPU variable ``r1``."""
    return _percpu_instance(vm, r1, current_cpu(vm))


def get_current_task(vm: VMContext, *_: int) -> int:
    """bpf_get_current_task (and _btf): the address of the current task's task_struct in the
    model's memory, where the machine mirrors its pid, tgid, comm and CPU at 6.18 offsets."""
    return vm.env.task().addr & M64


def get_current_comm(vm: VMContext, r1: int, r2: int, *_: int) -> int:
    if r2 == 0:
        return _neg(errno.EINVAL)
    comm = vm.env.task().comm.encode()[:r2 - 1]
    vm.mem.write(r1, comm + bytes(r2 - len(comm)))
    return 0


def get_prandom_u32(vm: VMContext, *_: int) -> int:
    prandom = getattr(vm.env, "prandom_u32", None)     # a socket filter's env is the skb
    return prandom() if prandom is not None else 0


# ---------------------------------------------------------------- bpf_trace_printk

# bpf_bprintf_prepare(): "[0 +-][width]" then an optional l/ll and one of d i u x X, or %c, %s,
# or %p with the extensions the kernel accepts.
_CONV = re.compile(r"%(?P<flags>[-+ 0]*)(?P<width>[1-9][0-9]*)?"
                   r"(?:(?P<p>p(?P<pext>[KxBSsi]|I[46]|i[46]|ks|us)?)"
                   r"|(?P<len>ll|l)?(?P<conv>[diuxX])|(?P<c>c)|(?P<s>s))")


def format_printk(vm: VMContext, fmt: bytes, args: list[int],
                  max_args: int = MAX_PRINTK_ARGS) -> str | None:
    """The message bpf_trace_printk prints (``max_args``: 12 for the vprintk/snprintf
    family), or None where the kernel returns -EINVAL."""
    text = fmt.decode("latin-1")
    if any(not (ch.isprintable() or ch.isspace()) or ord(ch) > 127 for ch in text):
        return None
    out: list[str] = []
    i = 0
    argi = 0
    while i < len(text):
        ch = text[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        if text.startswith("%%", i):
            out.append("%")
            i += 2
            continue
        m = _CONV.match(text, i)
        if m is None or argi >= max_args or argi >= len(args):
            return None
        val = args[argi]
        argi += 1
        out.append(_render(vm, m, val))
        i = m.end()
    return "".join(out)


def _render(vm: VMContext, m: re.Match, val: int) -> str:
    flags, width = m["flags"], m["width"] or ""
    spec = "%" + flags + width
    if m["p"]:
        ext = m["pext"] or ""
        if ext in ("x", "K", "B"):
            return (spec + "s") % f"{val:016x}"
        if ext in ("S", "s"):
            sym = vm.env.symbol(val) if vm.env is not None else None
            if sym is None:
                return (spec + "s") % f"0x{val:x}"
            name, off, size = sym
            return (spec + "s") % (f"{name}+0x{off:x}/0x{size:x}" if ext == "S" else name)
        if ext in ("i4", "I4"):
            err, raw = _read_any(vm, val, 4)
            sep = "." if ext == "I4" else ""
            return (spec + "s") % (".".join(str(b) for b in raw) if sep else
                                   "".join(f"{b:03d}" for b in raw))
        if ext in ("i6", "I6"):
            err, raw = _read_any(vm, val, 16)
            words = [raw[k:k + 2].hex() for k in range(0, 16, 2)]
            return (spec + "s") % (":".join(words) if ext == "I6" else "".join(words))
        if ext in ("ks", "us"):
            n, s = _read_str(vm, val, TRACE_PRINTK_SIZE)
            return (spec + "s") % s.rstrip(b"\0").decode("latin-1") if n > 0 else "(efault)"
        hashed = vm.env.hash_ptr(val) if vm.env is not None else val
        return (spec + "s") % (f"{hashed:016x}" if val else "0000000000000000")
    if m["c"]:
        return (spec + "c") % chr(val & 0xFF)
    if m["s"]:
        n, s = _read_str(vm, val, TRACE_PRINTK_SIZE)
        return (spec + "s") % (s.rstrip(b"\0").decode("latin-1") if n > 0 else "(efault)")
    bits = 64 if m["len"] else 32
    val &= (1 << bits) - 1
    conv = m["conv"]
    if conv in "di" and val >> (bits - 1):
        val -= 1 << bits
    return (spec + {"i": "d", "u": "d"}.get(conv, conv)) % val


def trace_printk(vm: VMContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    if r2 == 0 or r2 > TRACE_PRINTK_SIZE:
        return _neg(errno.EINVAL)
    fmt = vm.mem.read(r1, r2)
    nul = fmt.find(b"\0")
    if nul < 0:
        return _neg(errno.EINVAL)
    msg = format_printk(vm, fmt[:nul], [r3, r4, r5])
    if msg is None:
        return _neg(errno.EINVAL)
    msg = msg[:TRACE_PRINTK_SIZE - 1]
    vm.env.trace_printk(msg)
    return len(msg.encode("latin-1"))


# ---------------------------------------------------------------- vprintk, snprintf

MAX_BPRINTF_VARARGS = 12


def _varargs(vm: VMContext, data: int, data_len: int) -> list[int] | None:
    """The u64 arguments of a vprintk/snprintf call, None where the kernel says -EINVAL."""
    if data_len % 8 or data_len > MAX_BPRINTF_VARARGS * 8 or (data_len and not data):
        return None
    raw = vm.mem.read(data, data_len)
    return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, data_len, 8)]


def trace_vprintk(vm: VMContext, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
    """bpf_trace_vprintk(fmt, fmt_size, data, data_len): bpf_trace_printk with up to 12
    arguments in an array of u64."""
    fmt = vm.mem.read(r1, r2) if 0 < r2 <= TRACE_PRINTK_SIZE else b""
    msg = _format_var_text(vm, fmt, r3, r4)
    if msg is None:
        return _neg(errno.EINVAL)
    msg = msg[:TRACE_PRINTK_SIZE - 1]
    vm.env.trace_printk(msg)
    return len(msg.encode("latin-1"))


def snprintf(vm: VMContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_snprintf(str, str_size, fmt, data, data_len): the formatted text, cut to
    ``str_size`` with its NUL; returns the length it would have plus one."""
    fmt = vm.mem.read(r3, min(TRACE_PRINTK_SIZE, _readable(vm, r3)))
    msg = _format_var_text(vm, fmt, r4, r5)
    if msg is None:
        return _neg(errno.EINVAL)
    out = msg.encode("latin-1")
    if r2:
        cut = out[:r2 - 1] + b"\0"
        vm.mem.write(r1, cut)
    return len(out) + 1


def _readable(vm: VMContext, addr: int) -> int:
    region = vm.mem.find(addr, 1)
    return region.end - addr


def _format_var_text(vm: VMContext, fmt: bytes, data: int, data_len: int) -> str | None:
    args = _varargs(vm, data, data_len)
    nul = fmt.find(b"\0")
    if args is None or nul < 0:
        return None
    return format_printk(vm, fmt[:nul], args, MAX_BPRINTF_VARARGS)

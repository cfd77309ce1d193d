"""Stack helpers (kernel/bpf/stackmap.c): ``bpf_get_stackid`` (27) into a ``STACK_TRACE`` map and
``bpf_get_stack`` (67) into a buffer, over the modelled kernel's call stack.

The stack comes from one place, ``modelled_call_stack``: the env's ``kernel_stack()`` (return
addresses of the modelled kernel functions active on this CPU, innermost first); an env
without one (the model's call stack is not connected to it) has an empty stack.  The model
keeps no user stacks: a ``BPF_F_USER_STACK`` request finds an empty one (-EFAULT for
get_stackid), as for a kernel thread.
"""
from __future__ import annotations

import errno

from tracesim.filters.bpf.runtime.helpers import VMContext
from tracesim.filters.bpf.runtime.helpers_maps import M64, _map, _neg
from tracesim.filters.bpf.runtime.maps import BPF_F_REUSE_STACKID, MAP_TYPE_STACK_TRACE, PERF_MAX_STACK
from tracesim.filters.bpf.vm.memory import VMError

BPF_F_SKIP_FIELD_MASK = 0xFF
BPF_F_USER_STACK = 1 << 8
BPF_F_FAST_STACK_CMP = 1 << 9
BPF_F_USER_BUILD_ID = 1 << 11


def modelled_call_stack(vm: VMContext) -> list[int]:
    """Kernel return addresses of the current CPU, innermost first (what get_perf_callchain
    gives for a kernel stack)."""
    env = vm.env
    stack = getattr(env, "kernel_stack", None)
    return list(stack()) if stack is not None else []


def _trace(vm: VMContext, flags: int) -> list[int]:
    return [] if flags & BPF_F_USER_STACK else modelled_call_stack(vm)


def get_stackid(vm: VMContext, r1: int, r2: int, r3: int, *_: int) -> int:
    m = _map(vm, r2)
    if m.map_type != MAP_TYPE_STACK_TRACE:
        raise VMError(f"map {m.name} is not a stack trace map")
    if r3 & ~(BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP |
              BPF_F_REUSE_STACKID):
        return _neg(errno.EINVAL)
    skip = r3 & BPF_F_SKIP_FIELD_MASK
    ips = _trace(vm, r3)[skip:skip + min(m.value_size // 8, PERF_MAX_STACK)]
    if not ips:
        return _neg(errno.EFAULT)
    return m.store(tuple(ips), r3) & M64


def get_stack(vm: VMContext, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
    """Copy the stack's ips to ``r2`` (``r3`` bytes, a multiple of 8): the bytes copied; the
    rest of the buffer is zeroed (all of it on an error)."""
    user_build_id = r4 & BPF_F_USER_BUILD_ID
    err = -errno.EINVAL
    ok_flags = BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_USER_BUILD_ID
    if not r4 & ~ok_flags and not (user_build_id and not r4 & BPF_F_USER_STACK) and \
            not r3 % (32 if user_build_id else 8):
        skip = r4 & BPF_F_SKIP_FIELD_MASK
        trace = _trace(vm, r4)
        if len(trace) >= skip:
            ips = trace[skip:skip + r3 // 8]
            data = b"".join(ip.to_bytes(8, "little") for ip in ips)
            vm.mem.write(r2, data + bytes(r3 - len(data)))
            return len(data)
        err = -errno.EFAULT
    vm.mem.write(r2, bytes(r3))
    return err & M64

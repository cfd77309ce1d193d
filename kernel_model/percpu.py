"""The model's per-CPU variables (the kernel's ``.data..percpu``): what a BPF program reaches
through a typed ``__ksym`` extern and ``bpf_per_cpu_ptr`` / ``bpf_this_cpu_ptr``.

Only variables the model keeps honestly are here, with their 6.18 names and C types (they are
VARs of the 6.18 BTF's ``.data..percpu`` DATASEC, as pahole emits every per-CPU variable):

* ``current_task`` (``struct task_struct *``): the task running on the CPU;
* ``cpu_number`` (``int``): the CPU's number (``smp_processor_id()``);
* ``this_cpu_off`` (``unsigned long``): the CPU's per-CPU offset (``__per_cpu_offset[cpu]``).

A per-CPU variable's symbol is an offset into the per-CPU area (``offset``, the model's own
layout of its cache-hot section); CPU ``n``'s instance lives at ``per_cpu_offset(n) + offset``.
``value(kernel, var, cpu)`` is the instance's bytes now (the model writes no per-CPU memory:
the value is read from the machine when asked).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PER_CPU_AREA = 0xFFFF_8880_7D80_0000        # CPU 0's per-CPU area in the direct map
PER_CPU_STRIDE = 0x40000                     # one area per CPU


@dataclass(frozen=True)
class PercpuVar:
    name: str
    ctype: str                   # the C type, as the 6.18 BTF spells it
    size: int
    offset: int                  # the symbol's value: its offset in a per-CPU area


PERCPU_VARS: tuple[PercpuVar, ...] = (
    PercpuVar("current_task", "struct task_struct *", 8, 0x20000),
    PercpuVar("cpu_number", "int", 4, 0x20008),
    PercpuVar("this_cpu_off", "unsigned long", 8, 0x20010),
)
BY_NAME = {v.name: v for v in PERCPU_VARS}
BY_OFFSET = {v.offset: v for v in PERCPU_VARS}


def per_cpu_offset(cpu: int) -> int:
    """``__per_cpu_offset[cpu]``."""
    return PER_CPU_AREA + cpu * PER_CPU_STRIDE


def value(kernel: Any, var: PercpuVar, cpu: int) -> bytes:
    """CPU ``cpu``'s instance of ``var`` now (``kernel`` may be None: no task is known)."""
    if var.name == "cpu_number":
        v = cpu
    elif var.name == "this_cpu_off":
        v = per_cpu_offset(cpu)
    else:                                             # current_task
        task = kernel.machine.cpus[cpu].task if kernel is not None else None
        v = getattr(task, "addr", 0) or 0
    return v.to_bytes(var.size, "little", signed=v < 0)

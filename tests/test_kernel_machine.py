"""CPUs, tasks and contexts: preempt_count encoding, irq/softirq/NMI sections, CPU switching."""
from __future__ import annotations

import pytest
from tracesim.kernel_model.clock import CLOCK_NAMES, Clock, trace_clock_line
from tracesim.kernel_model.machine import (
    FIRST_USER_PID,
    HARDIRQ_OFFSET,
    NMI_OFFSET,
    SOFTIRQ_DISABLE_OFFSET,
    SOFTIRQ_OFFSET,
    Machine,
)
from tracesim.kernel_model.mm.memory import Memory
from tracesim.kernel_model.mm.slab import Slab
from tracesim.kernel_model.trace.printk import Printk

from tests.conftest import REFERENCE, need_shared


class Off:
    enabled = False


def test_boot_state():
    m = Machine(cpus=4)
    assert m.nr_cpus == 4 and m.this_cpu().id == 0
    assert [c.task.comm for c in m.cpus] == ["swapper/0", "swapper/1", "swapper/2", "swapper/3"]
    assert all(c.task.pid == 0 and c.preempt_count == 0 and not c.irqs_off for c in m.cpus)


def test_sections_nest_and_restore():
    m = Machine()
    cpu = m.this_cpu()
    with m.softirq():
        assert cpu.preempt_count == SOFTIRQ_OFFSET and cpu.in_serving_softirq()
        with m.rcu_read_lock():
            assert cpu.preempt_count == SOFTIRQ_OFFSET + 1
            with m.hardirq():
                assert cpu.irqs_off and cpu.in_hardirq()
                assert cpu.preempt_count == SOFTIRQ_OFFSET + 1 + HARDIRQ_OFFSET
                with m.nmi():
                    assert cpu.preempt_count == (SOFTIRQ_OFFSET + 1 + 2 * HARDIRQ_OFFSET
                                                 + NMI_OFFSET)
                    assert cpu.in_nmi()
            assert not cpu.irqs_off
    assert cpu.preempt_count == 0 and cpu.in_task()
    with m.bh_disabled(), m.migrate_disabled(), m.irqs_disabled():
        assert cpu.preempt_count == SOFTIRQ_DISABLE_OFFSET and cpu.migrate_disable == 1
        assert cpu.irqs_off
    assert (cpu.preempt_count, cpu.migrate_disable, cpu.irqs_off) == (0, 0, False)


def test_section_exits_on_the_cpu_it_entered():
    m = Machine()
    with m.preempt_disabled():
        m.set_cpu(1)
    assert m.cpus[0].preempt_count == 0 and m.cpus[1].preempt_count == 0
    with m.on_cpu(0):
        assert m.smp_processor_id() == 0
    assert m.smp_processor_id() == 1
    assert [c.id for c in m.for_each_cpu()] == [0, 1] and m.smp_processor_id() == 1


def test_need_resched_flags():
    m = Machine()
    m.set_need_resched()
    m.set_need_resched(lazy=True)
    assert m.this_cpu().need_resched and m.this_cpu().need_resched_lazy
    m.clear_need_resched()
    assert not m.this_cpu().need_resched


def test_tasks_in_memory():
    mem = Memory()
    m = Machine(cpus=2, mem=mem)
    m.attach_slab(Slab(mem, lambda s, n: Off()))
    idle0 = m.cpus[0].idle
    assert mem.read_cstr(idle0.addr + 1752) == b"swapper/0"      # task_struct.comm: 0x6d8 on 6.18
    user = m.spawn_user("a-very-long-command-name")
    assert user.pid == FIRST_USER_PID and user.tgid == user.pid
    assert user.comm == "a-very-long-com"
    from tracesim.kernel_model.c_types import kernel_types
    ts = kernel_types().struct("task_struct")
    assert mem.read_int(user.addr + ts.field("pid").offset, 4) == user.pid
    assert mem.read_cstr(user.addr + ts.field("comm").offset) == b"a-very-long-com"
    with m.running(user):
        assert m.this_cpu().task is user
        with pytest.raises(ValueError):
            m.exit_task(user)
    assert m.this_cpu().task is idle0
    assert m.find_task(user.pid) is user and m.find_task(0) is idle0
    m.exit_task(user)
    assert m.find_task(user.pid) is None
    assert mem.probe_read(user.addr or 0, 4)[0] < 0


def test_virtual_clock_is_deterministic_and_ticks():
    a, b = Clock("virtual"), Clock("virtual")
    seq_a = [a.now_ns(n) for n in CLOCK_NAMES]
    seq_b = [b.now_ns(n) for n in CLOCK_NAMES]
    assert seq_a == seq_b
    local = a.reader("local")
    t0 = local()
    a.advance(1_000_000)
    assert local() == t0 + a.tick_ns + 1_000_000
    assert a.now_ns("counter") == 2
    assert a.now_ns("uptime") == a.peek_ns() * 100 // 10**9
    assert not Clock.in_ns("x86-tsc") and Clock.in_ns("mono_raw")
    with pytest.raises(ValueError):
        a.reader("jiffies")


def test_real_clock_moves():
    c = Clock("real")
    assert c.now_ns("mono") <= c.now_ns("mono")


def test_trace_clock_file_matches_reference():
    need_shared()
    assert trace_clock_line("local") == (REFERENCE / "trace_clock").read_text()


def test_printk_dmesg_format():
    c = Clock("virtual", tick_ns=0, start_ns=33_450_966_123)
    log = Printk(c.reader("local"))
    log.printk("1M skb alloc/free 145179 (usecs)\n")
    log.printk("two\nlines")
    assert log.dmesg() == ("[   33.450966] 1M skb alloc/free 145179 (usecs)\n"
                           "[   33.450966] two\n[   33.450966] lines\n")

"""Real 6.18 symbols and the model's call stacks: kprobe_events accepts any real text symbol
(a probe the model never runs never fires), a name that is no symbol gets the kernel's error,
the call-stack API symbolizes, and kretprobes report the caller."""
from __future__ import annotations

import errno

import pytest
from tracesim.kernel_model.kallsyms import Kallsyms

from tests.test_function_tracer import send_lo


def test_real_symbols_resolve_but_do_not_join_the_model_table():
    ks = Kallsyms()
    addr = ks.address_of("vfs_fsync")
    assert addr is not None and ks.lookup(addr + 4)[:2] == ("vfs_fsync", 4)
    assert "vfs_fsync" in ks and "not_a_kernel_symbol" not in ks
    assert not ks.is_modelled("vfs_fsync") and ks.is_modelled("ip_rcv")
    assert "vfs_fsync" not in {s.name for s in ks}
    assert ks.real_count("vfs_fsync") == 1 and ks.real_count("NF_HOOK.constprop.0") == 2
    assert ks.real_count("not_a_kernel_symbol") == 0


def test_kprobe_on_an_idle_real_function_is_accepted_and_never_fires(system, tree):
    tree.echo("/kprobe_events", "p:myprobe vfs_fsync")      # a real symbol the model never runs
    assert tree.read_text("/kprobe_events") == "p:kprobes/myprobe vfs_fsync\n"
    tree.echo("/events/kprobes/myprobe/enable", "1")
    send_lo(system)
    assert "myprobe" not in tree.read_text("/trace")
    tree.echo("/events/kprobes/myprobe/enable", "0")
    tree.echo("/kprobe_events", "")


def test_kprobe_on_a_name_that_is_no_symbol(tree):
    with pytest.raises(OSError) as info:
        tree.echo("/kprobe_events", "p:myprobe not_a_kernel_symbol")
    assert info.value.errno == errno.ENOENT
    log = tree.read_text("/error_log").splitlines()
    assert log[-3].endswith("trace_kprobe: error: Invalid probed address or symbol")
    assert log[-2] == "  Command: p:myprobe not_a_kernel_symbol"
    assert log[-1] == " " * 21 + "^"


def test_call_stack_api_symbolizes(system):
    kernel = system.kernel
    kps = kernel.kprobes
    seen = []

    def at_ip_rcv(regs):
        stack = kps.call_stack()
        seen.append([kernel.kallsyms.lookup(a)[0] for a in stack])
        seen.append([kernel.kallsyms.lookup(a)[0] for a in kps.call_stack_functions()])
        assert all(kernel.kallsyms.lookup(a)[1] > 0 for a in stack)    # return addresses

    kps.hold_call_stacks()
    probe = kps.register_kprobe("ip_rcv", at_ip_rcv)
    try:
        send_lo(system)
    finally:
        kps.unregister_kprobe(probe)
        kps.release_call_stacks()
    want = ["__netif_receive_skb_core", "__netif_receive_skb", "process_backlog", "napi_poll",
            "net_rx_action"]
    assert seen == [want, want]       # ip_rcv's own frame is not pushed until it runs
    assert kps.stack_holds == 0 and not kps.sites["ip_rcv"].active


def test_kretprobe_reports_the_callers_return_address(system, tree):
    tree.echo("/kprobe_events", "r:myret kmem_cache_free")
    tree.echo("/events/kprobes/myret/enable", "1")
    send_lo(system)
    lines = [ln for ln in tree.read_text("/trace").splitlines() if "myret:" in ln]
    callers = {ln.split("myret: (")[1].split(" <- ")[0].split("+")[0] for ln in lines}
    assert callers == {"skb_release_data", "kfree_skbmem"}
    assert all(ln.endswith(" <- kmem_cache_free)") for ln in lines)
    tree.echo("/events/kprobes/myret/enable", "0")
    tree.echo("/kprobe_events", "")
    assert system.kernel.kprobes.stack_holds == 0


def test_skb_bench_functions_return_into_the_module(system, tree):
    tree.echo("/kprobe_events", "r:benchret __netdev_alloc_skb")
    tree.echo("/events/kprobes/benchret/enable", "1")
    system.control(["skb-bench", "1"])
    (line,) = [ln for ln in tree.read_text("/trace").splitlines() if "benchret:" in ln]
    assert "benchret: (skb_bench_run+0x" in line and line.endswith(" <- __netdev_alloc_skb)")
    tree.echo("/events/kprobes/benchret/enable", "0")
    tree.echo("/kprobe_events", "")

"""Verification off the event path: a program walked to the kernel's 1M-insn limit is rejected
with the kernel's messages, and while eight of them verify (in worker processes, the kernel
lock released) another load completes and events keep flowing.  Also the worker pool's own
failures: a verification past its timeout, or a worker that dies, gives a clean error and the
pool recovers; a forked child (the mount's daemon) gets a pool of its own."""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from tracesim.filters.bpf.compiler.driver import compile_file
from tracesim.filters.bpf.toolchain import elf
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.verifier.pool import VerifyWorkerError, verify_in_worker

from tests.tree_helpers import cat_into

EXAMPLES = Path(__file__).resolve().parent.parent / "tools" / "examples"
NETIF = "/events/net/netif_receive_skb"
KFREE = "/events/skb/kfree_skb"
# eight events for eight looping programs (netif_receive_skb stays for the valid one)
LOOP_EVENTS = [KFREE, "/events/skb/consume_skb", "/events/net/net_dev_queue",
               "/events/net/net_dev_xmit", "/events/net/netif_rx", "/events/kmem/kmalloc",
               "/events/kmem/kfree", "/events/kmem/kmem_cache_free"]
# r0 counts up from a known value: every iteration is a new state, so the walk goes on to the
# complexity limit (with r0 unknown the first repeat is an infinite loop instead)
LOOP = "r0 = 0\nr0 += 1\nif r0 != 0 goto -2\nexit\n"
WAIT = 600          # seconds: bounds for a loaded machine, never expected to be reached


def loop_object(section: str = "tracepoint/skb/kfree_skb") -> bytes:
    insns = assemble(LOOP)
    spec = elf.ObjectSpec(code={section: insns},
                          functions=[elf.FuncSymbol("spin", section, 0, len(insns))],
                          data={"license": b"GPL\0"})
    return elf.write_object(spec)


@pytest.mark.slow
def test_loops_rejected_while_other_loads_and_events_go_on(system):
    tree = system.tree
    names = {ev: ev.rsplit("/", 1)[1] for ev in LOOP_EVENTS}
    assert all(tree.read_text(ev + "/filter") == "none\n" for ev in LOOP_EVENTS)
    outcome: dict[str, int] = {}
    obj = loop_object()

    def load_loop(event: str) -> None:
        try:
            cat_into(tree, event + "/filter", obj)
            outcome[event] = 0
        except OSError as e:
            outcome[event] = e.errno

    spinners = [threading.Thread(target=load_loop, args=(ev,), daemon=True)
                for ev in LOOP_EVENTS]
    for t in spinners:
        t.start()
    # meanwhile: a valid program on another event loads, and its event is recorded
    cat_into(tree, NETIF + "/filter", compile_file(EXAMPLES / "filter_ex1.c").elf)
    tree.echo(NETIF + "/enable", "1")
    status, text = system.control(["send", "lo", "--len", "84", "--count", "2"])
    assert status == 0, text
    events = [line for line in tree.read_text("/trace").splitlines()
              if "netif_receive_skb:" in line]
    assert len(events) == 2
    assert all(t.is_alive() for t in spinners), "the looping programs should be verifying"
    assert tree.read_text(NETIF + "/filter").startswith("bpf elf filter_ex1 ")

    for t in spinners:
        t.join(WAIT)
    assert not any(t.is_alive() for t in spinners)
    assert outcome == {ev: errno.EACCES for ev in LOOP_EVENTS}, names
    assert all(tree.read_text(ev + "/filter") == "none\n" for ev in LOOP_EVENTS)
    assert tree.read_text("/error_log").count(
        "bpf: error: BPF program is too large. Processed 1000001 insn") == len(LOOP_EVENTS)
    dmesg = system.control(["dmesg"])[1].splitlines()
    assert any(line.endswith("failed to load bpf -13") for line in dmesg)
    assert dmesg[-2].endswith("] BPF program is too large. Processed 1000001 insn")
    assert "] processed 1000001 insns (limit 1000000) max_states_per_insn " in dmesg[-1]


def test_timeout_gives_clean_error_and_pool_recovers():
    with pytest.raises(VerifyWorkerError) as info:
        verify_in_worker(assemble(LOOP), prog_type="kprobe", ctx=None, timeout=0.05)
    assert info.value.errno == errno.EAGAIN
    assert "did not finish within 0.05 s" in str(info.value)
    res = verify_in_worker(assemble("r0 = 1\nexit\n"), prog_type="kprobe", ctx=None)
    assert res.ok and res.log == "processed 2 insns (limit 1000000) max_states_per_insn 0 " \
        "total_states 0 peak_states 0 mark_read 0\n"


class _DiesWhenUnpickled:
    """Stands for a worker crash: the worker process ends while it takes the job."""

    def __reduce__(self):
        return (os._exit, (3,))


def test_dead_worker_gives_clean_error_and_pool_recovers():
    ok = assemble("r0 = 1\nexit\n")
    with pytest.raises(VerifyWorkerError) as info:
        verify_in_worker(ok, prog_type="kprobe", ctx=_DiesWhenUnpickled())
    assert info.value.errno == errno.EIO
    assert "verifier worker process died" in str(info.value)
    assert verify_in_worker(ok, prog_type="kprobe", ctx=None).ok


def test_forked_child_gets_its_own_pool():
    """``tracesim mount`` forks its daemon from a process that may have verified already: the
    parent's pool (threads, forkserver) is not the child's."""
    ok = assemble("r0 = 1\nexit\n")
    assert verify_in_worker(ok, prog_type="kprobe", ctx=None).ok
    pid = os.fork()
    if pid == 0:
        try:
            code = 0 if verify_in_worker(ok, prog_type="kprobe", ctx=None, timeout=60).ok else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_worker_result_matches_in_process_verify():
    from tracesim.filters.bpf.verifier import verify
    insns = assemble("r1 = *(u64 *)(r1 + 0)\nr0 = r1\nr0 += 1\nexit\n")
    here = verify(insns, prog_type="kprobe", log_level=1)
    there = verify_in_worker(insns, prog_type="kprobe", ctx=None, log_level=1)
    assert there == here

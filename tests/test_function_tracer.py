"""The ``function`` tracer through the tracefs tree: current_tracer, the trace layout, the
function filters, pid filters, func_stack_trace and the print options."""
from __future__ import annotations

import errno
import re

import pytest
from tracesim.kernel_model.net import core as netmod


def errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as info:
        fn(*args)
    return info.value.errno


def send_lo(system, count: int = 1, comm: str = "ping") -> None:
    kernel = system.kernel
    lo = kernel.net.device("lo")
    with kernel.machine.running(kernel.user_task(comm)):
        for i in range(count):
            kernel.net.xmit_frame(lo, netmod.packet_frame(lo, "udp", 100, seq=i))


def body(tree, path: str = "/trace") -> list[str]:
    return [ln for ln in tree.read_text(path).splitlines() if not ln.startswith("#")]


FN_LINE = re.compile(r"^ +(\S+)-(\d+) +\[(\d{3})\] (\S{5}) +(\d+\.\d{6}): (.*)$")


def functions(tree, path: str = "/trace") -> list[str]:
    return [m.group(6) for ln in body(tree, path) if (m := FN_LINE.match(ln))]


def test_available_and_current_tracer(tree):
    assert tree.read_text("/available_tracers") == "function_graph function nop\n"
    assert tree.read_text("/current_tracer") == "nop\n"
    tree.echo("/current_tracer", "function")
    assert tree.read_text("/current_tracer") == "function\n"
    assert errno_of(tree.echo, "/current_tracer", "wakeup") == errno.EINVAL
    assert tree.read_text("/current_tracer") == "function\n"
    assert tree.read_text("/trace").startswith("# tracer: function\n#\n# entries-in-buffer")
    tree.echo("/current_tracer", "nop")
    assert tree.read_text("/trace").startswith("# tracer: nop\n")


def test_function_lines_name_the_caller(system, tree):
    tree.echo("/current_tracer", "function")
    send_lo(system)
    lines = functions(tree)
    for want in ("__dev_queue_xmit", "dev_hard_start_xmit <-__dev_queue_xmit",
                 "__netif_rx <-loopback_xmit", "napi_poll <-net_rx_action",
                 "__netif_receive_skb <-process_backlog",
                 "__netif_receive_skb_core <-__netif_receive_skb",
                 "ip_rcv <-__netif_receive_skb_core", "ip_rcv_finish <-ip_rcv",
                 "ip_local_deliver <-ip_rcv_finish",
                 "ip_local_deliver_finish <-ip_local_deliver",
                 "ip_protocol_deliver_rcu <-ip_local_deliver_finish",
                 "udp_rcv <-ip_protocol_deliver_rcu", "__udp4_lib_rcv <-udp_rcv",
                 "kmem_cache_free <-skb_release_data"):
        assert want in lines, want
    assert any(ln.startswith("            ping-1000    [000] ..s1. ") for ln in body(tree))


def test_print_options_shape_the_line(system, tree):
    tree.echo("/current_tracer", "function")
    tree.echo("/set_ftrace_filter", "ip_rcv")
    tree.echo("/options/sym-offset", "1")
    send_lo(system)
    (line,) = functions(tree)
    assert re.fullmatch(r"ip_rcv\+0x0/0xe0 <-__netif_receive_skb_core\+0x[0-9a-f]+/0x1180", line)
    tree.echo("/options/sym-offset", "0")
    tree.echo("/options/print-parent", "0")
    assert functions(tree) == ["ip_rcv"]
    tree.echo("/options/sym-addr", "1")
    addr = system.kernel.kallsyms.addr("ip_rcv")
    assert functions(tree) == [f"ip_rcv <{addr:016x}>"]


def test_filter_globs_removal_and_notrace(system, tree):
    tree.echo("/current_tracer", "function")
    tree.echo("/set_ftrace_filter", "*netif_receive*")
    assert tree.read_text("/set_ftrace_filter") == (
        "netif_receive_skb\n__netif_receive_skb\n__netif_receive_skb_core\n")
    tree.echo("/set_ftrace_filter", "!__netif_receive_skb_core", append=True)
    send_lo(system)
    assert functions(tree) == ["__netif_receive_skb <-process_backlog"]
    assert errno_of(tree.echo, "/set_ftrace_filter", "no_such_function") == errno.EINVAL
    tree.echo("/set_ftrace_filter", "")
    assert tree.read_text("/set_ftrace_filter") == "#### all functions enabled ####\n"
    tree.echo("/trace", "")
    tree.echo("/set_ftrace_notrace", "kmem_cache_*")
    send_lo(system)
    names = {ln.split(" <-")[0] for ln in functions(tree)}
    assert "ip_rcv" in names and not any(n.startswith("kmem_cache_") for n in names)


def test_ftrace_pid_filters(system, tree):
    tree.echo("/current_tracer", "function")
    send_lo(system, comm="ping")              # make the task
    ping = system.kernel.user_task("ping").pid
    tree.echo("/trace", "")
    tree.echo("/set_ftrace_pid", str(ping + 1))
    send_lo(system)
    assert functions(tree) == []
    tree.echo("/set_ftrace_pid", str(ping))
    send_lo(system)
    assert functions(tree) and all(m.group(2) == str(ping) for ln in body(tree)
                                   if (m := FN_LINE.match(ln)))
    tree.echo("/set_ftrace_pid", "")
    tree.echo("/trace", "")
    tree.echo("/set_ftrace_notrace_pid", str(ping))
    send_lo(system)
    assert functions(tree) == []


def test_func_stack_trace_follows_each_function(system, tree):
    tree.echo("/current_tracer", "function")
    tree.echo("/set_ftrace_filter", "ip_rcv")
    tree.echo("/options/func_stack_trace", "1")
    send_lo(system)
    lines = body(tree)
    assert lines[0].endswith(": ip_rcv <-__netif_receive_skb_core")
    assert lines[1].endswith(": <stack trace>")
    assert lines[2:7] == [" => __netif_receive_skb_core", " => __netif_receive_skb",
                          " => process_backlog", " => napi_poll", " => net_rx_action"]


def test_stack_entries_hold_the_whole_stack(system, tree):
    """__ftrace_trace_stack reserves an entry the size of the stack it saved: no cap at the
    format's caller[8]."""
    tree.echo("/current_tracer", "function")
    tree.echo("/set_ftrace_filter", "kfree_skbmem")
    tree.echo("/options/func_stack_trace", "1")
    send_lo(system)
    first = body(tree)
    tree.echo("/set_ftrace_filter", "kfree_skbmem:stacktrace")
    tree.echo("/current_tracer", "nop")
    send_lo(system)
    whole = [" => __kfree_skb", " => consume_skb", " => __udp4_lib_rcv", " => udp_rcv",
             " => ip_protocol_deliver_rcu", " => ip_local_deliver_finish",
             " => ip_local_deliver", " => ip_rcv_finish", " => ip_rcv",
             " => __netif_receive_skb_core", " => __netif_receive_skb",
             " => process_backlog", " => napi_poll", " => net_rx_action"]
    assert first[0].endswith(": kfree_skbmem <-__kfree_skb")
    assert first[1].endswith(": <stack trace>") and first[2:] == whole
    lines = body(tree)                        # the stacktrace command's entry
    assert lines[0].endswith(": <stack trace>") and lines[1:] == whole


def test_tracer_options_in_trace_options(tree):
    assert tree.read_text("/trace_options").split()[-2:] == ["notest_nop_accept",
                                                             "notest_nop_refuse"]
    tree.echo("/current_tracer", "function")
    assert tree.read_text("/trace_options").split()[-2:] == ["nofunc_stack_trace",
                                                             "nofunc-no-repeats"]
    tree.echo("/current_tracer", "function_graph")
    words = tree.read_text("/trace_options").split()
    assert words[-10:] == ["nofuncgraph-overrun", "funcgraph-cpu", "funcgraph-overhead",
                           "nofuncgraph-proc", "funcgraph-duration", "nofuncgraph-abstime",
                           "funcgraph-irqs", "nofuncgraph-tail", "sleep-time", "graph-time"]
    assert "nodisplay-graph" in words


def test_tracer_switch_clears_the_buffer_and_tracing_off_stops_it(system, tree):
    tree.echo("/current_tracer", "function")
    send_lo(system)
    assert functions(tree)
    tree.echo("/tracing_on", "0")
    tree.echo("/current_tracer", "nop")
    tree.echo("/current_tracer", "function")
    send_lo(system)
    assert functions(tree) == []
    tree.echo("/tracing_on", "1")
    tree.echo("/current_tracer", "nop")
    send_lo(system)
    assert functions(tree) == []
    assert system.kernel.kprobes.ftrace is None
    assert not system.kernel.kprobes.sites["ip_rcv"].active     # back to the one-test cost


def test_instance_and_top_trace_functions_independently(system, tree):
    tree.mkdir("/instances/fn")
    tree.echo("/instances/fn/current_tracer", "function")
    tree.echo("/instances/fn/set_ftrace_filter", "ip_rcv")
    tree.echo("/current_tracer", "function")
    tree.echo("/set_ftrace_filter", "__netif_rx")
    send_lo(system)
    assert functions(tree, "/instances/fn/trace") == ["ip_rcv <-__netif_receive_skb_core"]
    assert functions(tree) == ["__netif_rx <-loopback_xmit"]
    tree.echo("/instances/fn/current_tracer", "nop")
    tree.echo("/current_tracer", "nop")
    tree.rmdir("/instances/fn")


def test_function_entry_formats_match_the_reference(tree, reference):
    for name in ("function", "funcgraph_entry", "funcgraph_exit"):
        want = (reference / "events" / "ftrace" / name / "format").read_text()
        assert tree.read_text(f"/events/ftrace/{name}/format") == want, name


# -- function commands in set_ftrace_filter -----------------------------------------------------

def test_function_commands_run_and_count(system, tree):
    tree.echo("/set_ftrace_filter", "ip_rcv:traceoff:1")
    tree.echo("/set_ftrace_filter", "__netif_rx:enable_event:net:netif_receive_skb:2",
              append=True)
    assert tree.read_text("/set_ftrace_filter") == (
        "#### all functions enabled ####\n"
        "ip_rcv:traceoff:count=1\n"
        "__netif_rx:enable_event:net:netif_receive_skb:count=2\n")
    assert tree.read_text("/events/net/netif_receive_skb/enable") == "0*\n"
    send_lo(system)
    assert tree.read_text("/tracing_on") == "0\n"          # whatever the current tracer (nop)
    assert tree.read_text("/set_ftrace_filter").splitlines()[1:] == [
        "ip_rcv:traceoff:count=0", "__netif_rx:enable_event:net:netif_receive_skb:count=1"]
    assert [ln.split(": ", 1)[1].split(":")[0] for ln in body(tree)] == ["netif_receive_skb"]
    tree.echo("/tracing_on", "1")
    send_lo(system)                        # enabled already: the count stays
    assert tree.read_text("/set_ftrace_filter").splitlines()[2].endswith(":count=1")
    tree.echo("/set_ftrace_filter", "!__netif_rx:enable_event:net:netif_receive_skb",
              append=True)
    tree.echo("/set_ftrace_filter", "!ip_rcv:traceoff", append=True)
    assert tree.read_text("/set_ftrace_filter") == "#### all functions enabled ####\n"
    assert tree.read_text("/events/net/netif_receive_skb/enable") == "1\n"
    assert system.kernel.kprobes.ftrace is None


def test_stacktrace_and_dump_commands(system, tree):
    tree.echo("/set_ftrace_filter", "kfree_skbmem:stacktrace:1")
    send_lo(system, count=2)
    lines = body(tree)
    assert lines[0].endswith(": <stack trace>") and len([ln for ln in lines if "<stack" in ln]) == 1
    # the innermost frames: the skb freed by the UDP receive, up the IP input path
    assert lines[1:9] == [" => __kfree_skb", " => consume_skb", " => __udp4_lib_rcv",
                          " => udp_rcv", " => ip_protocol_deliver_rcu",
                          " => ip_local_deliver_finish", " => ip_local_deliver",
                          " => ip_rcv_finish"]
    tree.echo("/set_ftrace_filter", "ip_rcv:dump", append=True)
    send_lo(system)
    log = system.kernel.printk.dmesg()
    assert "Dumping ftrace buffer:\n" in log and "<stack trace>\n" in log
    assert tree.read_text("/tracing_on") == "0\n"          # a dump turns tracing off
    tree.echo("/set_ftrace_filter", "!ip_rcv:dump", append=True)
    tree.echo("/set_ftrace_filter", "!kfree_skbmem:stacktrace", append=True)
    tree.echo("/tracing_on", "1")


def test_snapshot_command_swaps_in_the_snapshot_buffer(system, tree):
    """func:snapshot[:N]: setting it allocates the snapshot buffer; each hit (N at most)
    swaps the live buffer with it."""
    tree.echo("/events/net/netif_receive_skb/enable", "1")
    tree.echo("/set_ftrace_filter", "ip_rcv:snapshot:1")
    assert tree.read_text("/set_ftrace_filter") == (
        "#### all functions enabled ####\nip_rcv:snapshot:count=1\n")
    assert "Snapshot is allocated" in tree.read_text("/snapshot")
    send_lo(system)            # netif_receive_skb, then ip_rcv swaps that into the snapshot
    snap = [ln for ln in tree.read_text("/snapshot").splitlines() if not ln.startswith("#")]
    assert len(snap) == 1 and "netif_receive_skb: dev=lo" in snap[0]
    assert body(tree) == []
    assert tree.read_text("/set_ftrace_filter").endswith("ip_rcv:snapshot:count=0\n")
    send_lo(system)            # the count is spent: no swap
    assert len(body(tree)) == 1
    tree.echo("/set_ftrace_filter", "!ip_rcv:snapshot", append=True)
    tree.echo("/set_ftrace_filter", "ip_rcv:snapshot", append=True)
    assert tree.read_text("/set_ftrace_filter").endswith("ip_rcv:snapshot:unlimited\n")
    assert errno_of(tree.echo, "/set_ftrace_notrace", "ip_rcv:snapshot") == errno.EINVAL


def test_mod_selects_module_functions(tree):
    tree.echo("/set_ftrace_filter", ":mod:skb_bench")
    assert tree.read_text("/set_ftrace_filter") == "skb_bench_run\nskb_bench_init\n"
    tree.echo("/set_ftrace_filter", "!*init:mod:skb_bench", append=True)
    assert tree.read_text("/set_ftrace_filter") == "skb_bench_run\n"
    tree.echo("/set_ftrace_notrace", ":mod:skb_bench")
    assert tree.read_text("/set_ftrace_notrace") == "skb_bench_run\nskb_bench_init\n"


def test_mod_of_a_module_not_loaded_is_kept_and_traces_nothing(system, tree):
    """cache_mod: a ``:mod:`` word matching nothing is kept for a module not loaded yet,
    listed newest first after the functions; the filter is then not empty (nothing traced)."""
    tree.echo("/set_ftrace_filter", "non_exist_func:mod:non_exist_module")
    tree.echo("/set_ftrace_filter", ":mod:other", append=True)
    assert tree.read_text("/set_ftrace_filter") == (
        ":mod:other\nnon_exist_func:mod:non_exist_module\n")
    tree.echo("/current_tracer", "function")
    send_lo(system)
    assert functions(tree) == []
    tree.echo("/set_ftrace_filter", "!non_exist_func:mod:non_exist_module", append=True)
    assert tree.read_text("/set_ftrace_filter") == ":mod:other\n"
    # forgetting a word not kept, a loaded module whose functions the glob misses: EINVAL
    for word in ("!x:mod:other", "zz*:mod:skb_bench"):
        with pytest.raises(OSError) as info:
            tree.echo("/set_ftrace_filter", word, append=True)
        assert info.value.errno == errno.EINVAL
    tree.echo("/set_ftrace_filter", "ip_rcv:mod:other", append=True)
    tree.echo("/set_ftrace_filter", "ip_rcv", append=True)
    assert tree.read_text("/set_ftrace_filter") == "ip_rcv\nip_rcv:mod:other\n:mod:other\n"
    tree.echo("/set_ftrace_filter", "")            # O_TRUNC forgets the kept words
    assert tree.read_text("/set_ftrace_filter") == "#### all functions enabled ####\n"
    send_lo(system)
    assert functions(tree)
    tree.echo("/set_ftrace_notrace", "a:mod:b")
    assert tree.read_text("/set_ftrace_notrace") == "#### no functions disabled ####\na:mod:b\n"


def test_lock_and_execve_functions_are_traced_where_the_kernel_calls_them(system, tree):
    kernel = system.kernel
    tree.echo("/set_ftrace_filter", "*pin*lock")
    assert tree.read_text("/set_ftrace_filter") == (
        "raw_spin_rq_unlock\n_raw_spin_lock\n_raw_spin_unlock\n")
    tree.echo("/set_ftrace_filter", "mutex*unl*")
    assert tree.read_text("/set_ftrace_filter") == "mutex_unlock\n"
    tree.echo("/set_ftrace_filter", "[Ss]y[Ss]_*")
    assert tree.read_text("/set_ftrace_filter") == "sys_ni_syscall\n"
    tree.echo("/set_ftrace_filter", "do_execve*")
    tree.echo("/set_ftrace_filter", "*spin_lock", append=True)
    tree.echo("/current_tracer", "function")
    with kernel.machine.running(kernel.user_task("sh")):
        kernel.syscalls.execve("/usr/bin/true")
    kernel.idle.run_for(20_000_000)
    calls = set(functions(tree))
    assert "do_execveat_common.isra.0 <-__x64_sys_execve" in calls
    assert "_raw_spin_lock <-raw_spin_rq_lock_nested" in calls


def test_tracing_cpumask_records_only_its_cpus(system, tree):
    kernel = system.kernel
    assert tree.read_text("/tracing_cpumask") == "3\n"
    tree.echo("/tracing_cpumask", "2")
    assert tree.read_text("/tracing_cpumask") == "2\n"
    tree.echo("/current_tracer", "function")
    tree.echo("/set_ftrace_filter", "kfree")
    tree.echo("/trace_marker", "on cpu0")            # the marker's CPU is masked off too
    for cpu in (0, 1):
        with kernel.machine.on_cpu(cpu), kernel.machine.running(kernel.user_task("x")):
            kernel.slab.kfree(kernel.slab.kmalloc(100))
    cpus = {m.group(3) for ln in body(tree) if (m := FN_LINE.match(ln))}
    assert cpus == {"001"}
    tree.echo("/tracing_cpumask", "3")
    tree.echo("/trace", "")
    with kernel.machine.on_cpu(0), kernel.machine.running(kernel.user_task("x")):
        kernel.slab.kfree(kernel.slab.kmalloc(100))
    assert {m.group(3) for ln in body(tree) if (m := FN_LINE.match(ln))} == {"000"}
    assert errno_of(tree.echo, "/tracing_cpumask", "xyz") == errno.EINVAL


@pytest.mark.parametrize("word", ["ip_rcv:nosuch", "nosuchfn:traceon",
                                  "ip_rcv:enable_event:net:nosuch", "ip_rcv:enable_event:net",
                                  "ip_rcv:traceon:abc"])
def test_bad_function_commands(tree, word):
    assert errno_of(tree.echo, "/set_ftrace_filter", word) == errno.EINVAL
    assert tree.read_text("/set_ftrace_filter") == "#### all functions enabled ####\n"


def test_notrace_takes_no_commands(tree):
    assert errno_of(tree.echo, "/set_ftrace_notrace", "ip_rcv:traceon") == errno.EINVAL
    assert errno_of(tree.echo, "/set_graph_function", "ip_rcv:traceon") == errno.EINVAL


def test_func_no_repeats_collapses_identical_calls(system, tree):
    kernel = system.kernel
    tree.echo("/current_tracer", "function")
    tree.echo("/set_ftrace_filter", "kfree")
    tree.echo("/options/func-no-repeats", "1")
    with kernel.machine.running(kernel.user_task("x")):
        for _ in range(4):
            kernel.slab.kfree(kernel.slab.kmalloc(100))
        tree.echo("/set_ftrace_filter", "__kmalloc_noprof", append=True)
        kernel.slab.kmalloc(50)
    lines = functions(tree)
    assert lines[0] == "kfree"
    assert re.fullmatch(r"kfree \(repeats: 3, last_ts: +\d+\.\d{6}\)", lines[1])
    assert lines[2] == "__kmalloc_noprof"
    stamp = float(lines[1].split("last_ts:")[1].rstrip(")"))
    entry_ts = [float(m.group(5)) for ln in body(tree) if (m := FN_LINE.match(ln))]
    assert entry_ts[0] <= stamp <= entry_ts[1]


def test_tracing_thresh_keeps_slow_returns_only(system, tree):
    assert tree.read_text("/tracing_thresh") == "0\n"
    tree.echo("/tracing_thresh", "1")                # µs
    assert tree.read_text("/tracing_thresh") == "1\n"
    tree.echo("/current_tracer", "function_graph")
    send_lo(system)
    lines = [ln for ln in tree.read_text("/trace").splitlines() if not ln.startswith("#")]
    graph = [ln for ln in lines if "|" in ln and not ln.startswith(" ---")]
    assert graph and all(re.search(r"\} /\* \w+ \*/$", ln) for ln in graph)
    assert any(ln.endswith("} /* net_rx_action */") for ln in graph)
    tree.echo("/tracing_thresh", "0")


def test_trace_options_takes_the_current_tracers_flags_only(tree):
    assert errno_of(tree.echo, "/trace_options", "func_stack_trace") == errno.EINVAL
    tree.echo("/options/func_stack_trace", "1")           # its options/ file always works
    tree.echo("/options/func_stack_trace", "0")
    tree.echo("/current_tracer", "function")
    tree.echo("/trace_options", "func_stack_trace")
    assert tree.read_text("/options/func_stack_trace") == "1\n"
    assert errno_of(tree.echo, "/trace_options", "funcgraph-tail") == errno.EINVAL
    tree.echo("/trace_options", "nofunc_stack_trace")
    tree.echo("/current_tracer", "nop")


def test_function_fork_follows_children(system, tree):
    machine = system.kernel.machine
    parent = system.kernel.user_task("sh")
    tree.echo("/set_ftrace_pid", str(parent.pid))
    with machine.running(parent):
        machine.spawn("child")
    assert tree.read_text("/set_ftrace_pid") == f"{parent.pid}\n"
    tree.echo("/options/function-fork", "1")
    with machine.running(parent):
        child = machine.spawn("child2")
    assert tree.read_text("/set_ftrace_pid") == f"{parent.pid}\n{child.pid}\n"
    machine.exit_task(child)
    assert tree.read_text("/set_ftrace_pid") == f"{parent.pid}\n"
    tree.echo("/options/function-fork", "0")
    assert machine.fork_hooks == [] or all(
        getattr(h, "__name__", "") != "_task_forked" for h in machine.fork_hooks)


@pytest.mark.parametrize("probe_first", [True, False])
def test_a_kprobe_event_and_the_function_tracer_share_a_function(system, tree, probe_first):
    """A site with one kprobe event takes a shortcut while no stacks are held: the function
    tracer still sees the function, whichever comes first, and the probe keeps firing."""
    def probe() -> None:
        tree.echo("/kprobe_events", "p:kp_ip_rcv ip_rcv")
        tree.echo("/events/kprobes/kp_ip_rcv/enable", "1")
    if probe_first:
        probe()
    tree.echo("/current_tracer", "function")
    if not probe_first:
        probe()
    send_lo(system)
    lines = body(tree)
    assert "ip_rcv <-__netif_receive_skb_core" in functions(tree)
    assert sum("kp_ip_rcv: (ip_rcv+0x0/" in ln for ln in lines) == 1
    tree.echo("/current_tracer", "nop")
    tree.echo("/trace", "")
    send_lo(system)
    assert [f for f in functions(tree) if "kp_ip_rcv" not in f] == []     # no function lines
    assert sum("kp_ip_rcv: (ip_rcv+0x0/" in ln for ln in body(tree)) == 1
    tree.echo("/events/kprobes/kp_ip_rcv/enable", "0")
    tree.echo("/kprobe_events", "")

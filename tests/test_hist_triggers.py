"""Hist triggers (issue #18 item 1): the trigger syntax, the ``hist`` file layout of
Documentation/trace/histogram.rst and trace_events_hist.c, variables, actions and errors."""
from __future__ import annotations

import errno
import re

import pytest
from tracesim.kernel_model.trace.hist import HIST_ERRORS
from tracesim.tracefs.errors import FsError

from tests.fuse_helpers import sh
from tests.tracefs_reference import EMPTY_TRIGGERS

KMALLOC = "/events/kmem/kmalloc"
KFREE = "/events/kmem/kfree"


def errno_of(call, *args, **kwargs) -> int:
    with pytest.raises(FsError) as err:
        call(*args, **kwargs)
    return err.value.errno


def allocate(system, sizes) -> None:
    """kmalloc then kfree each size, one after the other (1 us apart)."""
    k = system.kernel
    site = k.kallsyms.addr("dup_task_struct") + 0x4a
    for size in sizes:
        addr = k.slab.kmalloc(size, call_site=site)
        k.clock.advance(1000)
        k.slab.kfree(addr)


def table(text: str) -> list[str]:
    """The entry lines of a hist table."""
    return [line for line in text.splitlines() if line.startswith("{")]


def test_key_alias_and_value_layout(tree, system):
    tree.echo(KMALLOC + "/trigger", "hist:key=call_site:val=bytes_req")
    allocate(system, [176, 176, 32])
    text = tree.read_text(KMALLOC + "/hist")
    site = system.kernel.kallsyms.addr("dup_task_struct") + 0x4a
    assert text == (
        "# event histogram\n#\n"
        "# trigger info: hist:keys=call_site:vals=hitcount,bytes_req:sort=hitcount:size=2048"
        " [active]\n#\n\n"
        f"{{ call_site: {site:10d} }} hitcount:          3  bytes_req:        384\n"
        "\nTotals:\n    Hits: 3\n    Entries: 1\n    Dropped: 0\n")
    assert tree.read_text(KMALLOC + "/trigger") == \
        "hist:keys=call_site:vals=hitcount,bytes_req:sort=hitcount:size=2048 [active]\n"


def test_modifiers_print_as_the_kernel(tree, system):
    tree.echo(KMALLOC + "/trigger", "hist:keys=bytes_req.log2")
    tree.echo(KMALLOC + "/trigger", "hist:keys=call_site.sym", append=True)
    tree.echo(KMALLOC + "/trigger", "hist:keys=call_site.sym-offset", append=True)
    tree.echo(KMALLOC + "/trigger", "hist:keys=common_pid.execname", append=True)
    tree.echo(KMALLOC + "/trigger", "hist:keys=bytes_req.buckets=100:vals=bytes_alloc.hex",
              append=True)
    allocate(system, [24, 200, 200])
    text = tree.read_text(KMALLOC + "/hist")
    lines = table(text)
    assert "{ bytes_req: ~ 2^5  } hitcount:          1" in lines
    assert "{ bytes_req: ~ 2^8  } hitcount:          2" in lines
    site = system.kernel.kallsyms.addr("dup_task_struct") + 0x4a
    sym = f"[{site:x}] {'dup_task_struct':<45}"
    assert f"{{ call_site: {sym} }} hitcount:          3" in lines
    size = system.kernel.kallsyms.lookup(site)[2]
    assert f"{{ call_site: [{site:x}] {f'dup_task_struct+0x4a/0x{size:x}':<55} }}" \
           f" hitcount:          3" in lines
    assert f"{{ common_pid: {'<idle>':<16}[{0:10d}] }} hitcount:          3" in lines
    assert "{ bytes_req: ~ 0-99 } hitcount:          1  bytes_alloc:         20" in lines
    assert "{ bytes_req: ~ 200-299 } hitcount:          2  bytes_alloc:        200" in lines
    # multiple hists on one event: one table each, a blank pair between them
    assert text.count("# event histogram") == 5
    assert "    Dropped: 0\n\n\n# event histogram\n" in text
    info = re.findall(r"# trigger info: (.*)\n", text)
    assert info == ["hist:keys=bytes_req.log2:vals=hitcount:sort=hitcount:size=2048 [active]",
                    "hist:keys=call_site.sym:vals=hitcount:sort=hitcount:size=2048 [active]",
                    "hist:keys=call_site.sym-offset:vals=hitcount:sort=hitcount:size=2048"
                    " [active]",
                    "hist:keys=common_pid.execname:vals=hitcount:sort=hitcount:size=2048"
                    " [active]",
                    "hist:keys=bytes_req.buckets=100:vals=hitcount,bytes_alloc.hex:"
                    "sort=hitcount:size=2048 [active]"]


def test_compound_keys_sort_and_size(tree, system):
    tree.echo(KMALLOC + "/trigger", "hist:keys=call_site,bytes_req:vals=bytes_alloc:"
                                    "sort=bytes_alloc.descending,bytes_req:size=100")
    allocate(system, [8, 64, 64, 100])
    text = tree.read_text(KMALLOC + "/hist")
    assert "sort=bytes_alloc.descending,bytes_req:size=128 [active]" in text
    reqs = [int(re.search(r"bytes_req: +(\d+)", line).group(1)) for line in table(text)]
    assert reqs == [64, 100, 8]
    assert "{ call_site: " in table(text)[0] and ", bytes_req:         64 }" in table(text)[0]


def test_percent_graph_and_cpu(tree, system):
    tree.echo(KMALLOC + "/trigger",
              "hist:keys=common_cpu:vals=hitcount,bytes_req.percent,bytes_alloc.graph")
    allocate(system, [100, 300])
    line = table(tree.read_text(KMALLOC + "/hist"))[0]
    assert line == ("{ common_cpu:          0 } hitcount:          2  bytes_req (%): 100.00"
                    "  bytes_alloc: ####################")


def test_filter_pause_continue_clear(tree, system):
    trig = KMALLOC + "/trigger"
    tree.echo(trig, "hist:keys=bytes_req if bytes_req > 64")
    allocate(system, [8, 128])
    assert [re.sub(" +", " ", x) for x in table(tree.read_text(KMALLOC + "/hist"))] == \
        ["{ bytes_req: 128 } hitcount: 1"]
    tree.echo(trig, "hist:keys=bytes_req:pause if bytes_req > 64", append=True)
    assert tree.read_text(trig).endswith("if bytes_req > 64 [paused]\n")
    allocate(system, [256])
    assert "Hits: 1\n" in tree.read_text(KMALLOC + "/hist")
    tree.echo(trig, "hist:keys=bytes_req:cont if bytes_req > 64", append=True)
    allocate(system, [256])
    assert "Hits: 2\n" in tree.read_text(KMALLOC + "/hist")
    tree.echo(trig, "hist:keys=bytes_req:clear if bytes_req > 64", append=True)
    assert "Hits: 0\n    Entries: 0\n" in tree.read_text(KMALLOC + "/hist")
    # clear or cont without a matching trigger: ENOENT with the kernel's error
    assert errno_of(tree.echo, trig, "hist:keys=bytes_alloc:clear", append=True) == errno.ENOENT
    assert HIST_ERRORS["TRIGGER_ENOENT_CLEAR"] in tree.read_text("/error_log")


def test_duplicate_removal_and_truncation(tree, system):
    trig = KMALLOC + "/trigger"
    tree.echo(trig, "traceoff:5")
    tree.echo(trig, "hist:keys=bytes_req", append=True)
    assert errno_of(tree.echo, trig, "hist:keys=bytes_req", append=True) == errno.EEXIST
    assert "Hist trigger already exists" in tree.read_text("/error_log")
    tree.echo(trig, "hist:keys=ptr", append=True)
    # hist triggers go to the tail of the list, others to the head
    assert tree.read_text(trig).splitlines()[0] == "traceoff:count=5"
    assert tree.read_text(trig).splitlines()[1].startswith("hist:keys=bytes_req:")
    tree.echo(trig, "!hist:keys=bytes_req", append=True)
    assert errno_of(tree.echo, trig, "!hist:keys=nothing_like_this", append=True) == errno.EINVAL
    tree.echo(trig, "!hist:keys=bytes_alloc", append=True)      # not set: accepted
    assert [x.split(":")[1] for x in tree.read_text(trig).splitlines()] == \
        ["count=5", "keys=ptr"]
    # O_TRUNC removes the hist triggers, nothing else (traceon clashes with traceoff)
    assert errno_of(tree.echo, trig, "traceon:3") == errno.EEXIST
    assert tree.read_text(trig).splitlines() == ["traceoff:count=5"]
    assert tree.read_text(KMALLOC + "/hist") == ""


def test_enable_hist_and_disable_hist(tree, system):
    tree.echo(KMALLOC + "/trigger", "hist:keys=bytes_req")
    tree.echo(KFREE + "/trigger", "disable_hist:kmem:kmalloc:1")
    assert tree.read_text(KFREE + "/trigger") == "disable_hist:kmem:kmalloc:count=1\n"
    assert tree.read_text(KMALLOC + "/enable") == "0*\n"      # soft mode, as enable_event
    allocate(system, [32, 32])
    # the first kfree paused the histogram: the second kmalloc is not counted
    assert "Hits: 1\n" in tree.read_text(KMALLOC + "/hist")
    assert tree.read_text(KMALLOC + "/trigger").endswith("[paused]\n")
    # enable_hist and disable_hist on one target share a type: EEXIST
    assert errno_of(tree.echo, KFREE + "/trigger", "enable_hist:kmem:kmalloc",
                    append=True) == errno.EEXIST
    tree.echo(KFREE + "/trigger", "!disable_hist:kmem:kmalloc", append=True)
    tree.echo(KFREE + "/trigger", "enable_hist:kmem:kmalloc", append=True)
    allocate(system, [32, 32])      # the first kmalloc is still paused; its kfree resumes
    assert "Hits: 2\n" in tree.read_text(KMALLOC + "/hist")


def test_variables_expressions_and_onmax_save(tree, system):
    tree.echo(KMALLOC + "/trigger", "hist:keys=ptr:ts0=common_timestamp.usecs,req=bytes_req")
    tree.echo(KFREE + "/trigger", "hist:keys=common_cpu:lat=common_timestamp.usecs-$ts0:"
                                  "onmax($lat).save(call_site)", append=True)
    text = tree.read_text(KMALLOC + "/trigger")
    assert text == ("hist:keys=ptr:vals=hitcount:ts0=common_timestamp.usecs,req=bytes_req:"
                    "sort=hitcount:size=2048:clock=global [active]\n")
    assert tree.read_text("/trace_clock").startswith("local [global]")
    allocate(system, [64])
    # keys differ (ptr vs common_cpu): the variable is not found, nothing is counted
    assert "Hits: 0\n" in tree.read_text(KFREE + "/hist")
    # O_TRUNC removes the hist; the empty command itself is EINVAL (trigger_process_regex)
    assert errno_of(tree.echo, KFREE + "/trigger", "") == errno.EINVAL
    assert tree.read_text(KFREE + "/trigger") == EMPTY_TRIGGERS
    tree.echo(KFREE + "/trigger", "hist:keys=ptr:lat=common_timestamp.usecs-$ts0:"
                                  "onmax($lat).save(call_site)", append=True)
    k = system.kernel
    for gap in (3000, 9000, 5000):
        addr = k.slab.kmalloc(64)
        k.clock.advance(gap)
        k.slab.kfree(addr)
    text = tree.read_text(KFREE + "/hist")
    assert ":onmax($lat).save(call_site) [active]" in text
    assert re.search(r"\n\tmax: +9  call_site: +\d+\n", text), text


def test_onchange_and_snapshot_action(tree, system):
    tree.echo(KMALLOC + "/trigger", "hist:keys=common_cpu:req=bytes_req:"
                                    "onchange($req).snapshot()")
    tree.echo(KMALLOC + "/enable", "1")
    allocate(system, [64, 64, 128])
    text = tree.read_text(KMALLOC + "/hist")
    assert "\nSnapshot taken (see tracing/snapshot).  Details:\n" \
           "\ttriggering value { onchange($req) }:        128" \
           "\ttriggered by event with key: { common_cpu:          0 }\n" in text
    # 64 (a change from 0) swapped the buffers after the first entry; 128 swapped them again:
    # the snapshot holds the second and third entries, the live buffer the first
    snap = tree.read_text("/snapshot")
    assert "* Snapshot is" not in snap
    assert re.findall(r"bytes_req=(\d+)", snap) == ["64", "128"]
    assert re.findall(r"bytes_req=(\d+)", tree.read_text("/trace")) == ["64"]
    # the conditional snapshot holds the buffer: the snapshot file and a second user are EBUSY
    assert errno_of(tree.echo, "/snapshot", "1") == errno.EBUSY
    assert errno_of(tree.echo, KFREE + "/trigger", "hist:keys=ptr:v=ptr:onchange($v).snapshot()",
                    append=True) == errno.EBUSY
    with pytest.raises(FsError):
        tree.echo(KMALLOC + "/trigger", "")             # O_TRUNC removes it; "" is EINVAL
    tree.echo("/snapshot", "1")
    assert errno_of(tree.echo, KMALLOC + "/trigger", "hist:keys=ptr:clock=nosuch:"
                    "t=common_timestamp", append=True) == errno.EINVAL
    assert "error: Couldn't set trace_clock\n" in tree.read_text("/error_log")


def test_onmatch_trace_to_a_synthetic_event(tree, system):
    """The wakeup-latency machinery on a pair the model has: net_dev_queue then
    netif_receive_skb of one skb, matched on skbaddr (Documentation/trace/histogram.rst 2.2.3)."""
    from tracesim.kernel_model import control
    tree.echo("/synthetic_events", "lo_latency u64 lat; unsigned int len", append=True)
    tree.echo("/events/net/net_dev_queue/trigger",
              "hist:keys=skbaddr:ts0=common_timestamp.usecs", append=True)
    tree.echo("/events/net/netif_receive_skb/trigger",
              "hist:keys=skbaddr:lat=common_timestamp.usecs-$ts0:"
              "onmatch(net.net_dev_queue).lo_latency($lat,len)", append=True)
    tree.echo("/events/synthetic/lo_latency/trigger", "hist:keys=len,lat:sort=len,lat",
              append=True)
    tree.echo("/events/synthetic/lo_latency/enable", "1")
    control.send(system.kernel, "lo", 100, count=3)
    control.send(system.kernel, "lo", 300, count=2)
    text = tree.read_text("/events/synthetic/lo_latency/hist")
    assert text.startswith("# event histogram\n#\n# trigger info: hist:keys=len,lat:"
                           "vals=hitcount:sort=len,lat:size=2048 [active]\n#\n\n")
    lens = [int(re.search(r"len: +(\d+)", x).group(1)) for x in table(text)]
    assert lens == sorted(lens) and set(lens) == {100, 300}
    assert "Hits: 5\n" in text
    trace = tree.read_text("/trace")
    assert len(re.findall(r" lo_latency: lat=\d+ len=(?:100|300)\n", trace)) == 5
    # the synthetic event is in use: removing it is EBUSY
    assert errno_of(tree.echo, "/synthetic_events", "!lo_latency", append=True) == errno.EBUSY


def test_field_of_the_matching_event_as_a_parameter(tree, system):
    """A parameter naming the other event's field makes a hist trigger there with the
    matching keys and a ``synthetic_<field>`` variable (create_field_var_hist); removing the
    trigger that needed it removes it too."""
    from tracesim.kernel_model import control
    tree.echo("/synthetic_events", "qlen u64 lat; unsigned int qlen; unsigned int rlen",
              append=True)
    queue = "/events/net/net_dev_queue/trigger"
    tree.echo(queue, "hist:keys=skbaddr:ts0=common_timestamp.usecs", append=True)
    cmd = ("hist:keys=skbaddr:lat=common_timestamp.usecs-$ts0:"
           "onmatch(net.net_dev_queue).qlen($lat,net.net_dev_queue.len,len)")
    tree.echo("/events/net/netif_receive_skb/trigger", cmd, append=True)
    assert tree.read_text(queue).splitlines()[1] == \
        "hist:keys=skbaddr:vals=hitcount:synthetic_len=len:sort=hitcount:size=2048 [active]"
    tree.echo("/events/synthetic/qlen/enable", "1")
    control.send(system.kernel, "lo", 128, count=2)
    lines = re.findall(r" qlen: lat=\d+ qlen=(\d+) rlen=(\d+)\n", tree.read_text("/trace"))
    assert lines == [("142", "128")] * 2               # the queued frame has its link header
    # the first trigger's variables are in use: it cannot go while the second is there
    assert errno_of(tree.echo, queue, "!hist:keys=skbaddr:ts0=common_timestamp.usecs",
                    append=True) == errno.EBUSY
    tree.echo("/events/net/netif_receive_skb/trigger", "!" + cmd, append=True)
    assert len(tree.read_text(queue).splitlines()) == 1


def test_variables_hold_the_instance(tree, system):
    """A trigger with variables holds its trace array (save_hist_vars): rmdir is EBUSY."""
    tree.mkdir("/instances/h")
    trig = "/instances/h" + KMALLOC + "/trigger"
    tree.echo(trig, "hist:keys=ptr:t=bytes_req", append=True)
    assert errno_of(tree.rmdir, "/instances/h") == errno.EBUSY
    tree.echo(trig, "!hist:keys=ptr:t=bytes_req", append=True)
    tree.echo(trig, "hist:keys=ptr", append=True)           # no variables: no hold
    tree.rmdir("/instances/h")


def test_common_stacktrace_key(tree, system):
    tree.echo(KMALLOC + "/trigger", "hist:keys=common_stacktrace")
    allocate(system, [16])
    text = tree.read_text(KMALLOC + "/hist")
    assert "hist:keys=common_stacktrace:vals=hitcount:" in text
    # one frame a line, %pS, 9 spaces in, no space before the brace (hist_trigger_print_key)
    symbols = system.kernel.tracing.symbols
    frames = [a for a in (symbols.address_of("trace_event_raw_event_kmalloc"),
                          symbols.address_of("__traceiter_kmalloc")) if a]
    want = "".join(f"         {n}+0x{o:x}/0x{z:x}\n"
                   for n, o, z in (symbols.lookup(a) for a in frames))
    # then the modelled call chain that reached the tracepoint, innermost first
    assert re.search(re.escape("{ common_stacktrace:\n" + want) +
                     r"         __kmalloc_noprof\+0x[0-9a-f]+/0x[0-9a-f]+\n"
                     r"(?:         \S+\n)*\} hitcount:          1\n", text), text


@pytest.mark.parametrize("cmd, key, word", [
    ("hist:keys=nosuchfield", "FIELD_NOT_FOUND", "nosuchfield"),
    ("hist:keys=bytes_req.foo", "BAD_FIELD_MODIFIER", "foo"),
    ("hist:keys=bytes_req:vals=bytes_alloc.log2", "BAD_FIELD_MODIFIER", "bytes_alloc.log2"),
    ("hist:keys=bytes_req:sort=ptr", "INVALID_SORT_FIELD", "ptr"),
    ("hist:keys=bytes_req:sort=hitcount.up", "INVALID_SORT_MODIFIER", "up"),
    ("hist:keys=bytes_req:sort=hitcount,bytes_req,ptr", "TOO_MANY_SORT_FIELDS", "sort="),
    ("hist:keys=bytes_req:sort=", "EMPTY_ASSIGNMENT", "sort="),
    ("hist:keys=bytes_req:x=bytes_req/0", "DIVISION_BY_ZERO", "0"),
    ("hist:keys=bytes_req:x=$nosuch", "VAR_NOT_FOUND", "nosuch"),
    ("hist:keys=bytes_req:onmax(bytes_req).save(ptr)", "ONX_NOT_VAR", "bytes_req"),
    ("hist:keys=bytes_req:onmatch(kmem).trace(x)", "SUBSYS_NOT_FOUND", "kmem"),
    ("hist:keys=bytes_req:onmatch(kmem.nosuch).trace(x)", "INVALID_SUBSYS_EVENT", "nosuch"),
    ("hist:keys=bytes_req:onmatch(kmem.kfree).trace(nosynth,$x)", "SYNTH_EVENT_NOT_FOUND",
     "nosynth"),
])
def test_errors_logged_with_caret(tree, cmd, key, word):
    code = errno.EDOM if key == "DIVISION_BY_ZERO" else errno.EINVAL
    assert errno_of(tree.echo, KMALLOC + "/trigger", cmd, append=True) == code
    log = tree.read_text("/error_log")
    caret = 11 + cmd.find(word)
    assert re.search(r"\[ *\d+\.\d{6}\] hist:kmem:kmalloc: error: " + re.escape(HIST_ERRORS[key])
                     + "\n  Command: " + re.escape(cmd) + "\n" + " " * caret + "\\^\n$", log), log
    assert tree.read_text(KMALLOC + "/trigger") == EMPTY_TRIGGERS


def test_value_limit(tree):
    """TRACING_MAP_VALS_MAX: hitcount and two values."""
    tree.echo(KMALLOC + "/trigger", "hist:keys=ptr:vals=bytes_req,hitcount,bytes_alloc")
    assert "vals=hitcount,bytes_req,bytes_alloc:" in tree.read_text(KMALLOC + "/trigger")
    assert errno_of(tree.echo, KMALLOC + "/trigger", "hist:keys=call_site:vals=bytes_req,"
                    "bytes_alloc,gfp_flags", append=True) == errno.EINVAL


@pytest.mark.parametrize("cmd", ["hist", "hist:", "hist:vals=bytes_req", "hist:keys=a,b,c,d",
                                 "hist:keys=bytes_req:size=3", "hist:keys=bytes_req:bogus"])
def test_malformed_without_log_entry(tree, cmd):
    assert errno_of(tree.echo, KMALLOC + "/trigger", cmd, append=True) == errno.EINVAL
    assert "hist:kmem:kmalloc" not in tree.read_text("/error_log") or "keys=a,b" in cmd


def test_hist_through_the_mount(mnt):
    out = sh("echo 'hist:keys=len:vals=hitcount:sort=len' >> "
             "events/net/netif_receive_skb/trigger && cat events/net/netif_receive_skb/trigger",
             mnt)
    assert out.stdout == "hist:keys=len:vals=hitcount:sort=len:size=2048 [active]\n", out.stderr
    from tests.test_fuse_tracefs import ctl
    ctl(mnt, "send", "lo", "--len", "100", "--count", "3")
    text = sh("cat events/net/netif_receive_skb/hist", mnt).stdout
    assert "{ len:        100 } hitcount:          3\n" in text
    assert text.endswith("\nTotals:\n    Hits: 3\n    Entries: 1\n    Dropped: 0\n")
    bad = sh("echo 'hist:keys=nosuch' >> events/net/netif_receive_skb/trigger; echo rc=$?; "
             "tail -3 error_log", mnt)
    assert "rc=1" in bad.stdout and "Invalid argument" in bad.stderr
    assert "error: Couldn't find field\n  Command: hist:keys=nosuch\n" in bad.stdout


def test_named_trigger_lists_its_name_and_removes_by_that_line(tree, system):
    fork = "/events/sched/sched_process_fork"
    tree.echo(fork + "/trigger", "hist:name=test_hist:keys=common_pid")
    line = "hist:name=test_hist:keys=common_pid:vals=hitcount:sort=hitcount:size=2048"
    assert tree.read_text(fork + "/trigger") == line + " [active]\n"
    assert f"# trigger info: {line} [active]\n" in tree.read_text(fork + "/hist")
    tree.echo(fork + "/trigger", "!" + line, append=True)      # what ftracetest's reset writes
    assert tree.read_text(fork + "/trigger") == EMPTY_TRIGGERS


def test_trace_marker_hist_with_a_filter_on_buf(tree):
    """ftrace:print's ``char buf[]`` has size 0: its string runs to the NUL, as the filter's
    matchers read it; the trigger sees the text as written, before the newline is added."""
    print_ = "/events/ftrace/print"
    tree.echo(print_ + "/trigger", 'hist:keys=common_pid if buf == "start"')
    for text in ("start", "end", "start", "started"):
        tree.echo("/trace_marker", text, newline=False)
    assert [re.sub(r"\d+", "N", line) for line in table(tree.read_text(print_ + "/hist"))] \
        == ["{ common_pid:          N } hitcount:          N"]
    assert "hitcount:          2" in tree.read_text(print_ + "/hist")


def test_reading_a_seq_file_on_the_mount_allocates_its_buffer(mnt):
    """A process reading a generated file takes seq_read_iter's page buffer (kvmalloc: a
    kmalloc of 4096 from seq_read_iter) before the file's show runs, and frees it at close,
    so a hist on kmalloc sees the reader of the hist file itself."""
    out = sh("echo 'hist:keys=call_site.sym:vals=bytes_req' > events/kmem/kmalloc/trigger && "
             "echo 1 > events/kmem/enable && cat events/kmem/kmalloc/hist && "
             "echo 0 > events/kmem/enable && grep -E ' (kmalloc|kfree): ' trace", mnt)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^\{ call_site: \[[0-9a-f]+\] seq_read_iter +\} hitcount: +1 "
                     r" bytes_req: +4096$", out.stdout, re.M), out.stdout
    alloc = re.search(r"^ +cat-(\d+) .* kmalloc: call_site=seq_read_iter\+0x[0-9a-f]+/0x[0-9a-f]+"
                      r" ptr=(\w+) bytes_req=4096 bytes_alloc=4096 gfp_flags=GFP_KERNEL_ACCOUNT",
                      out.stdout, re.M)
    assert alloc, out.stdout
    assert re.search(rf"^ +cat-{alloc.group(1)} .* kfree: call_site=seq_release\+0x[0-9a-f]+"
                     rf"/0x[0-9a-f]+ ptr={alloc.group(2)}$", out.stdout, re.M), out.stdout
    sh("echo '!hist:keys=call_site.sym:vals=bytes_req' >> events/kmem/kmalloc/trigger", mnt)


def test_syscall_modifier_names_the_syscall(tree, system):
    """``.syscall`` prints get_syscall_name's ``sys_<name>`` padded to 30, then the number."""
    from tracesim.kernel_model.syscalls import USER_PATH
    tree.echo("/events/raw_syscalls/sys_enter/trigger", "hist:keys=id.syscall:sort=id")
    k = system.kernel
    task = k.user_task("cat")
    with k.sched.running(task):
        fd = k.syscalls.openat(USER_PATH, 0, lambda: 3)
        k.syscalls.read(fd, 4096, lambda: 0)
        k.syscalls.close(fd, lambda: 0)
    lines = table(tree.read_text("/events/raw_syscalls/sys_enter/hist"))
    assert "{ id: sys_read                      [  0] } hitcount:          1" in lines
    assert "{ id: sys_close                     [  3] } hitcount:          1" in lines
    assert "{ id: sys_openat                    [257] } hitcount:          1" in lines
    assert tree.read_text("/events/raw_syscalls/sys_enter/trigger").startswith(
        "hist:keys=id.syscall:vals=hitcount:sort=id.syscall:size=2048")

"""fprobe (``f``), tracepoint probe (``t``) and event probe (``e``) events end to end: the
definitions as dynamic_events lists them, their events' directories and formats, their trace
lines, removal and busy rules; through the tree and through the mount with echo/cat."""
from __future__ import annotations

import errno
import re

import pytest
from tracesim.filters.predicate.compile import compile_filter
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.net import core as netmod
from tracesim.kernel_model.trace import output as trace_output
from tracesim.tools.ctl_socket import request

from tests.fuse_helpers import sh


def ctl(mnt, *argv: str) -> str:
    status, text = request(str(mnt), list(argv))
    assert status == 0, text
    return text


def send_lo(kernel: Kernel, length: int = 128, count: int = 1) -> None:
    lo = kernel.net.device("lo")
    with kernel.machine.running(kernel.user_task("ping")):
        for i in range(count):
            kernel.net.xmit_frame(lo, netmod.packet_frame(lo, "udp", length, seq=i))


def lines_of(kernel: Kernel, name: str) -> list[str]:
    return [ln for ln in trace_output.trace_text(kernel.tracing.top).splitlines()
            if f" {name}: " in ln]


def test_definitions_list_back_in_the_kernels_syntax(kernel: Kernel) -> None:
    d = kernel.tracing.dynevents
    d.write("f __netif_receive_skb skb\n"
            "f:grp/fexit __netif_receive_skb%return rv=$retval\n"
            "t netif_receive_skb skb len=+112(skb):u32\n"
            "e:eg/ev net/netif_receive_skb len=$len name=$name:string\n"
            "e net.netif_rx $comm\n")
    assert d.text() == (
        "f:fprobes/__netif_receive_skb__entry __netif_receive_skb skb=skb\n"
        "f:grp/fexit __netif_receive_skb%return rv=$retval\n"
        "t:tracepoints/netif_receive_skb netif_receive_skb skb=skb len=+112(skb):u32\n"
        "e:eg/ev net.netif_receive_skb len=$len name=$name:string\n"
        "e:eprobes/netif_rx net.netif_rx arg1=$comm\n")
    assert kernel.tracing.kprobes.text() == ""          # kprobe_events shows kprobes only
    for ev in ("fprobes:__netif_receive_skb__entry", "grp:fexit", "tracepoints:netif_receive_skb",
               "eg:ev", "eprobes:netif_rx"):
        assert ev in kernel.tracing.available_events()


def test_retval_makes_an_fprobe_an_exit_probe(kernel: Kernel) -> None:
    kernel.tracing.dynevents.write("f __netif_receive_skb rv=$retval")
    assert kernel.tracing.dynevents.text() == (
        "f:fprobes/__netif_receive_skb__exit __netif_receive_skb%return rv=$retval\n")


def test_formats_of_fprobe_and_eprobe_events(kernel: Kernel) -> None:
    d = kernel.tracing.dynevents
    d.write("f:fp __netif_receive_skb skb len=+112(skb):u32\n"
            "f:fx __netif_receive_skb%return $retval\n"
            "e:eg/ev net/netif_receive_skb len=$len name=$name:string")
    body = kernel.tracing.event("fprobes", "fp").format_text().split("\n\n")[1:]
    assert body[0] == ("\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n"
                       "\tfield:u64 skb;\toffset:16;\tsize:8;\tsigned:0;\n"
                       "\tfield:u32 len;\toffset:24;\tsize:4;\tsigned:0;")
    assert body[1] == 'print fmt: "(%lx) skb=0x%Lx len=%u", REC->__probe_ip, REC->skb, REC->len\n'
    fx = kernel.tracing.event("fprobes", "fx").format_text()
    # BTF gives $retval the function's return type: int → s32
    assert "\tfield:s32 arg1;\toffset:24;\tsize:4;\tsigned:1;" in fx
    assert 'print fmt: "(%lx <- %lx) arg1=%d", REC->__probe_func, REC->__probe_ret_ip, ' \
           "REC->arg1" in fx
    ev = kernel.tracing.event("eg", "ev").format_text().split("\n\n")[1:]
    assert ev[0] == ("\tfield:unsigned int __probe_type;\toffset:8;\tsize:4;\tsigned:0;\n"
                     "\tfield:u64 len;\toffset:12;\tsize:8;\tsigned:0;\n"
                     "\tfield:__data_loc char[] name;\toffset:20;\tsize:4;\tsigned:0;")
    assert ev[1] == ('print fmt: "(%u) len=0x%Lx name=\\"%s\\"", REC->__probe_type, REC->len, '
                     "__get_str(name)\n")


def test_fprobe_entry_and_exit_lines(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.dynevents.write("f:fp __netif_receive_skb skb len=+112(skb):u32 c=$comm\n"
                       "f:fx __netif_receive_skb%return rv=$retval")
    tr.top.file("fprobes", "fp").set_enabled(True)
    tr.top.file("fprobes", "fx").set_enabled(True)
    send_lo(kernel, length=128)
    entry = lines_of(kernel, "fp")
    assert entry, trace_output.trace_text(tr.top)
    assert re.search(r"fp: \(__netif_receive_skb\+0x0/0x70\) skb=0x[0-9a-f]+ len=\d+ c=\"\S+\"$",
                     entry[0]), entry[0]
    exit_ = lines_of(kernel, "fx")
    assert re.search(r"fx: \(.* <- __netif_receive_skb\) rv=0$", exit_[0]), exit_[0]


def test_tprobe_reads_the_tracepoint_arguments(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.dynevents.write("t:tp netif_receive_skb skb len=+112(skb):u32")
    tr.top.file("tracepoints", "tp").set_enabled(True)
    send_lo(kernel, length=100)
    line = lines_of(kernel, "tp")[0]
    skb = re.search(r"skb=0x([0-9a-f]+) len=(\d+)$", line)
    assert skb is not None, line
    assert int(skb.group(2)) > 0
    # the tracepoint itself stays off: only the probe's lines are in the buffer
    assert not any(" netif_receive_skb: " in ln for ln in
                   trace_output.trace_text(tr.top).splitlines())
    tr.top.file("tracepoints", "tp").set_enabled(False)
    assert not tr.event("net", "netif_receive_skb").enabled


def test_eprobe_lines_and_filter(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.dynevents.write("e:eg/ev net/netif_receive_skb len=$len name=$name:string "
                       "if len > 1000")
    tr.dynevents.write("e:eg/all net/netif_receive_skb len=$len:u32 name=$name:string")
    tr.top.file("eg", "ev").set_enabled(True)
    tr.top.file("eg", "all").set_enabled(True)
    send_lo(kernel, length=100)
    send_lo(kernel, length=1200)
    got = [re.sub(r"^.*?all: ", "", ln) for ln in lines_of(kernel, "all")]
    assert len(got) == 2 and all(g.startswith("(net.netif_receive_skb) len=") for g in got)
    assert int(got[1].split("len=")[1].split()[0]) > 1000 > int(got[0].split("len=")[1].split()[0])
    big = lines_of(kernel, "ev")
    assert len(big) == 1 and 'name="lo"' in big[0] and "(net.netif_receive_skb)" in big[0]
    # the attached event is not enabled: no netif_receive_skb lines of its own
    assert not any(" netif_receive_skb: " in ln for ln in trace_output.trace_text(tr.top).splitlines())


def test_eprobe_on_a_kprobe_event_keeps_it_busy(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.dynevents.write("p:kp __netif_receive_skb skb=%di\n"
                       "e:eg/onkp kprobes.kp s=$skb")
    tr.top.file("eg", "onkp").set_enabled(True)
    send_lo(kernel)
    assert re.search(r"onkp: \(kprobes\.kp\) s=0x[0-9a-f]+$", lines_of(kernel, "onkp")[0])
    with pytest.raises(OSError) as e:
        tr.dynevents.write("-:kprobes/kp")
    assert e.value.errno == errno.EBUSY
    tr.top.file("eg", "onkp").set_enabled(False)
    with pytest.raises(OSError) as e:             # still referenced by the eprobe
        tr.dynevents.write("-:kprobes/kp")
    assert e.value.errno == errno.EBUSY
    tr.dynevents.write("-:eg/onkp")
    tr.dynevents.write("-:kprobes/kp")
    assert tr.dynevents.text() == ""


def test_removal_and_truncation(kernel: Kernel) -> None:
    d = kernel.tracing.dynevents
    d.write("p:kp kfree\nf:fp kfree\nt:tp kfree\ne:ep net.netif_rx")
    d.write("-:fprobes/fp")
    assert "fp" not in d.text()
    with pytest.raises(OSError) as e:
        d.write("-:fprobes/fp")
    assert e.value.errno == errno.ENOENT
    kernel.tracing.kprobes.write("", truncate=True)          # kprobe_events O_TRUNC: kprobes only
    assert d.text() == ("t:tracepoints/tp kfree\n"
                        "e:eprobes/ep net.netif_rx\n")
    kernel.tracing.top.file("tracepoints", "tp").set_enabled(True)
    with pytest.raises(OSError) as e:
        d.write("", truncate=True)
    assert e.value.errno == errno.EBUSY and "tp" in d.text()
    kernel.tracing.top.file("tracepoints", "tp").set_enabled(False)
    d.write("", truncate=True)
    assert d.text() == "" and "tracepoints:tp" not in kernel.tracing.available_events()


def test_removal_matches_given_arguments(kernel: Kernel) -> None:
    """After the name come the probe point, then the arguments (match_command_head)."""
    d = kernel.tracing.dynevents
    d.write("f:fp kfree obj=object")
    for wrong in ("-:fp kfree obj=$arg1", "-:fp obj=object"):
        with pytest.raises(OSError) as e:
            d.write(wrong)
        assert e.value.errno == errno.ENOENT
    d.write("-:fp kfree obj=object")
    assert d.text() == ""


def test_btf_arguments_by_name_and_expansion(kernel: Kernel) -> None:
    d = kernel.tracing.dynevents
    d.write("f:a __alloc_skb $arg*\n"
            "p:b __alloc_skb size gfp_mask:x32 $arg4\n"
            "r:c __alloc_skb $retval")
    assert d.text() == ("f:fprobes/a __alloc_skb size=size gfp_mask=gfp_mask flags=flags node=node\n"
                        "p:kprobes/b __alloc_skb size=size gfp_mask=gfp_mask:x32 node=node\n"
                        "r:kprobes/c __alloc_skb arg1=$retval\n")
    fmt = kernel.tracing.event("fprobes", "a").format_text()
    assert "field:u32 size;" in fmt and "field:u32 gfp_mask;" in fmt and "field:s32 node;" in fmt
    assert "field:u64 arg1;" in kernel.tracing.event("kprobes", "c").format_text()  # a pointer
    assert 'node=%d"' in kernel.tracing.event("kprobes", "b").format_text()


def test_fetch_types_arrays_bitfields_chars_symbols(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.kprobes.write("p:t __netif_receive_skb arr=+280(+16(%di)):x8[4] bf=+112(%di):b4@0/32 "
                     "ch=+281(+16(%di)):char sym=%ip:symbol "
                     "ss=+0(%sp):symstr imm=\\\"hello\" n=\\-5:s32")
    fmt = tr.event("kprobes", "t").format_text()
    assert "\tfield:u8 arr[4];\toffset:16;\tsize:4;\tsigned:0;" in fmt
    assert 'arr={0x%x,0x%x,0x%x,0x%x} bf=%u ch=\'%c\' sym=%pS ss=\\"%s\\" imm=\\"%s\\" n=%d"' in fmt
    assert "REC->arr[0], REC->arr[1], REC->arr[2], REC->arr[3], REC->bf" in fmt
    tr.top.file("kprobes", "t").set_enabled(True)
    send_lo(kernel, length=77)
    line = lines_of(kernel, "t")[0]
    assert re.search(r"arr=\{0x6c,0x6f,0x0,0x0\} bf=\d+ ch='o' "
                     r"sym=__netif_receive_skb\+0x0/0x70 ss=\"[^\"]*\" imm=\"hello\" n=-5$",
                     line), line


def test_kprobe_return_suffix_and_profile(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.kprobes.write("p:kr __netif_receive_skb%return rv=$retval\np:ke __netif_receive_skb")
    assert tr.kprobes.text() == ("r:kprobes/kr __netif_receive_skb rv=$retval\n"
                                 "p:kprobes/ke __netif_receive_skb\n")
    tr.top.file("kprobes", "ke").set_enabled(True)
    send_lo(kernel, count=3)
    assert tr.kprobes.profile_text() == (
        f"  {'kr':<44} {0:>15} {0:>15}\n"
        f"  {'ke':<44} {3:>15} {0:>15}\n")


def test_blacklisted_function_is_refused(kernel: Kernel) -> None:
    """register_kprobe refuses what the kernel cannot probe (the kprobe blacklist)."""
    with pytest.raises(OSError) as e:
        kernel.tracing.kprobes.write("p notify_die")
    assert e.value.errno == errno.EINVAL
    assert "trace_kprobe: error: Failed to register probe event" in \
        kernel.tracing.top.error_log_text()


@pytest.mark.fuse
def test_fprobe_and_eprobe_through_the_mount(mnt) -> None:
    out = sh("echo 'f:fp __netif_receive_skb skb' >> dynamic_events && "
             "echo 'e:eg/ev net/netif_receive_skb len=$len' >> dynamic_events && "
             "cat dynamic_events && ls events/fprobes/fp events/eg/ev && "
             "cat events/eg/ev/format | tail -2 && "
             "echo 1 > events/fprobes/fp/enable && echo 1 > events/eg/ev/enable && "
             "cat events/eg/ev/enable", mnt)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("f:fprobes/fp __netif_receive_skb skb=skb\n"
                                 "e:eg/ev net.netif_receive_skb len=$len\n")
    assert "enable\nfilter\nformat\nhist\nid\ntrigger\n" in out.stdout
    assert 'print fmt: "(%u) len=0x%Lx", REC->__probe_type, REC->len\n' in out.stdout
    busy = sh("echo '-:fprobes/fp' >> dynamic_events", mnt)
    assert busy.returncode == 1 and "Device or resource busy" in busy.stderr
    done = sh("echo 0 > events/fprobes/fp/enable; echo 0 > events/eg/ev/enable; "
              "echo > dynamic_events; cat dynamic_events; ls events | grep -c fprobes", mnt)
    assert done.stdout == "0\n", done.stderr


def test_appended_probes_share_one_event(kernel: Kernel) -> None:
    """trace_probe_append: the same event and arguments on another function adds a probe."""
    tr = kernel.tracing
    tr.kprobes.write("p:multi __netif_receive_skb a=%di\np:multi __netif_rx a=%di")
    assert tr.kprobes.text() == ("p:kprobes/multi __netif_receive_skb a=%di\n"
                                 "p:kprobes/multi __netif_rx a=%di\n")
    tr.top.file("kprobes", "multi").set_enabled(True)
    send_lo(kernel)
    heads = [re.search(r"multi: \((\w+)\+", ln).group(1) for ln in lines_of(kernel, "multi")]
    assert heads == ["__netif_rx", "__netif_receive_skb"]
    tr.top.file("kprobes", "multi").set_enabled(False)
    tr.kprobes.write("-:multi")
    assert tr.kprobes.text() == "" and "kprobes:multi" not in tr.available_events()


def test_dentry_types_expand_to_string_dereferences(kernel: Kernel) -> None:
    """traceprobe_expand_dentry_args: %pd / %pD name a dentry's / a file's d_name.name."""
    kernel.tracing.kprobes.write("p:d kfree f=%di:%pD %si:%pd")
    assert kernel.tracing.kprobes.text() == (
        "p:kprobes/d kfree f=+0(+40(+72(%di))):string arg2=+0(+40(%si)):string\n")


def test_kprobe_blacklist_refuses_registration(kernel: Kernel) -> None:
    """within_kprobe_blacklist: NOKPROBE_SYMBOL functions fail register_kprobe with EINVAL."""
    from tracesim.kernel_model.trace.kprobe_events import KPROBE_BLACKLIST, check_registrable
    from tracesim.kernel_model.trace.probe import ProbeError
    assert {"do_int3", "notify_die", "kprobe_int3_handler"} <= KPROBE_BLACKLIST
    with pytest.raises(ProbeError) as e:
        check_registrable(kernel, "do_int3", 0, False)
    assert (e.value.key, e.value.index, e.value.code) == ("FAIL_REG_PROBE", 1, errno.EINVAL)
    check_registrable(kernel, "consume_skb", 0, False)          # a probe-able function
    assert not kernel.kprobes.site("consume_skb").active       # the trial left nothing armed


def test_tracepoint_a_module_may_bring_is_accepted(kernel: Kernel) -> None:
    """With modules, a tracepoint not (yet) there is kept as a stub: the probe is defined."""
    kernel.tracing.dynevents.write("t:later no_such_tracepoint")
    assert kernel.tracing.dynevents.text() == "t:tracepoints/later no_such_tracepoint\n"


@pytest.mark.fuse
def test_fprobe_and_eprobe_lines_in_trace_through_the_mount(mnt) -> None:
    out = sh("echo 'f:fp __netif_receive_skb len=+112(skb):u32' >> dynamic_events && "
             "echo 'e:eg/ev net.netif_receive_skb len=$len:u32 if len > 100' >> dynamic_events && "
             "echo 1 > events/fprobes/fp/enable && echo 1 > events/eg/ev/enable", mnt)
    assert out.returncode == 0, out.stderr
    ctl(mnt, "send", "lo", "--len", "128", "--count", "2")
    ctl(mnt, "send", "lo", "--len", "64")
    text = sh("cat trace", mnt).stdout
    fp = [ln for ln in text.splitlines() if " fp: " in ln]
    ev = [ln for ln in text.splitlines() if " ev: " in ln]
    assert len(fp) == 3 and all("fp: (__netif_receive_skb+0x0/0x70) len=" in ln for ln in fp)
    assert len(ev) == 2 and all("ev: (net.netif_receive_skb) len=" in ln for ln in ev)


def test_btf_member_access(kernel: Kernel) -> None:
    """``param->field[.field]`` and ``$retval->field`` through the model's struct layouts."""
    tr = kernel.tracing
    tr.dynevents.write("f:a __netif_receive_skb skb->len dev=skb->dev->name:string "
                       "ifindex=skb->dev->ifindex\n"
                       "t:b netif_receive_skb l=skb->len\n"
                       "f:c __alloc_skb%return r=$retval->len")
    assert tr.dynevents.text().splitlines()[0] == (
        "f:fprobes/a __netif_receive_skb arg1=skb->len dev=skb->dev->name:string "
        "ifindex=skb->dev->ifindex")
    fmt = tr.event("fprobes", "a").format_text()
    assert "\tfield:u32 arg1;" in fmt and "\tfield:s32 ifindex;" in fmt     # member types
    tr.top.set_system_enabled("fprobes", True)
    tr.top.set_system_enabled("tracepoints", True)
    send_lo(kernel, length=150)
    assert lines_of(kernel, "a")[0].endswith('arg1=150 dev="lo" ifindex=1')
    assert lines_of(kernel, "b")[0].endswith("l=150")
    assert lines_of(kernel, "c")[0].endswith("r=0")                 # a new skb's len


def test_eprobe_bad_filter_logs_the_filter_error(kernel: Kernel) -> None:
    with pytest.raises(OSError) as e:
        kernel.tracing.dynevents.write("e:eg/ev net.netif_receive_skb if nosuch > 1")
    assert e.value.errno == errno.EINVAL
    log = kernel.tracing.top.error_log_text().splitlines()
    assert log[0].endswith("event filter parse error: error: Field not found")
    assert log[1] == "  Command: nosuch > 1" and log[2].strip() == "^"   # the filter's caret
    assert kernel.tracing.dynevents.text() == ""


def test_kprobe_by_address(kernel: Kernel) -> None:
    """``p MEMADDR``: named and listed by the hashed address (``0x%p``), printed by symbol."""
    tr = kernel.tracing
    addr = kernel.kallsyms.address_of("__netif_receive_skb")
    tr.kprobes.write(f"p 0x{addr:x} %di\np:in 0x{addr + 4:x}")
    shown = f"0x{tr.symbols.hash_ptr(addr):016x}"
    assert tr.kprobes.text().splitlines()[0] == f"p:kprobes/p_{shown} {shown} arg1=%di"
    tr.top.set_system_enabled("kprobes", True)
    send_lo(kernel)
    assert lines_of(kernel, "in")[0].endswith("in: (__netif_receive_skb+0x4/0x70)")
    with pytest.raises(OSError) as e:
        tr.kprobes.write("p 0x10")                    # not kernel text
    assert e.value.errno == errno.EINVAL
    assert "Failed to register probe event" in tr.top.error_log_text()


def test_symbol_memory_and_stack_fetches(kernel: Kernel) -> None:
    """``@SYM`` reads kernel text (each function starts with endbr64), ``+OFFS($stackN)``
    the stack, ``$stack`` is the stack pointer."""
    tr = kernel.tracing
    tr.kprobes.write("p:m __netif_receive_skb text=@__netif_receive_skb:x32 "
                     "st=+0($stack0):x64 sp=$stack")
    tr.top.file("kprobes", "m").set_enabled(True)
    send_lo(kernel)
    line = lines_of(kernel, "m")[0]
    assert re.search(r" text=0xfa1e0ff3 st=0x[0-9a-f]+ sp=0xffff[0-9a-f]+$", line), line


def test_filter_on_an_fprobe_event(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.dynevents.write("f:fp __netif_receive_skb len=skb->len")
    fp = tr.top.file("fprobes", "fp")
    fp.set_filter(compile_filter("len > 1000", fp.event.all_fields), "len > 1000")
    tr.top.file("fprobes", "fp").set_enabled(True)
    send_lo(kernel, length=100)
    send_lo(kernel, length=1500)
    got = [int(ln.rsplit("len=", 1)[1]) for ln in lines_of(kernel, "fp")]
    assert len(got) == 1 and got[0] > 1000


def test_eprobe_puts_the_attached_event_in_soft_mode(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.dynevents.write("e:eg/ev net.netif_receive_skb len=$len")
    target = tr.top.file("net", "netif_receive_skb")
    assert target.enable_text() == "0\n"
    tr.top.file("eg", "ev").set_enabled(True)
    assert target.enable_text() == "0*\n"
    tr.top.file("eg", "ev").set_enabled(False)
    assert target.enable_text() == "0\n"
    tr.dynevents.write("-:eg/ev")
    assert target.enable_text() == "0\n" and not tr.event("net", "netif_receive_skb").enabled


def test_bang_removes_in_dynamic_events_only(kernel: Kernel) -> None:
    """create_dyn_event takes ``!``-commands as removals too; kprobe_events only ``-``."""
    tr = kernel.tracing
    tr.dynevents.write("p:a kfree\nf:b kfree")
    with pytest.raises(OSError) as e:
        tr.kprobes.write("!p:kprobes/a")
    assert e.value.errno == errno.EINVAL
    tr.dynevents.write("!f:fprobes/b")
    with pytest.raises(OSError) as e:
        tr.dynevents.write("!nocolon")
    assert e.value.errno == errno.EINVAL
    assert tr.dynevents.text() == "p:kprobes/a kfree\n"


def test_eprobe_string_fields_are_addresses(kernel: Kernel) -> None:
    """get_event_field: a string field is the address of its bytes, so ``:string`` and
    ``+0($field):string`` read it and a number type shows the address."""
    tr = kernel.tracing
    tr.dynevents.write("e:x net.netif_receive_skb n=$name s=+0($name):string "
                       "s2=$name:string cs=$comm:string")
    tr.top.file("eprobes", "x").set_enabled(True)
    send_lo(kernel)
    line = lines_of(kernel, "x")[0]
    assert re.search(r'x: \(net\.netif_receive_skb\) n=0xffff[0-9a-f]+ s="lo" s2="lo" '
                     r'cs="ping"$', line), line


def test_group_only_names_take_the_default_event_name(kernel: Kernel) -> None:
    """traceprobe_parse_event_name: ``GRP/`` with no event uses the kind's default name."""
    d = kernel.tracing.dynevents
    d.write("p:g1/ kfree\nf:g2/ kfree\nt:g3/ kfree\ne:g4/ net.netif_rx")
    assert d.text() == ("p:g1/p_kfree_0 kfree\n"
                        "f:g2/kfree__entry kfree\n"
                        "t:g3/kfree kfree\n"
                        "e:g4/netif_rx net.netif_rx\n")


def test_removal_names_the_probe_point(kernel: Kernel) -> None:
    """dyn_event_release: after the name, the probe point (match_command_head) picks one probe
    of a multi-probe event; the event lives on with the other."""
    tr = kernel.tracing
    tr.kprobes.write("p:kprobes/multi kernel_clone\np:kprobes/multi do_exit")
    with pytest.raises(OSError) as e:
        tr.kprobes.write("-:kprobes/multi vfs_read")
    assert e.value.errno == errno.ENOENT
    tr.kprobes.write("-:kprobes/multi kernel_clone")
    assert tr.kprobes.text() == "p:kprobes/multi do_exit\n"
    assert "kprobes:multi" in tr.available_events()
    tr.kprobes.write("-:kprobes/multi do_exit")
    assert tr.kprobes.text() == "" and "kprobes:multi" not in tr.available_events()


def test_bang_and_minus_removal_with_the_definition(kernel: Kernel) -> None:
    """``!p:EV SYM``, ``!r:EV SYM``, ``-:EV SYS/EVENT ARGS`` (an event probe by its event,
    as SYS/EVENT or SYS.EVENT), ``-:EV SYM`` for an fprobe (its symbol, without %return)."""
    d = kernel.tracing.dynevents
    d.write("p:myevent1 kernel_clone\nr:myevent2 kernel_clone\nf:fx vfs_read%return\n"
            "e:ep syscalls/sys_enter_openat f=+0($filename):ustring")
    d.write("!p:myevent1 kernel_clone")
    assert "myevent1" not in d.text() and "myevent2" in d.text()
    d.write("!r:myevent2 kernel_clone")
    d.write("-:fx vfs_read")
    with pytest.raises(OSError) as e:
        d.write("-:ep syscalls/sys_enter_read")
    assert e.value.errno == errno.ENOENT
    d.write("-:eprobes/ep syscalls/sys_enter_openat f=+0($filename):ustring")
    assert d.text() == ""


def test_bang_removes_a_synthetic_event_through_the_mount(mnt) -> None:
    out = sh("echo 's:latency1 u64 lat; pid_t pid;' >> dynamic_events && "
             "echo 's:latency2 u64 lat; pid_t pid;' >> dynamic_events && "
             "echo '!s:latency1 u64 lat; pid_t pid;' >> dynamic_events && cat dynamic_events",
             mnt)
    assert out.returncode == 0, out.stderr
    assert "latency1" not in out.stdout and "latency2" in out.stdout


def test_btf_of_the_task_models_functions(kernel: Kernel) -> None:
    """Prototypes from the 6.18 BTF: vfs_read's ``file``, getname_flags' ``struct filename *``
    return value, and task_struct's ``se`` through a tracepoint's BTF arguments."""
    d = kernel.tracing.dynevents
    d.write("f:fr vfs_read file count\n"
            "f:fpevent getname_flags%return path=$retval->name:string\n"
            "t:tpevent2 sched_wakeup p->se.group_node.next->prev")
    assert d.text() == (
        "f:fprobes/fr vfs_read file=file count=count\n"
        "f:fprobes/fpevent getname_flags%return path=$retval->name:string\n"
        "t:tracepoints/tpevent2 sched_wakeup arg1=p->se.group_node.next->prev\n")
    fmt = kernel.tracing.event("fprobes", "fr").format_text()
    assert "field:u64 file;" in fmt and "field:u64 count;" in fmt


def test_a_host_fork_is_the_parents_clone(mnt) -> None:
    """A process forked by a caller of the mount appears through clone(2): the function
    tracer shows kernel_clone called from __x64_sys_clone."""
    out = sh("echo kernel_clone > set_ftrace_filter && echo function > current_tracer && "
             "cat trace > /dev/null; grep -c 'kernel_clone <-__x64_sys_clone' trace; "
             "echo nop > current_tracer", mnt)
    assert out.stdout.split()[0] != "0", out.stdout + out.stderr


def test_event_directory_names_reach_eventfs_create_dir(mnt) -> None:
    """Adding a dynamic event runs eventfs_create_dir with the event's name in kernel memory."""
    out = sh("echo 'p:testprobe eventfs_create_dir arg1=+0(%di):char arg2=+0(%di):string' "
             "> kprobe_events && echo 1 > events/kprobes/testprobe/enable && "
             "echo 'p:test kernel_clone' >> kprobe_events && "
             "echo 'f:newgrp/fev vfs_read' >> dynamic_events && "
             "echo 0 > events/kprobes/testprobe/enable && grep testprobe trace; "
             "echo > dynamic_events", mnt)
    assert "arg1='t' arg2=\"test\"" in out.stdout, out.stdout + out.stderr
    assert 'arg2="newgrp"' in out.stdout and 'arg2="fev"' in out.stdout


def test_files_of_callers_have_dentries(mnt) -> None:
    """A caller's open file has its struct file and dentry in memory: vfs_read's ``%pD`` and
    the dput at the last close (``%pd``) name the file; fds are the lowest free ones."""
    out = sh("echo 'p:rd vfs_read name=$arg1:%pD' > kprobe_events && "
             "echo 'p:dp dput name=$arg1:%pd' >> kprobe_events && "
             "echo 1 > events/kprobes/enable && cat events/kprobes/rd/enable > /dev/null && "
             "echo 0 > events/kprobes/enable && cat trace; echo > kprobe_events", mnt)
    assert re.search(r' rd: \(vfs_read\+0x0/0x2f0\) name="enable"', out.stdout), out.stdout
    assert re.search(r' dp: \(dput\+0x0/0x270\) name="enable"', out.stdout), out.stdout

"""kprobe_events: definitions, read-back, format, printed lines, errors and error_log, busy rules."""
from __future__ import annotations

import errno
import re

import pytest
from tracesim.kernel_model.kernel import Kernel
from tracesim.kernel_model.net import core as netmod
from tracesim.kernel_model.trace import output as trace_output
from tracesim.kernel_model.trace.kprobe_events import KprobeError


def send_lo(kernel: Kernel, length: int = 128, count: int = 1) -> None:
    lo = kernel.net.device("lo")
    with kernel.machine.running(kernel.user_task("ping")):
        for i in range(count):
            kernel.net.xmit_frame(lo, netmod.packet_frame(lo, "udp", length, seq=i))


def event_lines(kernel: Kernel) -> list[str]:
    return [ln for ln in trace_output.trace_text(kernel.tracing.top).splitlines()
            if not ln.startswith("#")]


def test_definitions_read_back_as_the_kernel_shows_them(kernel: Kernel) -> None:
    kp = kernel.tracing.kprobes
    kp.write("p:myprobe __netif_receive_skb skb=%di len=+112(%di):u32\n"
             "r:myret __netif_receive_skb $retval\n"
             "p __alloc_skb+4 %si:s32 $comm\n"
             "r8:grp/ev2 netif_rx rv=$retval:x32\n")
    assert kp.text() == (
        "p:kprobes/myprobe __netif_receive_skb skb=%di len=+112(%di):u32\n"
        "r:kprobes/myret __netif_receive_skb arg1=$retval\n"
        "p:kprobes/p___alloc_skb_4 __alloc_skb+4 arg1=%si:s32 arg2=$comm\n"
        "r8:grp/ev2 netif_rx rv=$retval:x32\n")
    assert "kprobes:myprobe" in kernel.tracing.available_events()
    assert "grp:ev2" in kernel.tracing.available_events()


def test_format_of_a_kprobe_event(kernel: Kernel) -> None:
    kernel.tracing.kprobes.write("p:myprobe __netif_receive_skb skb=%di len=+112(%di):u32 "
                                 "c=$comm b=%si:u8 s=%dx:s16")
    fmt = kernel.tracing.event("kprobes", "myprobe").format_text()
    body = fmt.split("\n\n")[1:]
    assert body[0] == (
        "\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n"
        "\tfield:u64 skb;\toffset:16;\tsize:8;\tsigned:0;\n"
        "\tfield:u32 len;\toffset:24;\tsize:4;\tsigned:0;\n"
        "\tfield:__data_loc char[] c;\toffset:28;\tsize:4;\tsigned:0;\n"
        "\tfield:u8 b;\toffset:32;\tsize:1;\tsigned:0;\n"
        "\tfield:s16 s;\toffset:33;\tsize:2;\tsigned:1;")
    assert body[1] == ('print fmt: "(%lx) skb=0x%Lx len=%u c=\\"%s\\" b=%u s=%d", '
                       "REC->__probe_ip, REC->skb, REC->len, __get_str(c), REC->b, REC->s\n")
    ret = kernel.tracing.kprobes.command("r:myret __netif_receive_skb $retval")
    assert "field:unsigned long __probe_func;\toffset:8;" in ret.format_text()
    assert "field:unsigned long __probe_ret_ip;\toffset:16;" in ret.format_text()
    # BTF: $retval has the function's return type (int)
    assert 'print fmt: "(%lx <- %lx) arg1=%d", REC->__probe_func, REC->__probe_ret_ip, ' \
           "REC->arg1" in ret.format_text()


def test_enabled_probe_prints_symbol_offset_size_and_args(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.kprobes.write("p:myprobe __netif_receive_skb skb=%di len=+112(%di):u32 comm=$comm\n"
                     "r:myret __netif_receive_skb $retval")
    tr.top.set_system_enabled("kprobes", True)
    send_lo(kernel, 150)
    lines = event_lines(kernel)
    size = kernel.kallsyms.lookup(kernel.kallsyms.address_of("__netif_receive_skb"))[2]
    assert any(re.search(rf": myprobe: \(__netif_receive_skb\+0x0/0x{size:x}\) "
                         r"skb=0xffff[0-9a-f]{12} len=150 comm=\"ping\"$", ln) for ln in lines)
    # the return address is in the caller, as the kretprobe trampoline sees it; arg1 is s32 (BTF)
    assert any(re.search(r": myret: \(process_backlog\+0x[0-9a-f]+/0x1b0 <- __netif_receive_skb\) "
                         r"arg1=0$", ln) for ln in lines)
    profile = tr.kprobes.profile_text().splitlines()
    assert profile[0] == f"  {'myprobe':<44} {1:>15} {0:>15}"


def test_probes_cost_nothing_until_enabled(kernel: Kernel) -> None:
    kernel.tracing.kprobes.write("p:myprobe __netif_receive_skb")
    site = kernel.kprobes.site("__netif_receive_skb")
    assert not site.active
    kernel.tracing.top.file("kprobes", "myprobe").set_enabled(True)
    assert site.active
    kernel.tracing.top.file("kprobes", "myprobe").set_enabled(False)
    assert not site.active


def test_delete_and_busy_rules(kernel: Kernel) -> None:
    kp = kernel.tracing.kprobes
    kp.write("p:myprobe __netif_receive_skb\np:other netif_rx")
    kernel.tracing.top.file("kprobes", "myprobe").set_enabled(True)
    for action in (lambda: kp.write("-:myprobe"), lambda: kp.write("", truncate=True)):
        with pytest.raises(OSError) as e:
            action()
        assert e.value.errno == errno.EBUSY
    assert len(kp.events) == 2
    kp.write("-:kprobes/other")
    with pytest.raises(OSError) as e:
        kp.write("-:other")
    assert e.value.errno == errno.ENOENT
    kernel.tracing.top.file("kprobes", "myprobe").set_enabled(False)
    kp.write("", truncate=True)
    assert kp.text() == "" and "kprobes:myprobe" not in kernel.tracing.available_events()


@pytest.mark.parametrize("command, code, message, pos", [
    ("p:myprobe no_such_function", errno.ENOENT, "Invalid probed address or symbol", 10),
    ("p:myprobe __netif_receive_skb %zz", errno.EINVAL, "Invalid register name", 30),
    ("p:myprobe __netif_receive_skb $retval", errno.EINVAL,
     "$retval is not available on probe", 30),
    ("p:myprobe __netif_receive_skb x=%di:u128", errno.EINVAL, "Unknown type is specified", 36),
    ("p:myprobe __netif_receive_skb %di:string", errno.EINVAL,
     "String accepts only memory argument", 34),
    ("p:myprobe __netif_receive_skb 8(%di)", errno.EINVAL, "Invalid fetch argument", 30),
    ("p:myprobe __netif_receive_skb +8%di", errno.EINVAL, "Dereference needs a brace", 30),
    ("p:myprobe __netif_receive_skb $foo", errno.EINVAL, "Invalid $-valiable specified", 30),
    ("p:myprobe __netif_receive_skb $arg0", errno.EINVAL, "Invalid argument number", 30),
    ("p:myprobe __netif_receive_skb 1x=%di", errno.EINVAL,
     "Argument name must follow the same rules as C identifiers", 30),
    ("p:9bad __netif_receive_skb", errno.EINVAL,
     "Event name must follow the same rules as C identifiers", 2),
    ("p8:myprobe __netif_receive_skb", errno.EINVAL, "Maxactive is only for function exit", 1),
    ("r:myprobe __netif_receive_skb+4", errno.EINVAL,
     "Retprobe address must be an function entry", 10),
])
def test_errors_have_kernel_errno_text_and_caret(kernel: Kernel, command: str, code: int,
                                                 message: str, pos: int) -> None:
    with pytest.raises(KprobeError) as e:
        kernel.tracing.kprobes.write(command)
    assert (e.value.errno, e.value.message, e.value.pos) == (code, message, pos)
    log = kernel.tracing.top.error_log_text().splitlines()
    assert re.fullmatch(r"\[ *\d+\.\d{6}\] trace_kprobe: error: " + re.escape(message), log[0])
    assert log[1] == f"  Command: {command}"
    assert log[2] == " " * (11 + pos) + "^"


def test_unknown_command_is_einval_without_log(kernel: Kernel) -> None:
    with pytest.raises(OSError) as e:
        kernel.tracing.kprobes.write("x:foo bar")
    assert e.value.errno == errno.EINVAL
    assert kernel.tracing.top.error_log_text() == ""


def test_same_name_twice_is_eexist(kernel: Kernel) -> None:
    kp = kernel.tracing.kprobes
    kp.write("p:myprobe __netif_receive_skb")
    with pytest.raises(KprobeError) as e:
        kp.write("r:myprobe __netif_receive_skb")
    assert e.value.errno == errno.EEXIST
    assert e.value.message == "Probe type is different from existing probe"


def test_memory_fetches_and_faults(kernel: Kernel) -> None:
    tr = kernel.tracing
    tr.kprobes.write("p:devname __netif_receive_skb name=+280(+16(%di)):string "
                     "bad=+0(\\0x10):u64 badstr=+0(\\0x10):string")
    tr.top.file("kprobes", "devname").set_enabled(True)
    send_lo(kernel)
    line = next(ln for ln in event_lines(kernel) if "devname:" in ln)
    assert line.endswith('name="lo" bad=0 badstr=(fault)')

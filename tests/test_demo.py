"""``tracesim demo``: the RFC story in process and, where FUSE works, through a real mount."""
from __future__ import annotations

import re

from tracesim.tools import cmd_demo

from tests.fuse_helpers import need_fuse


def check_story(out: str) -> None:
    assert "$ cat filter_ex1.o > events/net/netif_receive_skb/filter" in out
    assert "bpf elf filter_ex1 (tracepoint/net/netif_receive_skb) 38 insns jited" in out
    pipe = out.split("$ cat trace_pipe\n", 1)[1].split("(2 lo packets", 1)[0].splitlines()
    # each bpf_printk("...\n") line is followed by an empty line (TP_printk adds its own "\n")
    assert len(pipe) == 6 and pipe[1::3] == ["", ""]
    assert all("bpf_trace_printk: skb " in line for line in pipe[0::3])
    assert all("netif_receive_skb: dev=lo " in line for line in pipe[2::3])
    assert "dev=eth0" not in out
    for phase in ("off", "enabled", "predicate", "bpf_jit", "bpf_interp", "off_again"):
        assert re.search(rf"^{phase} +\d+ +\d+\.\d\d ", out, re.M), phase
    assert re.search(r"^\[ +off\] 300 skb alloc/free \d+ \(usecs\)$", out, re.M)


def test_demo_in_process(capsys):
    assert cmd_demo.main(["--in-process", "--iterations", "300"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("FUSE mount not possible (asked for --in-process)")
    check_story(out)


def test_demo_through_a_mount(capsys, tmp_path):
    need_fuse(tmp_path)
    assert cmd_demo.main(["--iterations", "300"]) == 0
    out = capsys.readouterr().out
    assert re.match(r"\$ tracesim mount /\S+/tracing\n", out), out[:200]
    assert re.search(r"^\$ tracesim umount ", out, re.M)
    check_story(out)

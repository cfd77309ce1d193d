"""The one program loader: program types from section names as libbpf finds them, and
``tracesim check`` agreeing with a ``filter`` write through the in-process tree (accept/reject
and the message) for programs in several kinds of section."""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest
from tracesim.filters.bpf import filter_registry, loader
from tracesim.filters.bpf.compiler.driver import compile_source
from tracesim.filters.bpf.toolchain.asm import assemble
from tracesim.filters.bpf.vm import conformance
from tracesim.tools.cli import main as cli
from tracesim.tools.rss import ebpf_rss

EXAMPLES = Path(__file__).resolve().parent.parent / "tools" / "examples"


@pytest.mark.parametrize("section,prog_type", [
    ("kprobe/do_sys_open", "kprobe"), ("kprobe", "kprobe"), ("kretprobe/x", "kprobe"),
    ("uprobe/bin:f", "kprobe"), ("ksyscall/openat", "kprobe"),
    ("tracepoint/net/netif_receive_skb", "tracepoint"), ("tp/skb/kfree_skb", "tracepoint"),
    ("tracepoint", "tracepoint"), ("socket", "socket_filter"),
])
def test_section_gives_the_program_type(section, prog_type):
    assert loader.prog_type_of("p", section) == prog_type


@pytest.mark.parametrize("section", ["kprobe_foo", "socket/3", "kprobes/accept4", ".text", "x",
                                     "tracepoints/net/x"])
def test_unknown_section_gives_libbpfs_error(section):
    with pytest.raises(loader.LoadError) as info:
        loader.prog_type_of("prog1", section)
    assert info.value.summary == (f"prog 'prog1': missing BPF prog type, check ELF section name "
                                  f"'{section}'")
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize("section,kernel_type", [
    ("raw_tp.w/sched_switch", "RAW_TRACEPOINT_WRITABLE"), ("lsm/file_open", "LSM"),
    ("tc", "SCHED_CLS"), ("classifier", "SCHED_CLS"), ("xdp", "XDP"), ("sk_msg", "SK_MSG"),
    ("sk_reuseport/migrate", "SK_REUSEPORT"), ("cgroup_skb/egress", "CGROUP_SKB"),
])
def test_known_but_unsupported_types_are_named(section, kernel_type):
    assert loader.section_def(section) == kernel_type
    with pytest.raises(loader.LoadError, match=f"BPF_PROG_TYPE_{kernel_type} .* not supported"):
        loader.prog_type_of("p", section)


def test_tracepoint_section_needs_category_and_name():
    assert loader.tracepoint_target("tp/net/netif_rx") == ("net", "netif_rx")
    assert loader.tracepoint_target("tracepoint") is None
    with pytest.raises(loader.LoadError, match="needs <category>/<name>"):
        loader.tracepoint_target("tracepoint/net")


def test_engines_are_defined_once():
    assert filter_registry.ENGINE_CHOICES is loader.ENGINE_CHOICES
    assert ebpf_rss.ENGINES is loader.ENGINES
    assert conformance.ENGINES is loader.ENGINES


@pytest.mark.parametrize("engine", loader.ENGINES)
def test_load_prepares_the_engine(engine):
    loaded = loader.load(assemble("r0 = 7\nexit\n"), prog_type="kprobe", engine=engine,
                         ctx_size=168)
    assert loaded.engine == engine and loaded.runner.run(bytes(168)).value == 7
    assert loader.load(assemble("r0 = 7\nexit\n"), prog_type="kprobe", engine=None).runner is None
    with pytest.raises(ValueError, match="engine must be one of"):
        loader.load(assemble("r0 = 7\nexit\n"), prog_type="kprobe", engine="llvm")


def test_each_failing_step_says_which():
    bad_verify = assemble("r0 = r5\nexit\n")
    with pytest.raises(loader.LoadError) as info:
        loader.load(bad_verify, prog_type="kprobe", engine=None)
    assert info.value.stage == "verifier" and info.value.summary == "R5 !read_ok"
    assert info.value.errno == errno.EACCES and "processed" in info.value.log
    with pytest.raises(loader.LoadError) as info:
        loader.load(assemble("call 9999\nexit\n"), prog_type="kprobe", verify=False)
    assert info.value.stage == "check" and "unknown helper 9999" in info.value.summary
    with pytest.raises(loader.LoadError) as info:
        loader.open_object(b"\x7fELF" + bytes(60))
    assert info.value.summary.startswith("invalid BPF object")


# ---------------------------------------------------------------- check == filter write

KPROBE_EVENT = "p:lprobe sk_skb_reason_drop"
KRETPROBE_EVENT = "r:lret sk_skb_reason_drop"
NETIF = "/events/net/netif_receive_skb/filter"

HEAD = '#include <linux/ptrace.h>\n#include <bpf/bpf_helpers.h>\n#include "tp_net.h"\n'
GPL = 'char _license[] SEC("license") = "GPL";\n'

# (name, source, filter file, kprobe_events line or None)
CASES = [
    ("tp_good", HEAD + 'SEC("tracepoint/net/netif_receive_skb")\n'
     "int f(struct netif_receive_skb_args *ctx) { return ctx->len > 10; }\n" + GPL, NETIF, None),
    ("tp_common_fields", HEAD + 'SEC("tracepoint/net/netif_receive_skb")\n'
     "int f(unsigned long long *ctx) { return ctx[0] != 0; }\n" + GPL, NETIF, None),
    ("tp_past_record", HEAD + 'SEC("tp/net/netif_receive_skb")\n'
     "int f(unsigned int *ctx) { return ctx[200] != 0; }\n" + GPL, NETIF, None),
    ("kprobe_good", HEAD + 'SEC("kprobe/sk_skb_reason_drop")\n'
     "int f(struct pt_regs *ctx) { return ctx->si != 0; }\n" + GPL,
     "/events/kprobes/lprobe/filter", KPROBE_EVENT),
    ("kprobe_write_ctx", HEAD + 'SEC("kprobe/sk_skb_reason_drop")\n'
     "int f(struct pt_regs *ctx) { ctx->si = 1; return 1; }\n" + GPL,
     "/events/kprobes/lprobe/filter", KPROBE_EVENT),
    ("kretprobe_good", HEAD + 'SEC("kretprobe/sk_skb_reason_drop")\n'
     "int f(struct pt_regs *ctx) { return ctx->ax == 0; }\n" + GPL,
     "/events/kprobes/lret/filter", KRETPROBE_EVENT),
    ("unknown_section", HEAD + 'SEC("kprobes/sk_skb_reason_drop")\n'
     "int f(struct pt_regs *ctx) { return 1; }\n" + GPL,
     "/events/kprobes/lprobe/filter", KPROBE_EVENT),
    ("unsupported_type", HEAD + 'SEC("xdp")\n'
     "int f(void *ctx) { return 1; }\n" + GPL, NETIF, None),
    ("not_gpl", HEAD + 'SEC("tracepoint/net/netif_receive_skb")\n'
     'int f(void *ctx) { bpf_printk("x"); return 1; }\n'
     'char _license[] SEC("license") = "MIT";\n', NETIF, None),
]


@pytest.fixture(scope="module")
def system():
    from tracesim.tracefs.system import System
    s = System.boot(cpus=1, seed=1, clock="virtual")
    yield s
    s.shutdown()


def _write(tree, path: str, obj: bytes) -> int:
    """``cat obj > path``: 0 or the errno of the failed write."""
    handle = tree.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        handle.write(obj, 0)
        handle.flush()
    except OSError as e:
        return e.errno
    finally:
        handle.release()
    return 0


@pytest.mark.parametrize("name,source,filter_file,probe", CASES, ids=[c[0] for c in CASES])
def test_check_agrees_with_a_filter_write(system, tmp_path, capsys, name, source, filter_file,
                                          probe):
    obj = compile_source(source, f"{name}.c", [EXAMPLES]).elf
    path = tmp_path / f"{name}.o"
    path.write_bytes(obj)
    status = cli(["check", str(path)])
    out = capsys.readouterr().out
    tree = system.tree
    if probe is not None and probe.split()[0].split(":")[1] not in tree.read_text("/kprobe_events"):
        tree.echo("/kprobe_events", probe, append=True)
    tree.echo("/error_log", "")
    err = _write(tree, filter_file, obj)
    if err == 0:
        assert status == 0 and out == "OK\n", out
        assert tree.read_text(filter_file).startswith("bpf elf f (")
        tree.echo(filter_file, "0")
        return
    assert err == errno.EACCES and status == 1
    m = re.search(r"bpf: error: (.*)\n  Command: f \(", tree.read_text("/error_log"))
    assert m, tree.read_text("/error_log")
    assert m.group(1) in out.splitlines(), (m.group(1), out)


def test_socket_programs_check_as_the_rss_loader_loads(tmp_path, capsys):
    good = compile_source('#include <bpf/bpf_helpers.h>\nSEC("socket")\n'
                          'int f(struct __sk_buff *skb) { return skb->len; }\n' + GPL,
                          "s.c", [EXAMPLES]).elf
    bad = compile_source('#include <bpf/bpf_helpers.h>\nSEC("socket")\n'
                         'int f(struct __sk_buff *skb) { skb->len = 1; return 0; }\n' + GPL,
                         "s.c", [EXAMPLES]).elf
    for data, ok in ((good, True), (bad, False)):
        path = tmp_path / "s.o"
        path.write_bytes(data)
        status = cli(["check", str(path)])
        out = capsys.readouterr().out
        obj = loader.open_object(data)
        try:
            loader.load_object_program(obj, obj.program(), engine=None)
            summary = None
        except loader.LoadError as e:
            summary = e.summary
        assert (status == 0) == ok == (summary is None)
        if not ok:
            assert summary in out.splitlines()


def test_check_type_option_still_overrides(tmp_path, capsys):
    prog = tmp_path / "tp.s"
    prog.write_text("r0 = *(u64 *)(r1 + 8)\nexit\n")
    assert cli(["check", str(prog), "--type", "tracepoint:skb/kfree_skb"]) == 0
    assert capsys.readouterr().out == "OK\n"
    assert cli(["check", str(prog)]) == 0          # kprobe: pt_regs has 168 bytes
    capsys.readouterr()
    prog.write_text("r0 = *(u64 *)(r1 + 168)\nexit\n")
    assert cli(["check", str(prog)]) == 1
    assert "invalid bpf_context access off=168 size=8" in capsys.readouterr().out

"""``tracesim run``: libbpf-tools-style objects built with clang from tests/bpf_progs/, loaded,
attached by section name and driven by a workload on the virtual clock (deterministic), their
records and maps checked as the command prints them; broken objects fail alone, with libbpf's
lines and no traceback."""
from __future__ import annotations

import errno
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tracesim.filters.bpf.attach import AttachError, attach_program, attach_target
from tracesim.filters.bpf.toolchain import btf_values

from tests.conftest import need_tool

ROOT = Path(__file__).resolve().parent.parent
PROGS = ROOT / "tests" / "bpf_progs"
PACKETS = 100                     # eth0 runs 10,000 packets/s: 0.01 s of model time
RUN = ("--workload", "eth0", "--duration", "0.01", "--clock", "virtual")


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> dict[str, Path]:
    """Every tests/bpf_progs/*.bpf.c built as libbpf-tools build them (vmlinux-free: uapi
    headers and libbpf's bpf_helpers.h / bpf_tracing.h)."""
    clang = need_tool("clang", "clang")
    if not Path("/usr/include/bpf/bpf_tracing.h").exists():
        pytest.skip("/usr/include/bpf/bpf_tracing.h is missing: install the Debian package "
                    "'libbpf-dev'")
    out = tmp_path_factory.mktemp("bpf_progs")
    built = {}
    for src in sorted(PROGS.glob("*.bpf.c")):
        obj = out / (src.name.removesuffix(".c") + ".o")
        subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86",
                        "-I/usr/include/x86_64-linux-gnu", "-c", str(src), "-o", str(obj)],
                       check=True, capture_output=True, timeout=120)
        built[src.name.removesuffix(".bpf.c")] = obj
    return built


@pytest.fixture(scope="module")
def cc_objects(tmp_path_factory) -> dict[str, Path]:
    """The tools written without libbpf's BPF_KPROBE macros, built with ``tracesim cc``."""
    out = tmp_path_factory.mktemp("cc_progs")
    built = {}
    for name in ("pktlatency", "pktsnoop"):
        obj = out / f"{name}.bpf.o"
        subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "cc", str(PROGS / f"{name}.bpf.c"),
                        "-o", str(obj)], cwd=ROOT, check=True, capture_output=True, timeout=300)
        built[name] = obj
    return built


def tracesim_run(obj: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "run", str(obj), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def bss(stdout: str) -> dict[str, int]:
    """The ``.bss`` variables of a text dump (``name = value`` lines after ``@.bss:``)."""
    text = stdout.split("@.bss:\n", 1)[1]
    return {m[1]: int(m[2], 0) for m in re.finditer(r"^(\w+) = (\S+)$", text, re.M)}


def test_biolatency_like_histogram(objects):
    done = tracesim_run(objects["pktlatency"], *RUN)
    assert done.returncode == 0, done.stderr
    assert "Attached prog 'rx_start' (kprobe) to kprobe/netif_receive_skb" in done.stderr
    assert "Attached prog 'rx_done' (kprobe) to kprobe/kfree_skbmem" in done.stderr
    out = done.stdout
    assert "@hists:\n     value               : count    distribution\n" in out
    rows = re.findall(r"^ +(\d+) -> (\d+) +: (\d+) +\|([* ]{40})\|$", out, re.M)
    assert rows and rows[0][:2] == ("0", "1")
    assert sum(int(r[2]) for r in rows) == bss(out)["samples"] == PACKETS
    top = max(int(r[2]) for r in rows)
    assert all(r[3] == "*" * (int(r[2]) * 40 // top) + " " * (40 - int(r[2]) * 40 // top)
               for r in rows)


def test_tracesim_cc_builds_print_what_clang_builds_print(objects, cc_objects):
    for name in ("pktlatency", "pktsnoop"):
        clang_run = tracesim_run(objects[name], *RUN, "--set", "min_ns=0" if name == "pktlatency"
                                 else "targ_min_len=0")
        cc_run = tracesim_run(cc_objects[name], *RUN)
        assert cc_run.returncode == clang_run.returncode == 0, cc_run.stderr
        records = [line for line in cc_run.stdout.splitlines() if line.startswith("{")]
        assert records == [line for line in clang_run.stdout.splitlines() if line.startswith("{")]
        hist = cc_run.stdout.split("@.bss:")[0]
        assert hist == clang_run.stdout.split("@.bss:")[0]


def test_biolatency_like_rodata_filter_drops_everything(objects):
    done = tracesim_run(objects["pktlatency"], *RUN, "--set", "min_ns=0xffffffffffff")
    assert done.returncode == 0, done.stderr
    assert "@hists" not in done.stdout           # an empty histogram prints nothing, as bcc
    assert bss(done.stdout) == {"samples": 0, "skipped": PACKETS}


def test_execsnoop_like_ring_buffer_records_as_json(objects):
    done = tracesim_run(objects["pktsnoop"], *RUN, "--json", "--set", "targ_min_len=1000")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    records = [r for r in lines if "map" not in r]
    globals_ = next(r for r in lines if r.get("map", "").endswith(".bss"))
    assert globals_["map"] == "pktsnoop.bss"                     # libbpf's internal map name
    assert records and len(records) == globals_["variables"]["emitted"]
    assert globals_["variables"]["lost"] == 0
    for r in records:
        assert set(r) == {"pid", "cpu", "len", "comm"}
        assert r["len"] >= 1000 and r["comm"] == f"swapper/{r['cpu']}" and r["pid"] == 0


def test_execsnoop_like_text_records_and_record_type(objects):
    done = tracesim_run(objects["pktsnoop"], *RUN, "--record-type", "struct event")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert re.fullmatch(r'\{pid = 0, cpu = [01], len = \d+, comm = "swapper/[01]"\}', first)
    bad = tracesim_run(objects["pktsnoop"], *RUN, "--record-type", "nosuch")
    assert bad.returncode == 2
    assert "--record-type nosuch: no struct named 'nosuch' in the object's BTF" in bad.stderr


def test_every_auto_attach_kind_runs(objects):
    done = tracesim_run(objects["attachall"], *RUN)
    assert done.returncode == 0, done.stderr
    for line in ("'on_tp' (tracepoint) to tracepoint/net/netif_receive_skb",
                 "'on_raw' (raw_tracepoint) to raw_tracepoint/netif_receive_skb",
                 "'on_btf' (tracing) to tp_btf/netif_receive_skb",
                 "'on_fentry' (tracing) to fentry/__netif_receive_skb",
                 "'on_fexit' (tracing) to fexit/__kmalloc_noprof",
                 "'on_multi' (kprobe) to kprobe.multi/kmem_cache_* (kmem_cache_alloc_noprof, "
                 "kmem_cache_free)",
                 "'on_kret' (kprobe) to kretprobe/consume_skb",
                 "'on_sample' (perf_event) to perf_event"):
        assert f"Attached prog {line}\n" in done.stderr
    hits = bss(done.stdout)
    assert hits["tp_hits"] == hits["raw_hits"] == hits["btf_hits"] == PACKETS
    assert hits["fentry_hits"] == PACKETS
    assert hits["tp_bytes"] >= 64 * PACKETS
    assert hits["fexit_hits"] > 0 and hits["kret_hits"] > 0
    assert hits["multi_hits"] >= 2 * PACKETS
    assert hits["perf_hits"] == 2                # 10 ms of cpu-clock at 100 Hz, on 2 CPUs


def test_broken_programs_fail_alone(objects):
    done = tracesim_run(objects["broken"], *RUN)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert ("libbpf: prog 'missing_target': failed to create kprobe 'no_such_function+0x0' "
            "perf event: -ENOENT\nlibbpf: prog 'missing_target': failed to auto-attach: "
            "-ENOENT\n") in err
    assert ("libbpf: prog 'unknown_section': missing BPF prog type, check ELF section name "
            "'foo/bar'\n") in err
    assert "program of this type cannot use helper bpf_skb_store_bytes#9\n" in err
    assert "libbpf: prog 'unsupported_helper': failed to load: -EACCES\n" in err
    assert "R1 invalid mem access 'scalar'\n" in err
    assert "libbpf: prog 'rejected': BPF program load failed: Permission denied\n" in err
    assert "Attached prog 'good' (kprobe) to kprobe/netif_receive_skb" in err
    assert bss(done.stdout) == {"good_hits": PACKETS}


def test_strict_makes_the_first_failure_fatal(objects):
    done = tracesim_run(objects["broken"], *RUN, "--strict")
    assert done.returncode == 1
    assert "failed to auto-attach: -ENOENT" in done.stderr
    assert "Tracing..." not in done.stderr and done.stdout == ""


def test_a_map_the_kernel_refuses_fails_the_object(objects):
    done = tracesim_run(objects["badmap"], *RUN)
    assert done.returncode == 1
    assert done.stderr == ("libbpf: map 'wide_keys': failed to create: -EINVAL (map wide_keys: "
                           "array maps need key_size 4, value_size > 0, max_entries > 0 and valid "
                           "map_flags)\nlibbpf: failed to load object 'badmap'\n")


@pytest.mark.parametrize("assignment, message", [
    ("nosuch=1", "--set nosuch: the object has no global variable 'nosuch' in .rodata, .data or "
                 ".bss (it has: emitted, lost, targ_min_len, unused_event)"),
    ("targ_min_len=-1", "--set targ_min_len=-1: -1 is out of range for 'const volatile __u32' "
                        "(0..4294967295)"),
    ("targ_min_len=big", "--set targ_min_len=big: 'big' is not an integer"),
    ("unused_event=1", "--set unused_event=1: a 'const struct event *' cannot be set"),
    ("targ_min_len", "--set 'targ_min_len': expected NAME=VALUE"),
])
def test_set_is_type_checked(objects, assignment, message):
    done = tracesim_run(objects["pktsnoop"], *RUN, "--set", assignment)
    assert done.returncode == 1
    assert done.stderr.startswith(message), done.stderr
    assert done.stdout == ""


def test_missing_object_and_unknown_workload(objects, tmp_path):
    done = tracesim_run(tmp_path / "none.o", *RUN)
    assert (done.returncode, done.stderr) == (1, f"tracesim run: {tmp_path / 'none.o'}: No such "
                                                 "file or directory\n")
    done = tracesim_run(objects["pktsnoop"], "--workload", "nosuch", "--duration", "0.01")
    assert done.returncode == 2 and "unknown workload 'nosuch'" in done.stderr


def test_tail_call_dispatcher(objects):
    done = tracesim_run(objects["tailcall"], *RUN)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^handled = \[(\d+), (\d+)\]$", done.stdout, re.M)
    assert bss(done.stdout).get("fell_through", 0) == 0


def test_bpf_loop_sum(objects):
    done = tracesim_run(objects["loopsum"], *RUN, "--set", "n=4")
    assert done.returncode == 0, done.stderr
    assert bss(done.stdout) == {"total": 10 * PACKETS, "calls": PACKETS}


def test_offcputime_like_stack_counts(objects):
    done = tracesim_run(objects["stacks"], *RUN)
    assert done.returncode == 0, done.stderr
    assert "@counts:" in done.stdout


def test_log2_hist_draws_as_bcc():
    assert btf_values.log2_hist([0, 0, 0], "usecs") == []
    assert btf_values.log2_hist([1, 0, 4, 2], "usecs") == [
        "     usecs               : count    distribution",
        "         0 -> 1          : 1        |**********                              |",
        "         2 -> 3          : 0        |                                        |",
        "         4 -> 7          : 4        |****************************************|",
        "         8 -> 15         : 2        |********************                    |",
    ]
    wide = btf_values.log2_hist([0] * 33 + [3], "nsecs")
    assert wide[0] == f"{'':15}{'nsecs':<29} : count    distribution"
    assert wide[-1] == (f"{1 << 33:>20} -> {(1 << 34) - 1:<20} : 3        |" + "*" * 20 + "|")


@pytest.mark.parametrize("section, err, line", [
    ("tp/ftrace/print", "EINVAL", "prog 'p': failed to attach to tracepoint 'ftrace/print': "
                                  "-EINVAL"),
    ("tp/net/nosuch", "ENOENT", "prog 'p': failed to create tracepoint 'net/nosuch' perf event: "
                                "-ENOENT"),
    ("tp/net", "EINVAL", "prog 'p': invalid format of section definition 'tp/net'"),
    ("raw_tp/nosuch", "ENOENT", "prog 'p': failed to attach to raw tracepoint 'nosuch': -ENOENT"),
    ("tp_btf/nosuch", "ESRCH", "prog 'p': failed to find kernel BTF type ID of 'nosuch': "
                               "-ESRCH"),
    ("fentry/nosuch", "ESRCH", "prog 'p': failed to find kernel BTF type ID of 'nosuch': -ESRCH"),
    ("kprobe.multi/zzz*", "ENOENT", "prog 'p': failed to find any kernel symbol matching 'zzz*'"),
    ("kretprobe/kfree+0x4", "EINVAL", "prog 'p': kretprobes do not support offset specification"),
    ("kprobe/notify_die", "EINVAL", "prog 'p': failed to create kprobe 'notify_die+0x0' perf event: "
                                 "-EINVAL"),           # on the kprobe blacklist
])
def test_attach_errors_are_libbpfs(kernel, section, err, line):
    with pytest.raises(AttachError) as info:
        attach_program(kernel, "p", section, lambda ctx: 0)
    assert (errno.errorcode[info.value.errno], info.value.lines[-1]) == (err, line)


def test_bare_sections_are_not_attached_and_detach_undoes(kernel):
    assert attach_program(kernel, "p", "kprobe", lambda ctx: 0) is None
    assert attach_program(kernel, "p", "socket", lambda ctx: 0) is None
    hits = []
    link = attach_program(kernel, "p", "raw_tp/netif_receive_skb", hits.append)
    kernel.workloads.get("eth0").step(3)
    link.detach()
    kernel.workloads.get("eth0").step(3)
    assert len(hits) == 3 and all(len(ctx) == 96 for ctx in hits)
    assert not kernel.tracing.event("net", "netif_receive_skb").enabled


def test_ctrl_c_ends_the_run_with_its_maps(objects):
    proc = subprocess.Popen([sys.executable, "-m", "tracesim.tools.cli", "run", str(objects["pktlatency"]),
                             "--workload", "eth0"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = ""
    while "Tracing..." not in line:
        line = proc.stderr.readline()
        assert line, proc.communicate()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert bss(out)["samples"] > 0


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "tools", "run", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: tracesim run ")


@pytest.mark.parametrize("section, target", [
    ("kprobe/kfree+0x10", ("kprobe", "kfree", 16)), ("kprobe/kfree+010", ("kprobe", "kfree", 8)),
    ("kprobe/kfree+16", ("kprobe", "kfree", 16)), ("tp/net/netif_rx", ("tracepoint", "net/netif_rx", 0)),
    ("raw_tp/netif_rx", ("raw_tracepoint", "netif_rx", 0)), ("perf_event", ("perf_event", "", 0)),
    ("kprobe", None), ("tracepoint", None), ("socket", None), ("xdp", None),
])
def test_attach_target_parses_as_libbpf(section, target):
    parsed = attach_target("p", section)
    assert (None if parsed is None else (parsed.kind, parsed.name, parsed.offset)) == target


def test_maps_as_json(objects):
    done = tracesim_run(objects["pktlatency"], *RUN, "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    by_map = {line["map"]: line for line in lines}
    assert set(by_map) == {"start", "hists", "pktlatency.bss"}
    assert by_map["start"] == {"map": "start", "entries": []}      # every skb was freed
    hist = by_map["hists"]
    assert hist["key"] == 0 and len(hist["hist"]) == 27
    assert hist["hist"][:2] == [{"low": 0, "high": 1, "count": 0}, {"low": 2, "high": 3, "count": 0}]
    assert sum(s["count"] for s in hist["hist"]) == PACKETS
    assert by_map["pktlatency.bss"]["variables"] == {"samples": PACKETS, "skipped": 0}


def test_record_type_skips_map_types(objects):
    from tracesim.filters.bpf import loader
    obj = loader.open_object(objects["pktsnoop"].read_bytes())
    event = obj.btf.find(4, "event")                       # BTF_KIND_STRUCT
    assert btf_values.record_type(obj.btf, 28, None, btf_values.map_type_ids(obj.btf, obj.maps)) \
        == event
    assert btf_values.record_type(obj.btf, 29) is None
    assert btf_values.to_python(obj.btf, event, bytes(range(28)))["len"] == 0x0b0a0908

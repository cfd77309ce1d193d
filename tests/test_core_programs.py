"""Programs built for a real kernel behave on the model (issue #15, items 4 and 5).

Clang-built (``-g -O2 -target bpf``) CO-RE programs of our own, written with libbpf's real
``bpf_core_read.h`` against a ``vmlinux.h`` from ``tracesim btf dump --format c`` and, when
``../shared`` is there, one ``bpftool`` dumps from the real 6.18 BTF, read ``skb->len``,
``skb->dev->name``, ``skb->protocol``, the ``pkt_type`` bitfield and the current task's
``comm``/``pid`` (through ``bpf_get_current_task``), check field existence and relocate enum
values; what they print equals the event's fields.  With a member moved in a target BTF made
for the test, the CO-RE build follows it and a plain build does not.  Bad ``.BTF.ext`` input
gives libbpf's error on the mount, never a traceback.
"""
from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from elftools.elf.elffile import ELFFile
from tracesim.filters.bpf import loader
from tracesim.filters.bpf.toolchain import btf as B
from tracesim.kernel_model.model_btf import model_btf_bytes

from tests.conftest import need_shared, need_tool
from tests.fuse_helpers import sh

ROOT = Path(__file__).resolve().parent.parent
NETIF = "events/net/netif_receive_skb"
CORE_READ_H = Path("/usr/include/bpf/bpf_core_read.h")

PROGRAM = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* net:netif_receive_skb's record, as its format file lays it out */
struct args { __u64 common; struct sk_buff *skbaddr; };

/* an enum as another kernel numbers it, with a value the target lacks */
enum bpf_map_type___mine { BPF_MAP_TYPE_RINGBUF___mine = 99, BPF_MAP_TYPE_NOPE___mine = 98 };
/* a member no kernel has */
struct sk_buff___gone { int not_in_any_kernel; } __attribute__((preserve_access_index));

SEC("tracepoint/net/netif_receive_skb")
int show(struct args *ctx)
{
	struct sk_buff *skb = ctx->skbaddr;
	struct task_struct *task = (void *)bpf_get_current_task();
	char name[16] = {}, comm[16] = {};
	unsigned int len = BPF_CORE_READ(skb, len);
	__u16 proto = BPF_CORE_READ(skb, protocol);
	__u64 pkt_type = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
	int pid = BPF_CORE_READ(task, pid);

	BPF_CORE_READ_STR_INTO(&name, skb, dev, name);
	BPF_CORE_READ_STR_INTO(&comm, task, comm);
	bpf_printk("len %u dev %s proto %x", len, name, proto);
	bpf_printk("comm %s pid %d pkt_type %llu", comm, pid, pkt_type);
	bpf_printk("exists %d %d", bpf_core_field_exists(skb->dev),
		bpf_core_field_exists(((struct sk_buff___gone *)skb)->not_in_any_kernel));
	bpf_printk("enum %lld %d",
		bpf_core_enum_value(enum bpf_map_type___mine, BPF_MAP_TYPE_RINGBUF___mine),
		bpf_core_enum_value_exists(enum bpf_map_type___mine, BPF_MAP_TYPE_NOPE___mine));
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
"""

PRINTK = re.compile(r"^\s*(?P<task>.+)-(?P<pid>\d+)\s+\[\d{3}\].*bpf_trace_printk: (?P<msg>.*)$")
EVENT = re.compile(r"^\s*(?P<task>.+)-(?P<pid>\d+)\s+\[\d{3}\].*netif_receive_skb: "
                   r"dev=(?P<dev>\S+) skbaddr=[0-9a-f]+ len=(?P<len>\d+)$")


def need_libbpf_headers() -> None:
    if not CORE_READ_H.exists():
        pytest.skip(f"{CORE_READ_H} is missing: install the Debian package libbpf-dev")


def model_vmlinux_h() -> str:
    """``tracesim btf dump --format c``, as a user makes their vmlinux.h."""
    done = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "btf", "dump", "--format", "c"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def shared_vmlinux_h(tmp: Path) -> str:
    """``bpftool btf dump file <6.18 BTF> format c`` of the shared real kernel's BTF."""
    shared = need_shared()
    bpftool = need_tool("bpftool", "bpftool")
    raw = tmp / "vmlinux.btf"
    gz = shared / "reference" / "linux-6.18" / "btf" / "vmlinux.gz"
    raw.write_bytes(gzip.decompress(gz.read_bytes()))
    return subprocess.run([bpftool, "btf", "dump", "file", str(raw), "format", "c"],
                          capture_output=True, text=True, timeout=120, check=True).stdout


def compile_bpf(tmp: Path, source: str, header: str, *flags: str) -> bytes:
    clang = need_tool("clang", "clang")
    (tmp / "vmlinux.h").write_text(header)
    (tmp / "p.c").write_text(source)
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", *flags, "-c", "p.c", "-o", "p.o"],
                   cwd=tmp, check=True, capture_output=True, timeout=120)
    return (tmp / "p.o").read_bytes()


@pytest.fixture(scope="module")
def core_objects(tmp_path_factory) -> dict[str, bytes]:
    """The program built against each vmlinux.h: ``model`` always, ``shared`` when present."""
    need_libbpf_headers()
    out = {"model": compile_bpf(tmp_path_factory.mktemp("model"), PROGRAM, model_vmlinux_h())}
    try:
        tmp = tmp_path_factory.mktemp("shared")
        out["shared"] = compile_bpf(tmp, PROGRAM, shared_vmlinux_h(tmp))
    except pytest.skip.Exception:
        pass
    return out


def expected(event: re.Match, comm: str, pid: int) -> list[str]:
    """What the program prints for one received packet: the event's own fields."""
    return [f"len {event['len']} dev {event['dev']} proto 8",    # ETH_P_IP, as __be16 in memory
            f"comm {comm} pid {pid} pkt_type 0",                 # PACKET_HOST
            "exists 1 0", "enum 27 0"]                           # BPF_MAP_TYPE_RINGBUF = 27


def write_filter(tree, obj: bytes) -> None:
    handle = tree.open(f"/{NETIF}/filter", os.O_WRONLY | os.O_TRUNC)
    try:
        handle.write(obj, 0)
        handle.flush()
    finally:
        handle.release()


@pytest.mark.parametrize("header", ["model", "shared"])
def test_core_program_reads_the_events_fields(core_objects, system, header):
    """Run as a user task: the task fields are that task's, the skb fields the event's."""
    if header not in core_objects:
        need_shared()
        need_tool("bpftool", "bpftool")
    tree = system.tree
    write_filter(tree, core_objects[header])
    tree.echo(f"/{NETIF}/enable", "1")
    tree.echo("/trace", "")
    machine = system.kernel.machine
    task = machine.spawn_user("core-reader")
    with machine.running(task):
        assert system.control(["send", "eth5", "--len", "100"])[0] == 0
    lines = tree.read_text("/trace").splitlines()
    printed = [m for m in map(PRINTK.match, lines) if m]
    events = [m for m in map(EVENT.match, lines) if m]
    assert len(events) == 1 and events[0]["len"] == "100" and events[0]["dev"] == "eth5"
    assert [m["msg"] for m in printed] == expected(events[0], task.comm, task.pid)
    # the printk lines come from the context the event was recorded in
    assert {(m["task"].strip(), m["pid"]) for m in printed} == {(events[0]["task"].strip(),
                                                                 events[0]["pid"])}
    dmesg = system.control(["dmesg"])[1]
    assert re.search(r"libbpf: prog 'show': relo #\d+: patched insn #\d+ \(ALU/ALU64\) "
                     r"imm 280 -> 280\n", dmesg)                 # net_device.name at 0x118


def test_core_program_on_the_fuse_mount(core_objects, mnt):
    """``cat p.o > filter`` on a real mount: the softirq runs on the idle task (``<idle>-0``
    in the trace, comm ``swapper/0``), and libbpf's CO-RE lines are in dmesg."""
    obj = mnt.parent / "core_show.o"
    obj.write_bytes(core_objects["model"])
    done = sh(f"cat {obj} > {NETIF}/filter && echo 1 > {NETIF}/enable && echo > trace", mnt)
    assert done.returncode == 0, done.stderr
    ctl = [sys.executable, "-m", "tracesim.tools.cli", "ctl", str(mnt)]
    subprocess.run([*ctl, "send", "eth5", "--len", "100"], check=True, timeout=120, cwd=ROOT)
    lines = (mnt / "trace").read_text().splitlines()
    events = [m for m in map(EVENT.match, lines) if m]
    assert len(events) == 1 and events[0]["task"].strip() == "<idle>"
    printed = [m["msg"] for m in map(PRINTK.match, lines) if m]
    assert printed == expected(events[0], "swapper/0", 0)
    dmesg = subprocess.run([*ctl, "dmesg"], capture_output=True, text=True, timeout=120,
                           cwd=ROOT).stdout
    assert "libbpf: sec 'tracepoint/net/netif_receive_skb': found 16 CO-RE relocations" in dmesg
    assert re.search(r"libbpf: prog 'show': relo #\d+: <enumval_value> .* = 99\n", dmesg)


# ---------------------------------------------------------------- a member moved

MOVED = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

SEC("kprobe/moved")
int probe(struct pt_regs *ctx)
{
	struct sk_buff *skb = (void *)ctx->di;
#ifdef PLAIN
	unsigned int len = 0;
	__u8 flags = 0;

	bpf_probe_read_kernel(&len, sizeof(len), &skb->len);
	bpf_probe_read_kernel(&flags, 1, &skb->__pkt_type_offset);
	return ((long)len << 8) | (flags & 7);
#else
	return ((long)BPF_CORE_READ(skb, len) << 8) | BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
#endif
}

char LICENSE[] SEC("license") = "GPL";
"""

SKB_ADDR = 0xFFFF_8880_0000_1000


def moved_target() -> tuple[B.Btf, int, int, int, int]:
    """A fresh copy of the model BTF whose sk_buff has ``len`` and ``data_len`` swapped and
    ``pkt_type`` three bits higher; (btf, old len, new len, pkt_type byte, old bit) offsets."""
    btf = B.parse(model_btf_bytes())            # a private copy: the model's own is shared
    skb = btf.types[btf.find(B.STRUCT, "sk_buff")]
    byname = {m[0]: i for i, m in enumerate(skb.members)}
    i_len, i_data_len = byname["len"], byname["data_len"]
    (n1, t1, o1), (n2, t2, o2) = skb.members[i_len], skb.members[i_data_len]
    skb.members[i_len], skb.members[i_data_len] = (n1, t1, o2), (n2, t2, o1)
    found = _bitfield(btf, skb, "pkt_type", 0)
    assert found is not None, "sk_buff has no pkt_type bitfield"
    holder, idx, base = found
    name, tid, raw = holder.members[idx]
    bit = (raw & 0xFFFFFF) + base
    holder.members[idx] = (name, tid, raw + 3)          # three bits higher, same width
    return btf, o1 // 8, o2 // 8, bit // 8, bit % 8


def _bitfield(btf: B.Btf, t: B.BtfType, name: str, base: int) -> tuple[B.BtfType, int, int] | None:
    """The struct/union holding member ``name`` (looking through anonymous members), its index,
    and the bit offset of that struct in ``sk_buff``."""
    for i, (mname, tid, raw) in enumerate(t.members):
        off = raw & 0xFFFFFF if t.kind_flag else raw
        if mname == name:
            return t, i, base
        inner = btf.types[btf.resolve(tid)]
        if not mname and inner.kind in (B.STRUCT, B.UNION):
            found = _bitfield(btf, inner, name, base + off)
            if found:
                return found
    return None


def run_moved(obj: bytes, target: B.Btf, memory: bytes) -> int:
    """Load ``obj`` relocated against ``target`` and run it on an skb at SKB_ADDR."""
    opened = loader.open_object(obj, target_btf=target)
    loaded = loader.load_object_program(opened, opened.programs[0], engine="interp")

    def probe_read(addr: int, size: int) -> tuple[int, bytes]:
        off = addr - SKB_ADDR
        return 0, memory[off:off + size]
    env = SimpleNamespace(kpages={}, kernel=SimpleNamespace(mem=SimpleNamespace(
        probe_read=probe_read)))
    regs = bytearray(168)
    regs[112:120] = SKB_ADDR.to_bytes(8, "little")          # pt_regs.di
    return loaded.runner(bytes(regs), env=env)


def test_a_moved_member_is_followed_by_core_and_missed_without_it(tmp_path):
    need_libbpf_headers()
    header = model_vmlinux_h()
    core = compile_bpf(tmp_path, MOVED, header)
    plain = compile_bpf(tmp_path, MOVED, header, "-DPLAIN", "-DBPF_NO_PRESERVE_ACCESS_INDEX")
    assert b".BTF.ext" in plain and b"sk_buff" in plain
    target, old_len, new_len, pkt_byte, old_bit = moved_target()
    memory = bytearray(4096)
    memory[new_len:new_len + 4] = (1234).to_bytes(4, "little")     # len where the target has it
    memory[old_len:old_len + 4] = (999).to_bytes(4, "little")      # what is there now
    memory[pkt_byte] = (2 << old_bit) | (5 << (old_bit + 3))       # pkt_type 5, moved
    assert run_moved(core, target, bytes(memory)) == (1234 << 8) | 5
    assert run_moved(plain, target, bytes(memory)) == (999 << 8) | 2


# ---------------------------------------------------------------- bad input

def _section(obj: bytes, name: str) -> tuple[int, int]:
    s = ELFFile(io.BytesIO(obj)).get_section_by_name(name)
    return s["sh_offset"], s["sh_size"]


def _core_record(obj: bytes) -> int:
    """Where in ``obj`` the first CO-RE relocation record starts."""
    off, _ = _section(obj, ".BTF.ext")
    hdr_len, core_off = (int.from_bytes(obj[off + k:off + k + 4], "little") for k in (4, 24))
    start = off + hdr_len + core_off
    return start + 4 + 8            # rec_size, then the first section's name and count


def _bad_objects(obj: bytes) -> dict[str, tuple[bytes, str]]:
    rec = _core_record(obj)
    ext_off, _ = _section(obj, ".BTF.ext")

    def patched(at: int, value: int) -> bytes:
        return obj[:at] + value.to_bytes(4, "little") + obj[at + 4:]
    return {
        "unknown type": (patched(rec + 4, 0xFFFF), "type id 65535 is out of range"),
        "access string": (patched(rec + 8, 1), "access string"),
        "record size": (patched(rec - 12, 3), "-22"),
        "bad kind": (patched(rec + 12, 77), "unknown relocation kind 77"),
        "ext version": (obj[:ext_off + 2] + b"\x07" + obj[ext_off + 3:], "-95"),
    }


@pytest.mark.parametrize("case", ["unknown type", "access string", "bad kind"])
def test_bad_core_records_give_libbpfs_error(core_objects, system, case):
    bad, message = _bad_objects(core_objects["model"])[case]
    with pytest.raises(OSError) as err:
        write_filter(system.tree, bad)
    assert err.value.errno == 13
    log = system.tree.read_text("/error_log")
    assert "bpf: error: libbpf: " in log and message in log, log
    assert "Traceback" not in log
    assert "libbpf: " in system.control(["dmesg"])[1]


@pytest.mark.parametrize("case", ["record size", "ext version"])
def test_a_btf_ext_libbpf_cannot_read_is_ignored_with_its_warning(core_objects, system, case):
    """As libbpf: the object loads without its CO-RE relocations, the warning in dmesg."""
    bad, err = _bad_objects(core_objects["model"])[case]
    write_filter(system.tree, bad)
    assert (f"libbpf: Error loading ELF section .BTF.ext: {err}. Ignored and continue.\n"
            in system.control(["dmesg"])[1])


def test_bad_btf_ext_through_the_mount(core_objects, mnt):
    """``cat bad.o > filter`` fails with EACCES, error_log and dmesg say libbpf's words; a
    BTF.ext libbpf cannot read is ignored with its warning (in dmesg) and the load goes on."""
    objs = _bad_objects(core_objects["model"])
    bad = mnt.parent / "bad_core.o"
    bad.write_bytes(objs["unknown type"][0])
    done = sh(f"cat {bad} > {NETIF}/filter", mnt)
    assert done.returncode != 0 and "Permission denied" in done.stderr
    assert "Traceback" not in done.stderr
    assert "libbpf: " in (mnt / "error_log").read_text()
    ignored = mnt.parent / "ignored_ext.o"
    ignored.write_bytes(objs["ext version"][0])
    done = sh(f"cat {ignored} > {NETIF}/filter", mnt)
    dmesg = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "ctl", str(mnt), "dmesg"],
                           capture_output=True, text=True, timeout=120, cwd=ROOT).stdout
    assert "type id 65535 is out of range" in dmesg
    assert "libbpf: Error loading ELF section .BTF.ext: -95. Ignored and continue." in dmesg
    assert "Traceback" not in done.stderr + dmesg


def _with_btf(obj: bytes, change) -> bytes:
    """``obj`` with its .BTF decoded, changed by ``change(btf)`` and encoded in place."""
    off, size = _section(obj, ".BTF")
    btf = B.parse(obj[off:off + size])
    change(btf)
    data = btf.encode()
    assert len(data) == size
    return obj[:off] + data + obj[off + size:]


def test_btf_with_a_loop_or_a_dangling_id_or_huge_counts(core_objects, system):
    """A typedef that names itself: the load fails with the loop named, no hang; a type id
    that points nowhere: .BTF is ignored as libbpf does; a type section past the end: the
    object is refused."""
    obj = core_objects["model"]

    def loop(btf: B.Btf) -> None:
        be16 = btf.find(B.TYPEDEF, "__be16")
        btf.types[be16].ref = be16

    def dangling(btf: B.Btf) -> None:
        btf.types[btf.find(B.TYPEDEF, "__be16")].ref = 60000

    with pytest.raises(OSError) as err:
        write_filter(system.tree, _with_btf(obj, loop))
    assert err.value.errno == 13
    assert "libbpf: prog 'show': BTF type loop" in system.tree.read_text("/error_log")
    write_filter(system.tree, _with_btf(obj, dangling))
    off, _ = _section(obj, ".BTF")
    huge = obj[:off + 12] + (0xFFFFFFF0).to_bytes(4, "little") + obj[off + 16:]   # type_len
    with pytest.raises(OSError) as err:
        write_filter(system.tree, huge)
    assert err.value.errno == 13
    assert ".BTF header points past the end of the section" in system.tree.read_text("/error_log")
    dmesg = system.control(["dmesg"])[1]
    assert "libbpf: btf: type [" in dmesg and "]: invalid referenced type ID 60000\n" in dmesg
    assert "libbpf: Error loading ELF section .BTF: -22. Ignored and continue.\n" in dmesg


def test_mangled_btf_and_btf_ext_never_raise_anything_but_load_errors(core_objects):
    import random
    obj = core_objects["model"]
    rng = random.Random(15)
    for name in (".BTF", ".BTF.ext"):
        off, size = _section(obj, name)
        for _ in range(150):
            b = bytearray(obj)
            for _ in range(rng.randrange(1, 4)):
                at = off + rng.randrange(min(size, 2048))
                b[at:at + 4] = rng.randrange(1 << 32).to_bytes(4, "little")
            try:
                opened = loader.open_object(bytes(b))
                loader.load_object_program(opened, opened.programs[0], engine=None,
                                           prog_type="tracepoint")
            except loader.LoadError:
                pass


# ---------------------------------------------------------------- func_info and line_info

LINES = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct args { __u64 common; struct sk_buff *skbaddr; };

static __attribute__((noinline)) int twice(int x)
{
	return x * 2;
}

SEC("tracepoint/net/netif_receive_skb")
int peek(struct args *ctx)
{
	struct sk_buff *skb = ctx->skbaddr;
	unsigned int len = BPF_CORE_READ(skb, len);

	if (len > 1000)
		return twice(len);
	return ctx->common != 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def lines_object(tmp_path_factory) -> tuple[Path, bytes]:
    need_libbpf_headers()
    tmp = tmp_path_factory.mktemp("lines")
    return tmp / "p.o", compile_bpf(tmp, LINES, model_vmlinux_h())


def test_func_and_line_info_follow_linking(lines_object):
    """The subprogram ``twice`` is linked after ``peek``: its func_info and line_info move
    with it."""
    path, obj = lines_object
    spec = loader.open_object(obj).program("peek")
    btf = loader.open_object(obj).btf
    funcs = [(at, btf.types[tid].name) for at, tid in spec.func_info]
    assert funcs[0] == (0, "peek") and funcs[1][1] == "twice"
    twice_at = funcs[1][0]
    assert spec.insns[twice_at:] and spec.insns[-1].opcode == 0x95       # twice ends the code
    assert [(at, text) for at, _, text, _, _ in spec.line_info if at >= twice_at][:2] == [
        (twice_at, "static __attribute__((noinline)) int twice(int x)"),
        (twice_at + 1, "\treturn x * 2;")]
    assert all(file == str(path.parent / "p.c") for _, file, _, _, _ in spec.line_info)


def test_objdump_shows_source_lines(lines_object):
    """``tracesim objdump -S -l`` interleaves ``; file:line`` and ``; source`` as llvm-objdump
    --line-numbers --source does (from .BTF.ext)."""
    path, obj = lines_object
    done = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "objdump", "-S", "-l", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    out = done.stdout.splitlines()
    at = out.index("0000000000000000 <peek>:")
    assert out[at + 1:at + 4] == ["; peek():", f"; {path.parent / 'p.c'}:14",
                                  "; int peek(struct args *ctx)"]
    jump = next(i for i, ln in enumerate(out) if "if r2 > r1 goto" in ln)
    assert out[jump - 2:jump] == [f"; {path.parent / 'p.c'}:19", "; \tif (len > 1000)"]
    source = LINES.splitlines()
    assert all(ln[2:] in source for ln in out if ln.startswith("; ") and not
               ln.startswith(("; /", "; peek():", "; twice():")))
    # without -S/-l the output is llvm-objdump -d's
    plain = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", "objdump", "-d", str(path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    assert not [ln for ln in plain.splitlines() if ln.startswith(";")]


def test_verifier_errors_show_source_lines(lines_object, system):
    """A rejected program's log (dmesg) names its source lines as the kernel's verbose_linfo
    does: ``; <line> @ <file>:<n>`` before the instructions of each line."""
    _, obj = lines_object
    with pytest.raises(OSError):
        write_filter(system.tree, obj)
    assert "bpf: error: invalid bpf_context access off=0 size=8" in system.tree.read_text(
        "/error_log")
    dmesg = [ln.partition("] ")[2] for ln in system.control(["dmesg"])[1].splitlines()]
    fail = dmesg.index("invalid bpf_context access off=0 size=8")
    assert dmesg[fail - 2] == "; return ctx->common != 0; @ p.c:21"
    assert dmesg[fail - 1].startswith("13: (79) r1 = *(u64 *)(r6 ")
    assert "; if (len > 1000) @ p.c:19" in dmesg

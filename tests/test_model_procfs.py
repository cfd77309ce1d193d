"""The model's files outside tracefs: /proc/kallsyms (every symbol, data symbols too),
/proc/version and the banner in memory, debugfs kprobes/list and the kprobes-optimization sysctl,
served by the control channel (``tracesim kallsyms``, ``tracesim ctl MNT cat PATH``, ``sysctl``)
and, in a private mount namespace, at the kernel's paths (tests/proc_overlay.py)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tracesim.tools.ctl_socket import request

from tests.fuse_helpers import sh

ROOT = Path(__file__).resolve().parent.parent
LIST = "/sys/kernel/debug/kprobes/list"


def tracesim(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tracesim.tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def cat(mnt: Path, path: str) -> str:
    status, text = request(str(mnt), ["cat", path])
    assert status == 0, text
    return text


def kallsyms_of(mnt: Path) -> dict[str, tuple[int, str]]:
    """name -> (address, type) of the mount's kallsyms (the first of a repeated name)."""
    out: dict[str, tuple[int, str]] = {}
    for line in cat(mnt, "/proc/kallsyms").splitlines():
        addr, typ, name = line.split("\t")[0].split(" ")
        out.setdefault(name, (int(addr, 16), typ))
    return out


def test_kallsyms_lists_data_symbols_and_every_real_text_symbol() -> None:
    text = tracesim("kallsyms").stdout
    banner = re.search(r"^([0-9a-f]{16}) R linux_proc_banner$", text, re.M)
    assert banner, "linux_proc_banner is a .rodata symbol (type R)"
    assert re.search(r"^[0-9a-f]{16} R linux_banner$", text, re.M)
    # a real 6.18 function the model does not run is listed with its neighbours, in order
    lines = [line for line in text.splitlines() if "__pfx_" not in line]
    at = next(i for i, line in enumerate(lines) if line.endswith(" T tracefs_create_dir"))
    addrs = [int(line.split()[0], 16) for line in lines[at - 1:at + 2]]
    assert addrs == sorted(addrs) and len(set(addrs)) == 3
    # a modelled function appears once, at its modelled address
    assert len(re.findall(r" kmem_cache_free$", text, re.M)) == 1
    assert "ffffffff81000000 T _stext\n" in text


@pytest.mark.fuse
def test_proc_version_and_the_banner_in_memory(mnt: Path) -> None:
    version = cat(mnt, "/proc/version")
    assert re.fullmatch(r"Linux version 6\.18\.44\S* \(\S+@\S+\) \(.+\) #1 SMP .+\n", version)
    dmesg = request(str(mnt), ["dmesg"])[1]
    assert dmesg.splitlines()[0].endswith("] " + version.rstrip("\n"))   # linux_banner
    # the format string /proc/version is printed with, read by a probe from the model's
    # memory; +0(@SYM) dereferences the array's first bytes as a pointer, as the kernel does
    done = sh("echo 'p:banner vfs_read s=@linux_proc_banner:string "
              "d=+0(@linux_proc_banner):string' > kprobe_events && "
              "echo 1 > events/kprobes/enable && cat tracing_on >/dev/null && "
              "echo 0 > events/kprobes/enable && cat trace", mnt)
    assert done.returncode == 0, done.stderr
    m = re.search(r'banner: \(vfs_read\+0x0/0x2f0\) s="(%s version %s \(.*\) %s\n)" '
                  r'd=\(fault\)$', done.stdout, re.M)
    assert m, done.stdout
    fields = re.fullmatch(r"(\S+) version (\S+) .*\) (#1 .*)\n", version)
    assert fields and m.group(1) % fields.groups() == version


@pytest.mark.fuse
def test_probe_on_a_data_symbol_is_refused(mnt: Path) -> None:
    done = sh("echo 'p:bad linux_proc_banner' > kprobe_events", mnt)
    assert "Invalid argument" in done.stderr
    assert "Failed to register probe event" in (mnt / "error_log").read_text()


def list_lines(mnt: Path) -> list[str]:
    return cat(mnt, LIST).splitlines()


@pytest.mark.fuse
def test_kprobes_list_shows_armed_probes_with_their_state(mnt: Path) -> None:
    syms = kallsyms_of(mnt)
    clone, read = syms["kernel_clone"][0], syms["vfs_read"][0]
    assert list_lines(mnt) == []
    done = sh("echo 'p:opt kernel_clone+9' > kprobe_events && echo 'p:ent vfs_read' >> "
              "kprobe_events && echo 'r:ret vfs_read' >> kprobe_events && "
              "echo 'p:off kernel_clone+0x20' >> kprobe_events && "
              "echo 1 > events/kprobes/opt/enable && echo 1 > events/kprobes/ent/enable && "
              "echo 1 > events/kprobes/ret/enable", mnt)
    assert done.returncode == 0, done.stderr
    lines = list_lines(mnt)
    # a defined probe whose event is off is not armed in the model, so not listed
    assert sorted(lines) == sorted([
        f"{clone + 9:016x}  k  kernel_clone+0x9    [OPTIMIZED]",
        f"{read:016x}  r  vfs_read+0x0    [FTRACE]",
        f"{read:016x}  k  vfs_read+0x0    [FTRACE]",
    ])
    # the newest probe at an address first (kprobe_table bucket order otherwise)
    assert lines.index(f"{read:016x}  r  vfs_read+0x0    [FTRACE]") \
        < lines.index(f"{read:016x}  k  vfs_read+0x0    [FTRACE]")
    # without optimization the jump is gone; the sysctl reads back as set
    assert request(str(mnt), ["sysctl", "debug.kprobes-optimization=0"]) == (
        0, "debug.kprobes-optimization = 0\n")
    assert cat(mnt, "/proc/sys/debug/kprobes-optimization") == "0\n"
    assert f"{clone + 9:016x}  k  kernel_clone+0x9    " in list_lines(mnt)
    assert request(str(mnt), ["sysctl", "debug.kprobes-optimization=2"])[0] == 1
    request(str(mnt), ["sysctl", "debug.kprobes-optimization=1"])
    sh("echo 0 > events/kprobes/enable && echo > kprobe_events", mnt)
    assert list_lines(mnt) == []


@pytest.mark.fuse
def test_probe_past_a_symbols_end_lands_in_the_next(mnt: Path) -> None:
    """_kprobe_addr: SYM+OFFS past SYM's end is the address there, in the next symbol."""
    text = tracesim("kallsyms").stdout.splitlines()
    at = next(i for i, line in enumerate(text) if line.endswith(" T tracefs_create_dir"))
    here, after = (int(text[i].split()[0], 16) for i in (at, at + 1))
    nxt = text[at + 1].split()[2]
    done = sh(f"echo 'p:past tracefs_create_dir+{after - here}' > kprobe_events && "
              "echo 1 > events/kprobes/past/enable", mnt)
    assert done.returncode == 0, done.stderr
    assert (mnt / "kprobe_events").read_text() == \
        f"p:kprobes/past tracefs_create_dir+{after - here}\n"
    assert list_lines(mnt) == [f"{after:016x}  k  {nxt}+0x0    [FTRACE]"]
    sh("echo 0 > events/kprobes/enable && echo > kprobe_events", mnt)
    # far past the text: no symbol there
    done = sh("echo 'p:none tracefs_create_dir+0x40000000' > kprobe_events", mnt)
    assert done.returncode != 0


@pytest.mark.fuse
def test_open_and_task_free_have_their_kernel_call_sites(mnt: Path) -> None:
    """An openat's getname/putname use names_cache; a task_struct goes back in free_task."""
    done = sh("echo 1 > events/kmem/kmem_cache_free/enable && echo 1 > "
              "events/kmem/kmem_cache_alloc/enable && echo 0 > tracing_on && cat trace", mnt)
    assert done.returncode == 0, done.stderr
    assert re.search(r"kmem_cache_alloc: call_site=getname_flags\+0x[0-9a-f]+/0x[0-9a-f]+ "
                     r"ptr=\w+ name=names_cache bytes_req=4096 bytes_alloc=4096 "
                     r"gfp_flags=GFP_KERNEL", done.stdout)
    assert re.search(r"kmem_cache_free: call_site=putname\+0x[0-9a-f]+/0x[0-9a-f]+ ptr=\w+ "
                     r"name=names_cache", done.stdout)
    assert request(str(mnt), ["cat", "/proc/nosuch"])[0] == 1


def test_task_struct_free_call_site(system: Any) -> None:
    tree, machine = system.tree, system.kernel.machine
    tree.echo("/events/kmem/kmem_cache_free/enable", "1")
    machine.exit_task(machine.spawn("short"))
    assert re.search(r"kmem_cache_free: call_site=free_task\+0x33/0x40 ptr=\w+ "
                     r"name=task_struct", tree.cat("/trace").decode())


@pytest.fixture
def overlay(mnt: Path, tmp_path: Path) -> Iterator[list[str]]:
    """The command prefix of a private mount namespace with the model's files bound at the
    kernel's paths (root, FUSE and unshare needed: skips otherwise)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("binding over /proc needs root and unshare")
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from proc_overlay import mount_commands
    finally:
        sys.path.remove(str(Path(__file__).parent))
    where = tmp_path / "overlay"
    where.mkdir()
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("proc_overlay.py")),
                               str(where), str(mnt)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(where) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.ismount(where), "the overlay did not come up"
        yield ["unshare", "-m", "--propagation", "private", "sh", "-c",
               mount_commands(str(where)) + ' && exec "$@"', "sh"]
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)
        server.wait(timeout=20)


@pytest.mark.fuse
def test_namespace_shows_the_models_files(mnt: Path, overlay: list[str]) -> None:
    script = ("cat /proc/version; grep -c . /proc/kallsyms; grep ' linux_proc_banner$' "
              "/proc/kallsyms; cat /proc/sys/debug/kprobes-optimization; "
              "echo 0 > /proc/sys/debug/kprobes-optimization; "
              "echo 'p:k kernel_clone+9' > kprobe_events; echo 1 > events/kprobes/enable; "
              "cat /sys/kernel/debug/kprobes/list; echo 0 > events/kprobes/enable; "
              "echo > kprobe_events; echo 1 > /proc/sys/kernel/stack_tracer_enabled")
    done = subprocess.run([*overlay, "bash", "-c", script], cwd=mnt, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] + "\n" == cat(mnt, "/proc/version")
    assert int(lines[1]) == len(cat(mnt, "/proc/kallsyms").splitlines())
    assert lines[2].endswith(" R linux_proc_banner")
    assert lines[3] == "1"
    assert re.fullmatch(r"[0-9a-f]{16}  k  kernel_clone\+0x9    ", lines[4])   # not optimized
    assert cat(mnt, "/proc/sys/debug/kprobes-optimization") == "0\n"
    assert request(str(mnt), ["sysctl", "kernel.stack_tracer_enabled"])[1] == \
        "kernel.stack_tracer_enabled = 1\n"
    # the host's own files are untouched
    with open("/proc/version") as f:
        assert "tracesim" not in f.read()

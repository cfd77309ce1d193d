"""User memory: the path a task passes to openat lives in its own address space, where probes'
``:ustring``/``+u`` fetches read it, and a kernel address read as user memory faults. Through
the mount, ``ls``'s opendir of the mount is its ``openat(AT_FDCWD, ".", ...)``."""
from __future__ import annotations

import re
from pathlib import Path

from tracesim.kernel_model.mm.memory import EFAULT
from tracesim.kernel_model.syscalls import USER_PATH
from tracesim.tracefs.host_tasks import OPENDIR_FLAGS, HostTasks, OpenCall, caller_open

from tests.fuse_helpers import sh


def _trace_lines(text: str, name: str) -> list[str]:
    return [ln for ln in text.splitlines() if f" {name}: " in ln]


def test_ustring_and_u_deref_read_the_path_openat_was_given(tree, system) -> None:
    tree.echo("/kprobe_events", "p:op do_sys_openat2 path=+0($arg2):ustring "
              "path2=+u0($arg2):string plain=+0($arg2):string c=+u0($arg2):u8 "
              "kern=+0($arg1):ustring")
    tree.echo("/events/kprobes/op/enable", "1")
    k = system.kernel
    task = k.user_task("bash")
    with k.sched.running(task):
        k.syscalls.openat(USER_PATH, 0, lambda: 3, path=b"/dev/null")
        k.syscalls.openat(USER_PATH + 0x100000, 0, lambda: 3)     # nothing stored there
    lines = _trace_lines(tree.read_text("/trace"), "op")
    assert lines[0].endswith('path="/dev/null" path2="/dev/null" plain="/dev/null" c=47 '
                             'kern=(fault)'), lines
    assert lines[1].endswith("path=(fault) path2=(fault) plain=(fault) c=0 kern=(fault)"), lines


def test_ustring_of_kernel_memory_faults_where_string_reads_it(tree, system) -> None:
    """vfs_read's file is kernel memory: ``:string`` reads it, ``:ustring`` and ``+u`` fault
    (the kernel's user accessors refuse an address above TASK_SIZE)."""
    name = "+0(+40(+72($arg1)))"       # file->f_path.dentry->d_name.name
    tree.echo("/kprobe_events", f"p:rd vfs_read s={name}:string u={name}:ustring "
              "u2=+u0($arg1):string")
    k = system.kernel
    task = k.user_task("cat")
    with k.sched.running(task):
        fd = k.syscalls.openat(USER_PATH, 0, lambda: 3, path=b"trace")
        k.syscalls.install_file(fd, "trace")
        tree.echo("/events/kprobes/rd/enable", "1")
        k.syscalls.read(fd, 4096, lambda: 0)
    [line] = _trace_lines(tree.read_text("/trace"), "rd")
    assert line.endswith(' s="trace" u=(fault) u2=(fault)'), line


def test_a_fork_copies_user_memory_and_exec_replaces_it(system) -> None:
    k = system.kernel
    shell = k.user_task("bash")
    mem = k.mem
    with k.sched.running(shell):
        k.syscalls.store_user(USER_PATH, b"/dev/null\0")
        child = k.syscalls.clone()
    with k.sched.running(child):
        assert mem.probe_read_user_str(USER_PATH, 64) == (10, b"/dev/null\0")
        k.syscalls.store_user(USER_PATH, b"mine\0")
    with k.sched.running(shell):
        assert mem.probe_read_user_str(USER_PATH, 64) == (10, b"/dev/null\0")
        assert mem.probe_read_user(USER_PATH, 4) == (0, b"/dev")
        assert mem.probe_read_user(0xffff888100000000, 4) == (-EFAULT, bytes(4))
    with k.sched.running(child):
        k.sched.exec("/usr/bin/true")
        assert mem.probe_read_user_str(USER_PATH, 64) == (-EFAULT, bytes(64))
    with k.sched.running(k.kthreadd):                 # a kernel thread has no user memory
        assert mem.probe_read_user_str(USER_PATH, 64) == (-EFAULT, bytes(64))


def test_caller_open_reads_the_path_a_caller_passed() -> None:
    calls = {1: (257, [0xffffff9c, 0x5600, 0x90800, 0, 0, 0]),
             2: (2, [0x7ffc, 0x241, 0o644, 0, 0, 0]), 3: (0, [3, 0, 0, 0, 0, 0])}
    strings = {0x5600: b".", 0x7ffc: b"trace"}
    found = caller_open(1, calls.get, lambda pid, addr: strings.get(addr))
    assert found is not None
    assert (found.dfd, found.addr, found.path, found.flags) == (-100, 0x5600, b".", 0x90800)
    found = caller_open(2, calls.get, lambda pid, addr: strings.get(addr))
    assert found is not None and (found.dfd, found.path, found.flags) == (-100, b"trace", 0x241)
    assert caller_open(3, calls.get, lambda pid, addr: strings.get(addr)) is None   # a read


def test_an_open_whose_caller_is_unknown_passes_the_absolute_path(system) -> None:
    k = system.kernel
    host = HostTasks(k, comm_of=lambda pid: "ls", ppid_of=lambda pid: 1,
                     exe_of=lambda pid: "/usr/bin/ls", alive=lambda pid: True,
                     open_of=lambda pid: None, mountpoint="/sys/kernel/tracing")
    known = HostTasks(k, comm_of=lambda pid: "cat", ppid_of=lambda pid: 1,
                      exe_of=lambda pid: "/usr/bin/cat", alive=lambda pid: True,
                      open_of=lambda pid: OpenCall(-100, 0x55aa00, b"trace", 0))
    system.tree.echo("/kprobe_events", "p:op do_sys_openat2 dfd=$arg1:s32 "
                     "path=+0($arg2):ustring")
    system.tree.echo("/events/kprobes/op/enable", "1")
    system.tree.echo("/events/syscalls/sys_enter_openat/enable", "1")
    host.openat(4242, "/events", None, lambda: 7)
    known.openat(4243, "/trace", 0o100000, lambda: 8)
    host.closedir(7)
    text = system.tree.read_text("/trace")
    assert re.search(r' ls-4242 .* op: \(do_sys_openat2\+0x0/0x[0-9a-f]+\) dfd=-100 '
                     r'path="/sys/kernel/tracing/events"$', text, re.M), text
    assert re.search(rf" ls-4242 .* sys_enter_openat: dfd: 0xffffff9c, filename: "
                     rf"0x{USER_PATH:x}, flags: 0x{OPENDIR_FLAGS:08x}, ", text), text
    assert re.search(r' cat-4243 .* op: .* path="trace"$', text, re.M), text
    assert re.search(r" cat-4243 .* sys_enter_openat: dfd: 0xffffff9c, filename: 0x0055aa00, "
                     r"flags: 0x00000000, ", text), text


def test_ls_of_the_mount_is_its_openat_of_dot(mnt: Path) -> None:
    """ls lists the mount (cwd) with opendir: openat(AT_FDCWD, ".", O_RDONLY|O_NONBLOCK|
    O_CLOEXEC|O_DIRECTORY), whose path a kprobe's ``:ustring`` and an eprobe read."""
    script = ("echo 'p:op do_sys_openat2 path=+0($arg2):ustring path2=+u0($arg2):string' "
              "> kprobe_events && "
              "echo 'e:eop syscalls/sys_enter_openat file=+0($filename):ustring' "
              ">> dynamic_events && "
              "echo 1 > events/kprobes/op/enable && echo 1 > events/eprobes/eop/enable && "
              "echo 1 > events/syscalls/sys_exit_close/enable && "
              "ls > /dev/null && ls events > /dev/null && "
              "echo 0 > events/kprobes/op/enable && echo 0 > events/eprobes/eop/enable && "
              "echo 0 > events/syscalls/sys_exit_close/enable && cat trace")
    done = sh(script, mnt)
    sh("echo > dynamic_events; echo > trace", mnt)
    assert done.returncode == 0, done.stderr
    ls = [ln for ln in done.stdout.splitlines() if re.match(r" *ls-\d+ ", ln)]
    assert any(ln.endswith(' op: (do_sys_openat2+0x0/0xe0) path="." path2="."')
               for ln in ls), ls
    assert any(ln.endswith(' eop: (syscalls.sys_enter_openat) file="."') for ln in ls), ls
    assert any(ln.endswith(' eop: (syscalls.sys_enter_openat) file="events"') for ln in ls), ls
    assert any(ln.endswith(" sys_exit_close: 0x0") for ln in ls), ls     # its closedir


USER_READER = r"""
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("kprobe/do_sys_openat2")
int op(struct pt_regs *ctx)
{
	char buf[16];
	char one[4];
	const char *name = (const char *)PT_REGS_PARM2(ctx);
	long n = bpf_probe_read_user_str(buf, sizeof(buf), name);
	long k = bpf_probe_read_kernel_str(one, sizeof(one), name);
	long c = bpf_probe_read_user(one, 1, name);

	return n == 10 && buf[0] == '/' && buf[5] == 'n' && k < 0 && c == 0 && one[0] == '/';
}

char _license[] SEC("license") = "GPL";
"""


def test_bpf_probe_read_user_reads_the_path_of_the_current_task(system) -> None:
    """A kprobe program keeps only opens of "/dev/null": bpf_probe_read_user_str reads the
    task's path, bpf_probe_read_kernel_str refuses the user address (-EFAULT)."""
    from tracesim.filters.bpf.compiler.driver import compile_source

    from tests.tree_helpers import cat_into
    examples = Path(__file__).resolve().parent.parent / "tools" / "examples"
    obj = compile_source(USER_READER, "op.c", [examples]).elf
    kernel, tree = system.kernel, system.tree
    tree.echo("/kprobe_events", "p:opev do_sys_openat2")
    kept = {}
    for engine in ("jit", "interp"):
        assert system.control(["bpf-engine", engine])[0] == 0
        cat_into(tree, "/events/kprobes/opev/filter", obj)
        tree.echo("/events/kprobes/opev/enable", "1")
        tree.echo("/trace", "")
        with kernel.lock, kernel.sched.running(kernel.user_task("bash")):
            for path in (b"/dev/null", b"/dev/zero", b"/dev/null"):
                kernel.syscalls.openat(USER_PATH, 0, lambda: 3, path=path)
            with kernel.sched.running(kernel.kthreadd):      # no user memory: a fault
                kernel.syscalls.openat(USER_PATH, 0, lambda: 3)
        kept[engine] = len(_trace_lines(tree.read_text("/trace"), "opev"))
        tree.echo("/events/kprobes/opev/enable", "0")
        tree.echo("/events/kprobes/opev/filter", "0")
    assert system.control(["bpf-engine", "jit"])[0] == 0
    assert kept == {"jit": 2, "interp": 2}


def test_a_ustring_filter_matches_the_path_in_user_memory(tree, system) -> None:
    """``filename.ustring ~ ...`` reads the task's path; a plain ``filename ~`` reads it as
    kernel memory, which a user pointer is not (strncpy_from_kernel_nofault fails)."""
    k = system.kernel
    tree.echo("/events/syscalls/sys_enter_openat/filter", 'filename.ustring ~ "/dev/*"')
    tree.echo("/events/syscalls/sys_enter_openat/enable", "1")
    with k.sched.running(k.user_task("bash")):
        for path in (b"/dev/null", b"trace", b"/dev/zero"):
            k.syscalls.openat(USER_PATH, 0, lambda: 3, path=path)
        tree.echo("/events/syscalls/sys_enter_openat/filter", 'filename ~ "/dev/*"')
        k.syscalls.openat(USER_PATH, 0, lambda: 3, path=b"/dev/null")
    assert len(_trace_lines(tree.read_text("/trace"), "sys_enter_openat")) == 2

"""Real tracing tools against a mount: perf (TRACEFS_PATH) and trace-cmd (libtracefs shim)."""
from __future__ import annotations

import os
import re
import subprocess
import textwrap

import pytest
from tracesim.tools.ctl_socket import request

from tests.conftest import need_tool

pytestmark = pytest.mark.fuse

# trace-cmd has no option for another tracefs directory: this preload library points libtracefs
# at the mount, sends trace-cmd's one write outside tracefs (/proc/sys/kernel/ftrace_enabled,
# which sandboxes refuse) to a scratch file, and gives it the model's kallsyms
# (TRACESIM_KALLSYMS, from `tracesim kallsyms`) where it would copy the host's /proc/kallsyms.
SHIM = textwrap.dedent(r"""
    #define _GNU_SOURCE
    #include <dlfcn.h>
    #include <fcntl.h>
    #include <stdarg.h>
    #include <stdlib.h>
    #include <string.h>
    int tracefs_set_tracing_dir(char *tracing_dir);

    __attribute__((constructor)) static void point_at_tracesim(void)
    {
        char *dir = getenv("TRACESIM_TRACEFS");
        if (dir)
            tracefs_set_tracing_dir(dir);
    }

    static const char *redirect(const char *path)
    {
        const char *scratch = getenv("TRACESIM_FTRACE_ENABLED");
        const char *kallsyms = getenv("TRACESIM_KALLSYMS");
        if (scratch && strcmp(path, "/proc/sys/kernel/ftrace_enabled") == 0)
            return scratch;
        if (kallsyms && strcmp(path, "/proc/kallsyms") == 0)
            return kallsyms;
        return path;
    }

    #define WRAP(name)                                                        \
    int name(const char *path, int flags, ...)                                \
    {                                                                         \
        static int (*real)(const char *, int, ...);                           \
        va_list ap;                                                           \
        int mode = 0;                                                         \
        if (!real)                                                            \
            real = dlsym(RTLD_NEXT, #name);                                   \
        va_start(ap, flags);                                                  \
        if (flags & O_CREAT)                                                  \
            mode = va_arg(ap, int);                                           \
        va_end(ap);                                                           \
        return real(redirect(path), flags, mode);                             \
    }
    WRAP(open)
    WRAP(open64)
""")


def test_perf_lists_the_model_tracepoints(mnt):
    perf = need_tool("perf", "linux-perf")
    done = subprocess.run([perf, "list", "tracepoint"], env={**os.environ, "TRACEFS_PATH": str(mnt)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if "[Tracepoint event]" in line}
    for event in ("net:netif_receive_skb", "skb:kfree_skb", "kmem:kmalloc", "napi:napi_poll"):
        assert event in listed


@pytest.fixture
def trace_cmd(mnt, tmp_path):
    binary = need_tool("trace-cmd", "trace-cmd")
    gcc = need_tool("gcc", "gcc")
    src = tmp_path / "shim.c"
    src.write_text(SHIM)
    lib = tmp_path / "shim.so"
    built = subprocess.run([gcc, "-shared", "-fPIC", "-o", str(lib), str(src), "-ltracefs", "-ldl"],
                           capture_output=True, text=True)
    if built.returncode:
        pytest.skip(f"cannot build the libtracefs shim (install 'libtracefs-dev'): {built.stderr}")
    scratch = tmp_path / "ftrace_enabled"
    scratch.write_text("1\n")
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text(request(str(mnt), ["kallsyms"])[1])
    env = {**os.environ, "LD_PRELOAD": str(lib), "TRACESIM_TRACEFS": str(mnt),
           "TRACESIM_FTRACE_ENABLED": str(scratch), "TRACESIM_KALLSYMS": str(kallsyms)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([binary, *args], env=env, capture_output=True, text=True,
                              timeout=60)
    return run


def test_trace_cmd_list_start_show_stop_reset(mnt, trace_cmd):
    listed = trace_cmd("list", "-e")
    assert listed.returncode == 0, listed.stderr
    assert "net:netif_receive_skb" in listed.stdout.split()

    started = trace_cmd("start", "-e", "net:netif_receive_skb")
    assert started.returncode == 0, started.stderr
    assert (mnt / "set_event").read_text() == "net:netif_receive_skb\n"
    assert (mnt / "tracing_on").read_text() == "1\n"
    assert request(str(mnt), ["send", "lo", "--len", "100", "--count", "2"])[0] == 0

    shown = trace_cmd("show")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("# tracer: nop\n")
    assert shown.stdout.count("netif_receive_skb: dev=lo") == 2

    stopped = trace_cmd("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert (mnt / "tracing_on").read_text() == "0\n"

    reset = trace_cmd("reset")
    assert reset.returncode == 0 and reset.stderr == "", reset.stderr
    assert (mnt / "set_event").read_text() == ""
    assert (mnt / "tracing_on").read_text() == "1\n"
    assert "written: 0/0" in (mnt / "trace").read_text()


def test_trace_cmd_extract_reads_the_binary_pages(mnt, trace_cmd, tmp_path):
    (mnt / "events/net/netif_receive_skb/enable").write_text("1\n")
    assert request(str(mnt), ["send", "lo", "--len", "100", "--count", "3"])[0] == 0
    out = tmp_path / "trace.dat"
    extracted = trace_cmd("extract", "-o", str(out))
    assert extracted.returncode == 0, extracted.stderr
    report = trace_cmd("report", "-i", str(out))
    assert report.returncode == 0, report.stderr
    lines = [line for line in report.stdout.splitlines() if "netif_receive_skb:" in line]
    assert len(lines) == 3
    assert all(re.search(r"dev=lo skbaddr=0x[0-9a-f]+ len=100$", line) for line in lines)

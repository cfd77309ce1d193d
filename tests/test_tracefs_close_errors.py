"""Errors reach the writer where the kernel reports them (issue #13, item 3).

``printf bogus >> set_event`` has no trailing newline. The kernel's ftrace_event_write parses
each write() alone (a fresh trace_parser), so the cut word is applied by that same write and a
bad one fails it with EINVAL; nothing is left for close. The pid lists (trace_pid_write) and
``trigger``/``filter`` (whole-buffer parsers) work per write too. Only the function filters
keep a cut word across writes and apply it at release, where ftrace_regex_release drops the
result: ``printf bogus >> set_ftrace_filter`` succeeds on the kernel. An error that does
arise at close (a BPF object written to ``filter`` is loaded then) reaches close(2).
"""
from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracesim.tracefs.errors import FsError

from tests.fuse_helpers import mounted, need_fuse

KFREE = "events/skb/kfree_skb"
# Words set_event refuses, written without a newline (the last one is longer than the parser's
# 127 bytes; the NUL ends the word as a blank would).
BAD_EVENT_WORDS = ["bogus", "!bogus", "nosys:kfree_skb", "skb:nosuch", "!skb:nosuch", "nosys:",
                   ":nosuch", "bogus\\0", "x" * 200]


# -- through a real mount, with the shell ----------------------------------------------------------
@pytest.fixture(scope="module")
def mnt(tmp_path_factory) -> Iterator[Path]:
    need_fuse(tmp_path_factory.getbasetemp())
    with mounted(tmp_path_factory.mktemp("close-errors")) as path:
        yield path


def sh(script: str, mnt: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=mnt, capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def clean(mnt: Path) -> Iterator[Path]:
    yield mnt
    sh("echo > set_event; echo > set_event_pid; echo > set_ftrace_filter", mnt)


@pytest.mark.fuse
@pytest.mark.parametrize("word", BAD_EVENT_WORDS)
def test_printf_bad_word_to_set_event_fails(clean, word):
    done = sh(f"printf '{word}' >> set_event", clean)
    assert done.returncode == 1
    assert "write error: Invalid argument" in done.stderr
    assert (clean / "set_event").read_text() == ""


@pytest.mark.fuse
def test_printf_good_word_is_applied_by_the_write(clean):
    done = sh("printf skb:kfree_skb >> set_event", clean)
    assert done.returncode == 0, done.stderr
    assert (clean / "set_event").read_text() == "skb:kfree_skb\n"
    # Applied by write() itself, before the file is closed.
    fd = os.open(clean / "set_event", os.O_WRONLY | os.O_APPEND)
    try:
        assert os.write(fd, b"!skb:kfree_skb") == len("!skb:kfree_skb")
        assert (clean / "set_event").read_text() == ""
    finally:
        os.close(fd)


@pytest.mark.fuse
def test_words_after_a_bad_one_are_not_applied(clean):
    done = sh("printf 'skb:kfree_skb bogus skb:consume_skb' > set_event", clean)
    assert done.returncode == 1 and "Invalid argument" in done.stderr
    assert (clean / "set_event").read_text() == "skb:kfree_skb\n"


@pytest.mark.fuse
def test_one_word_per_write(clean):
    fd = os.open(clean / "set_event", os.O_WRONLY | os.O_TRUNC)
    try:
        # The kernel takes one word and its blank, and returns that count.
        assert os.write(fd, b"skb:kfree_skb skb:consume_skb") == len("skb:kfree_skb ")
        with pytest.raises(OSError) as err:
            os.write(fd, b"skb:kfree")                 # a cut word is applied as it is
        assert err.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert (clean / "set_event").read_text() == "skb:kfree_skb\n"


@pytest.mark.fuse
def test_pid_lists_fail_on_the_write(clean):
    for name in ("set_event_pid", "set_event_notrace_pid"):
        done = sh(f"printf bogus >> {name}", clean)
        assert done.returncode == 1 and "Invalid argument" in done.stderr, name
        assert sh(f"printf 12 >> {name}", clean).returncode == 0
        assert (clean / name).read_text() == "12\n"
        sh(f"echo > {name}", clean)


@pytest.mark.fuse
def test_trigger_and_filter_fail_on_the_write(clean):
    for script in (f"printf bogus >> {KFREE}/trigger", f"printf 'len ==' > {KFREE}/filter",
                   f"printf 'nosuchfield == 1' > {KFREE}/filter"):
        done = sh(script, clean)
        assert done.returncode == 1 and "write error" in done.stderr, script
    assert sh(f"printf traceoff >> {KFREE}/trigger", clean).returncode == 0
    assert (clean / KFREE / "trigger").read_text().startswith("traceoff:unlimited")
    sh(f"printf '!traceoff' >> {KFREE}/trigger", clean)


@pytest.mark.fuse
def test_function_filter_applies_a_cut_word_at_close_and_drops_its_error(clean):
    """ftrace_regex_release applies the pending word and ignores the result, as the kernel."""
    name = (clean / "available_filter_functions").read_text().split()[0]
    done = sh("printf bogus >> set_ftrace_filter", clean)
    assert done.returncode == 0, done.stderr
    assert (clean / "set_ftrace_filter").read_text() == "#### all functions enabled ####\n"
    fd = os.open(clean / "set_ftrace_filter", os.O_WRONLY | os.O_APPEND)
    os.write(fd, name.encode())
    assert (clean / "set_ftrace_filter").read_text() == "#### all functions enabled ####\n"
    os.close(fd)
    assert (clean / "set_ftrace_filter").read_text() == f"{name}\n"


@pytest.mark.fuse
def test_an_error_at_close_reaches_close(clean):
    """A BPF object written to ``filter`` is loaded at close: its error is close()'s."""
    fd = os.open(clean / KFREE / "filter", os.O_WRONLY)
    os.write(fd, b"\x7fELF" + b"\0" * 60)
    with pytest.raises(OSError) as err:
        os.close(fd)
    assert err.value.errno in (errno.EINVAL, errno.EACCES)


# -- in process --------------------------------------------------------------------------------------
@pytest.fixture
def tree():
    from tracesim.tracefs.system import System
    system = System.boot(cpus=2, seed=1, clock="virtual")
    yield system.tree
    system.shutdown()


def errno_of(call, *args, **kwargs) -> int:
    try:
        call(*args, **kwargs)
    except FsError as err:
        return err.errno
    return 0


@pytest.mark.parametrize("word", BAD_EVENT_WORDS)
def test_tree_bad_word_fails_the_write(tree, word):
    data = word.replace("\\0", "\0")
    assert errno_of(tree.echo, "/set_event", data, append=True, newline=False) == errno.EINVAL
    assert tree.read_text("/set_event") == ""


def test_tree_set_event_nothing_is_left_for_close(tree):
    handle = tree.open("/set_event", os.O_WRONLY | os.O_APPEND)
    assert handle.write(b"skb:kfree_skb", 0) == len("skb:kfree_skb")
    assert tree.read_text("/set_event") == "skb:kfree_skb\n"
    assert errno_of(handle.write, b"bogus", 0) == errno.EINVAL
    handle.flush()
    handle.release()
    assert tree.read_text("/set_event") == "skb:kfree_skb\n"


def test_tree_blank_only_and_nul_writes(tree):
    handle = tree.open("/set_event", os.O_WRONLY | os.O_APPEND)
    assert handle.write(b"  \n\t", 0) == 4            # only blanks: all taken, nothing done
    assert handle.write(b"\0skb:kfree_skb", 0) == 1   # a NUL where a word starts: one byte
    assert handle.write(b"skb:kfree_skb\0!x", 0) == len("skb:kfree_skb\0")
    handle.release()
    assert tree.read_text("/set_event") == "skb:kfree_skb\n"


def test_tree_function_filter_pending_word(tree):
    name = tree.read_text("/available_filter_functions").split()[0]
    handle = tree.open("/set_ftrace_filter", os.O_WRONLY | os.O_APPEND)
    half = len(name) // 2
    handle.write(name[:half].encode(), 0)            # cut: kept for the next write
    handle.write(name[half:].encode(), 0)
    assert tree.read_text("/set_ftrace_filter") == "#### all functions enabled ####\n"
    handle.release()
    assert tree.read_text("/set_ftrace_filter") == f"{name}\n"
    tree.echo("/set_ftrace_filter", "bogus", append=True, newline=False)   # dropped at close
    assert tree.read_text("/set_ftrace_filter") == f"{name}\n"
    assert errno_of(tree.echo, "/set_ftrace_filter", "bogus", append=True) == errno.EINVAL

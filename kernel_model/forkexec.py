"""The ``forkexec`` workload: a shell forking and exec'ing short commands, as a build does.

Each step: ``bash`` (pid from 1000 on) calls clone(); the child (woken on the other CPU) execs a
command drawn by the seeded RNG from ``COMMANDS``, opens, reads and closes a file (``sleep``
then sleeps 1 ms in nanosleep; ``curl`` makes a TCP socket whose connect is refused), writes
its output, exits; bash waits for it (wait4). Every step emits the events a real fork/exec/exit does:
sys_enter/exit of each syscall, sched_process_fork/exec/exit/wait, sched_wakeup_new,
sched_switch, signal_generate (SIGCHLD), and sched_process_free one RCU grace period later
(when the idle timeline runs). Rate: ``RATE`` commands per second of model time.
"""
from __future__ import annotations

import random
import threading
import zlib
from typing import TYPE_CHECKING

from tracesim.kernel_model.background import Background
from tracesim.kernel_model.syscalls import USER_PATH

if TYPE_CHECKING:
    from tracesim.kernel_model.kernel import Kernel

RATE = 50
COMMANDS = ("/usr/bin/ls", "/usr/bin/cat", "/usr/bin/grep", "/usr/bin/sed", "/usr/bin/cc1",
            "/usr/bin/as", "/usr/bin/ld", "/usr/bin/sleep", "/usr/bin/curl")
SLEEP_NS = 1_000_000
O_RDONLY_CLOEXEC = 0o2000000
LD_SO_CACHE = b"/etc/ld.so.cache"     # what the dynamic loader of each program opens first
AF_INET, SOCK_STREAM = 2, 1
ECONNREFUSED = 111


class ForkExecWorkload(Background):
    """Same surface as a packet workload: ``step(n)``, ``start()``, ``stop()``, ``running``."""

    thread_name = "workload-forkexec"

    name = "forkexec"

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.rng = random.Random(kernel.seed * 1_000_003 + zlib.crc32(b"forkexec"))
        self.shell = kernel.user_task("bash")
        self.sent = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()


    def step(self, n: int = 1) -> None:
        k = self.kernel
        sys, sched = k.syscalls, k.sched
        for _ in range(n):
            command = COMMANDS[self.rng.randrange(len(COMMANDS))]
            with k.machine.on_cpu(0), sched.running(self.shell):
                child = sys.clone()
            with k.machine.on_cpu(child.cpu), sched.running(child):
                sys.execve(command)
                fd = sys.openat(USER_PATH, O_RDONLY_CLOEXEC, lambda: 3, path=LD_SO_CACHE)
                for _ in range(self.rng.randint(1, 4)):
                    sys.read(fd, 4096, lambda: 4096)
                sys.close(fd, lambda: 0)
                if command.endswith("/sleep"):
                    sys.nanosleep(SLEEP_NS)
                elif command.endswith("/curl"):      # nobody listens on the port it tries
                    sock = sys.socket(AF_INET, SOCK_STREAM, 0, 3)
                    sys.connect(sock, lambda: -ECONNREFUSED)
                    sys.close(sock, lambda: 0)
                sys.write(1, 64, lambda: 64)
                sys.exit_group(0)
            with k.machine.on_cpu(0), sched.running(self.shell):
                sys.wait4(child)
            k.clock.advance(1_000_000_000 // RATE)
            self.sent += 1



    def _run(self) -> None:
        while not self._stop.is_set():
            with self.kernel.lock:
                self.step(1)
            self._stop.wait(1 / RATE)

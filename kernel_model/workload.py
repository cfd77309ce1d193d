"""Named, seeded traffic generators: packets arriving on the NICs, received in softirq on each CPU.

A workload is a ``WorkloadSpec`` (rate, devices, mix) plus a ``random.Random`` seeded from the
kernel's seed and the workload's name, so the same seed gives the same packets in the same order
on the same CPUs with the same virtual timestamps. Frames come from a pool built at creation
(``POOL_SIZE`` per workload) so generating traffic costs little beyond the kernel work itself.

``step(n)`` delivers n packets synchronously: packet i goes to CPU i mod ncpus, arrives on its
device's queue for that CPU (hardirq → NET_RX softirq → NAPI poll → netif_receive_skb ...), and
virtual time advances by the inter-packet gap (1/rate). ``start()`` runs ``step`` batches on a
background thread at the configured rate in wall time (for mounts), holding ``kernel.lock`` for
each batch; ``stop()`` ends it.

| name     | what                                                                      |
| -------- | ------------------------------------------------------------------------- |
| net      | eth0+eth5, 64–1500 B, 20% IPv6, 70% TCP / 30% UDP, 10% to closed ports      |
|          | (``filtered=F``: that fraction to a port an INPUT DROP rule covers)       |
| eth0     | eth0 only, the same mix                                                   |
| udp-small| every NIC, 64–128 B UDP over IPv4, all to the listening port              |
| flood    | every NIC, 64 B UDP at 100,000 packets/s                                   |
| tcp_rr   | netperf TCP_RR over lo: ``netperf`` (CPU 0) and ``netserver`` (CPU 1)     |
| udp_sink | UDP from eth0's peer to a socket whose reader keeps up only in part       |
| forkexec | no packets: a shell forking and exec'ing commands, 50/s (forkexec.py)      |

Parameters follow the name: ``NAME:KEY=VALUE,...`` (``tcp_rr:rate=500,req=64,loss=0.01``);
``WORKLOAD_PARAMS`` lists each workload's keys with their ranges and ``parse_workload`` checks
them, so a mount refuses a bad one before it starts (one line, naming the key and the range).

``tcp_rr``: one transaction is a ``req``-byte request from netperf and a ``resp``-byte
response; a connection carries ``conn`` transactions (0: forever) and is then closed by netperf
and opened again, so the whole state machine shows. ``loss`` is a netem-style qdisc on lo that
drops that fraction of packets (kfree_skb ``QDISC_DROP``); the sender's retransmission timer
(200 ms, doubling) resends (tcp:tcp_retransmit_skb), in timer softirq on its CPU.
``udp_sink``: ``len``-byte datagrams to port 5002 of a socket with ``rcvbuf`` bytes of receive
buffer whose reader (task ``udp_sink``) reads after a fraction ``read`` of the arrivals: the queue
fills, and then datagrams are dropped (udp:udp_fail_queue_rcv_skb, kfree_skb ``SOCKET_RCVBUFF``).
"""
from __future__ import annotations

import random
import time
import zlib
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from tracesim.kernel_model.background import Background
from tracesim.kernel_model.net import sockets as socks
from tracesim.kernel_model.net.core import DISCARD_PORT, packet_frame

if TYPE_CHECKING:
    from tracesim.kernel_model.kernel import Kernel

POOL_SIZE = 256
BATCH = 64
CLOSED_PORT = 7777
FILTERED_PORT = 6666      # iptables -A INPUT -p tcp|udp --dport 6666 -j DROP, with ``filtered``


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    rate: int = 10_000                     # packets per second, all CPUs together
    devices: tuple[str, ...] = ()          # empty: every NIC (not lo)
    min_len: int = 64                      # skb len at netif_receive_skb (the IP packet)
    max_len: int = 1500
    ipv6: float = 0.2
    tcp: float = 0.7
    closed: float = 0.1                    # fraction sent to a port nobody listens on
    filtered: float = 0.0                  # fraction sent to a port an INPUT rule drops


@dataclass(frozen=True)
class TcpRrSpec:
    name: str = "tcp_rr"
    rate: int = 1000                       # transactions per second
    req: int = 1                           # request bytes
    resp: int = 1                          # response bytes
    conn: int = 100                        # transactions per connection (0: one connection)
    loss: float = 0.0                      # fraction of lo packets the qdisc drops
    port: int = 12866                      # netserver's data port


@dataclass(frozen=True)
class UdpSinkSpec:
    name: str = "udp_sink"
    rate: int = 10_000                     # datagrams per second
    len: int = 128                         # skb len at netif_receive_skb (the IP packet)
    rcvbuf: int = socks.SK_RCVBUF_DEFAULT  # the socket's SO_RCVBUF
    read: float = 0.5                      # the reader reads after this fraction of arrivals
    port: int = 5002


WORKLOADS: dict[str, Any] = {
    "net": WorkloadSpec("net", devices=("eth0", "eth5")),
    "eth0": WorkloadSpec("eth0", devices=("eth0",)),
    "udp-small": WorkloadSpec("udp-small", min_len=64, max_len=128, ipv6=0.0, tcp=0.0, closed=0.0),
    "flood": WorkloadSpec("flood", rate=100_000, min_len=64, max_len=64, ipv6=0.0, tcp=0.0,
                          closed=0.0),
    "tcp_rr": TcpRrSpec(),
    "udp_sink": UdpSinkSpec(),
}
# the parameters each kind of workload takes: key -> (low, high), inclusive
_PACKET_PARAMS = {"rate": (1, 1_000_000), "min_len": (48, 65535), "max_len": (48, 65535),
                  "ipv6": (0.0, 1.0), "tcp": (0.0, 1.0), "closed": (0.0, 1.0),
                  "filtered": (0.0, 1.0)}
WORKLOAD_PARAMS: dict[type, dict[str, tuple]] = {
    WorkloadSpec: _PACKET_PARAMS,
    TcpRrSpec: {"rate": (1, 100_000), "req": (1, 65483), "resp": (1, 65483),
                "conn": (0, 1_000_000), "loss": (0.0, 0.2), "port": (1, 65535)},
    UdpSinkSpec: {"rate": (1, 1_000_000), "len": (36, 1500), "rcvbuf": (2048, 16_777_216),
                  "read": (0.0, 1.0), "port": (1, 65535)},
}


def parse_workload(text: str) -> Any:
    """``NAME[:KEY=VALUE,...]`` → the workload's spec with those parameters; ValueError (one
    line) for an unknown name, key, a value that is not a number or out of its range."""
    name, _, params = text.partition(":")
    spec = WORKLOADS.get(name)
    if spec is None:
        raise ValueError(f"unknown workload '{name}' (have: {', '.join([*WORKLOADS, *TASK_WORKLOADS])}, "
                         "none)")
    allowed = WORKLOAD_PARAMS[type(spec)]
    changes: dict[str, Any] = {}
    for item in filter(None, params.split(",")):
        key, eq, value = item.partition("=")
        if key not in allowed or not eq:
            raise ValueError(f"workload {name}: unknown parameter '{key}' "
                             f"(have: {', '.join(f'{k}=N' for k in allowed)})")
        low, high = allowed[key]
        try:
            number: float = type(low)(value)
        except ValueError:
            kind = "an integer" if isinstance(low, int) else "a number"
            raise ValueError(f"workload {name}: {key}={value!r} is not {kind}") from None
        if not low <= number <= high:
            raise ValueError(f"workload {name}: {key}={value} is out of range ({low} to {high})")
        changes[key] = number
    spec = replace(spec, **changes)
    if getattr(spec, "min_len", 0) > getattr(spec, "max_len", 1):
        raise ValueError(f"workload {name}: min_len={spec.min_len} is above max_len={spec.max_len}")
    return spec


def _spec_text(spec: Any) -> str:
    """The canonical ``NAME:KEY=VALUE,...`` of a spec (the parameters that differ)."""
    base = WORKLOADS[spec.name]
    changed = [f"{f.name}={getattr(spec, f.name)}" for f in fields(spec)
               if getattr(spec, f.name) != getattr(base, f.name)]
    return spec.name + (":" + ",".join(changed) if changed else "")


class _Runner(Background):
    """A workload's background thread: ``step(BATCH)`` per batch at the rate."""

    kernel: Kernel
    spec: Any

    def step(self, n: int = 1) -> None:
        raise NotImplementedError

    @property
    def thread_name(self) -> str:  # type: ignore[override]
        return f"workload-{self.spec.name}"

    def _run(self) -> None:
        period = BATCH / max(self.spec.rate, 1)
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self.kernel.lock:
                self.step(BATCH)
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()      # behind: do not try to catch up in a burst


def _rng(kernel: Kernel, name: str) -> random.Random:
    return random.Random(kernel.seed * 1_000_003 + zlib.crc32(name.encode()))


class Workload(_Runner):
    """One running (or stopped) packet workload over a kernel."""

    def __init__(self, kernel: Kernel, spec: WorkloadSpec) -> None:
        self.kernel = kernel
        self.spec = spec
        self.rng = _rng(kernel, spec.name)
        names = spec.devices or tuple(n for n, d in kernel.net.devices.items() if not d.loopback)
        missing = [n for n in names if n not in kernel.net.devices]
        if missing:
            raise KeyError(f"workload {spec.name}: no such device: {', '.join(missing)}")
        self.devices = [kernel.net.devices[n] for n in names]
        if spec.filtered:
            kernel.net.nf_input_drop.update({(6, FILTERED_PORT), (17, FILTERED_PORT)})
        self.pool = [self._frame(i) for i in range(POOL_SIZE)]
        self.sent = 0

    def _frame(self, i: int) -> tuple:
        rng, spec = self.rng, self.spec
        dev = self.devices[i % len(self.devices)]
        v6 = rng.random() < spec.ipv6
        proto = "tcp" if rng.random() < spec.tcp else "udp"
        least = (40 if v6 else 20) + (20 if proto == "tcp" else 8)
        length = max(least, rng.randint(spec.min_len, min(spec.max_len, dev.mtu)))
        port = CLOSED_PORT if rng.random() < spec.closed else DISCARD_PORT
        if spec.filtered and rng.random() < spec.filtered:
            port = FILTERED_PORT
        sport = rng.randint(1024, 65535)
        return dev, packet_frame(dev, proto, length, seq=i, v6=v6, dport=port, sport=sport)

    def step(self, n: int = 1) -> None:
        """Deliver ``n`` packets now (the caller holds ``kernel.lock`` if threads are about)."""
        k = self.kernel
        m = k.machine
        receive, advance, set_cpu = k.net.receive, k.clock.advance, m.set_cpu
        gap = 1_000_000_000 // max(self.spec.rate, 1)
        pick, pool, ncpus = self.rng.randrange, self.pool, m.nr_cpus
        home = m.this_cpu().id
        try:
            for _ in range(n):
                dev, frame = pool[pick(POOL_SIZE)]
                set_cpu(self.sent % ncpus)
                receive(dev, frame)
                self.sent += 1
                advance(gap)
        finally:
            set_cpu(home)          # the thread of execution returns where it was


MAX_RETRIES = 12          # RTOs a step waits for progress before it gives the connection up


class TcpRrWorkload(_Runner):
    """netperf TCP_RR over loopback (see the module docstring)."""

    def __init__(self, kernel: Kernel, spec: TcpRrSpec) -> None:
        self.kernel, self.spec = kernel, spec
        self.rng = _rng(kernel, _spec_text(spec))
        self.net = kernel.net
        self.socks = kernel.net.sockets
        self.lo = kernel.net.device("lo")
        self.client_task = kernel.user_task("netperf")
        self.server_task = kernel.user_task("netserver")
        ncpus = kernel.machine.nr_cpus
        self.client_cpu, self.server_cpu = 0, 1 % ncpus
        self.listener: socks.Sock | None = None
        self.client: socks.Sock | None = None
        self.child: socks.Sock | None = None
        self.in_conn = 0
        self.transactions = 0
        self.request, self.response = bytes(spec.req), bytes(spec.resp)
        if spec.loss:
            self.net.qdisc_drop["lo"] = lambda skb: self.rng.random() < spec.loss

    def _as(self, task: Any, cpu: int) -> Any:
        """Run as ``task`` on ``cpu``: ``with self._as(...)``."""
        m = self.kernel.machine
        return _Both(m.on_cpu(cpu), m.running(task))

    def _client(self, op: Any, *args: Any) -> Any:
        with self._as(self.client_task, self.client_cpu):
            return op(*args)

    def _server(self, op: Any, *args: Any) -> Any:
        with self._as(self.server_task, self.server_cpu):
            return op(*args)

    def _until(self, done: Any) -> bool:
        """Wait for ``done()``: each round the retransmission timers that are armed expire
        (virtual time moves by the RTO) and run in timer softirq on their socket's CPU."""
        m, clock = self.kernel.machine, self.kernel.clock
        for _ in range(MAX_RETRIES):
            if done():
                return True
            armed = [(sk, cpu) for sk, cpu in ((self.client, self.client_cpu),
                                               (self.child, self.server_cpu))
                     if sk is not None and sk.rtx and sk.timer_at]
            first = min((sk.timer_at for sk, _ in armed), default=0)
            clock.advance(max(first - clock.peek_ns(), 0) if armed else socks.TCP_RTO_MIN_NS)
            for sk, cpu in armed:
                if sk.timer_at <= clock.peek_ns():
                    with m.on_cpu(cpu):
                        with m.softirq():
                            self.socks.retransmit_timer(sk)
                        self.net.do_softirq()
            if self.child is None and self.listener is not None:
                self.child = self._server(self.socks.accept, self.listener)
        return done()

    def _connect(self) -> None:
        S = self.socks
        if self.listener is None:
            self.listener = self._server(S.socket, socks.AF_INET, socks.SOCK_STREAM, 6)
            self._server(S.listen, self.listener, self.spec.port, self.lo)
        self.client = self._client(S.socket, socks.AF_INET, socks.SOCK_STREAM, 6)
        self._client(S.connect, self.client, self.lo, self.lo.ipv4, self.spec.port)
        self.child = self._server(S.accept, self.listener)
        self.in_conn = 0

    def _read(self, task_op: Any, sk_of: Any, want: int) -> bool:
        """Read until ``want`` bytes arrived on the socket ``sk_of()`` gives."""
        got = 0

        def arrived() -> bool:
            nonlocal got
            sk = sk_of()
            if sk is not None and sk.queue:
                got += task_op(self.socks.recv, sk)
            return got >= want
        return self._until(arrived)

    def _transaction(self) -> bool:
        if self.client is None or self.client.state != socks.TCP_ESTABLISHED:
            self._connect()
        S = self.socks
        self._client(S.send, self.client, self.request)
        if not self._read(self._server, lambda: self.child, len(self.request)):
            return False
        self._server(S.send, self.child, self.response)
        if not self._read(self._client, lambda: self.client, len(self.response)):
            return False
        self.transactions += 1
        self.in_conn += 1
        if self.spec.conn and self.in_conn >= self.spec.conn:
            return self._close()
        return True

    def _close(self) -> bool:
        """netperf closes first; netserver reads the end of file and closes too."""
        client, child = self.client, self.child
        assert client is not None and child is not None
        S = self.socks
        self._client(S.close, client)
        ok = self._until(lambda: child.state == socks.TCP_CLOSE_WAIT)
        if ok:
            self._server(S.recv, child)
            self._server(S.close, child)
            ok = self._until(lambda: child.state == socks.TCP_CLOSE)
        self.client = self.child = None
        return ok

    def _give_up(self) -> None:
        """No progress after MAX_RETRIES timeouts: the connection is abandoned (the model's
        sockets of it are left as they are) and the next step opens a new one."""
        self.client = self.child = None

    def step(self, n: int = 1) -> None:
        """Run ``n`` transactions (the caller holds ``kernel.lock`` if threads are about)."""
        gap = 1_000_000_000 // max(self.spec.rate, 1)
        for _ in range(n):
            if not self._transaction():
                self._give_up()
            self.kernel.clock.advance(gap)

    def stop(self) -> None:
        super().stop()
        if self.spec.loss:
            self.net.qdisc_drop.pop("lo", None)


class _Both:
    """Two context managers entered in order and left in reverse."""

    def __init__(self, first: Any, second: Any) -> None:
        self.first, self.second = first, second

    def __enter__(self) -> None:
        self.first.__enter__()
        self.second.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.second.__exit__(*exc)
        self.first.__exit__(*exc)


class UdpSinkWorkload(_Runner):
    """Datagrams from eth0's peer to a UDP socket whose reader falls behind."""

    def __init__(self, kernel: Kernel, spec: UdpSinkSpec) -> None:
        self.kernel, self.spec = kernel, spec
        self.rng = _rng(kernel, _spec_text(spec))
        self.dev = kernel.net.device("eth0")
        self.task = kernel.user_task("udp_sink")
        S = kernel.net.sockets
        with kernel.machine.running(self.task):
            self.sock = S.socket(socks.AF_INET, socks.SOCK_DGRAM, 17)
            S.bind(self.sock, spec.port, self.dev)
        self.sock.rcvbuf = spec.rcvbuf
        self.frames = [packet_frame(self.dev, "udp", spec.len, seq=i, dport=spec.port,
                                    sport=self.rng.randint(1024, 65535)) for i in range(16)]
        self.sent = self.read = 0

    def step(self, n: int = 1) -> None:
        k = self.kernel
        gap = 1_000_000_000 // max(self.spec.rate, 1)
        for _ in range(n):
            k.net.receive(self.dev, self.frames[self.sent % len(self.frames)])
            self.sent += 1
            if self.rng.random() < self.spec.read:
                with k.machine.running(self.task):
                    if k.net.sockets.udp_recv(self.sock) > 0:
                        self.read += 1
            k.clock.advance(gap)


def _forkexec(kernel: Kernel) -> Any:
    from tracesim.kernel_model.forkexec import ForkExecWorkload
    return ForkExecWorkload(kernel)


# forkexec: a shell forking and exec'ing short commands (kernel_model/forkexec.py)
TASK_WORKLOADS = {"forkexec": _forkexec}


class Workloads:
    """The named workloads of one kernel: ``get``, ``start``, ``stop``, ``running``."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._made: dict[str, Workload] = {}

    def names(self) -> list[str]:
        return [*WORKLOADS, *TASK_WORKLOADS]

    def get(self, name: str) -> Any:
        """The workload ``NAME[:KEY=VALUE,...]`` (made on first use; KeyError for a bad one)."""
        if name in TASK_WORKLOADS:                # workloads of tasks, not packets
            made = self._made.get(name)
            if made is None:
                made = self._made[name] = TASK_WORKLOADS[name](self.kernel)
            return made
        try:
            spec = parse_workload(name)
        except ValueError as err:
            raise KeyError(str(err)) from None
        key = _spec_text(spec)
        made = self._made.get(key)
        if made is None:
            kind = {TcpRrSpec: TcpRrWorkload, UdpSinkSpec: UdpSinkWorkload}.get(type(spec),
                                                                               Workload)
            made = self._made[key] = kind(self.kernel, spec)
        return made

    def start(self, name: str) -> Any:
        w = self.get(name)
        w.start()
        return w

    def stop(self, name: str) -> Any:
        w = self.get(name)
        w.stop()
        return w

    def stop_all(self) -> None:
        for w in self._made.values():
            w.stop()

    def running(self) -> list[str]:
        return [n for n, w in self._made.items() if w.running]

"""The RSS loader, after QEMU's ``ebpf/ebpf_rss.c``: load the steering program, configure its
three maps, attach it to a TUN device — or, when the program cannot be built, loaded or verified,
steer with the pure-Python implementation of the same algorithm (``tools/rss_software.py``).

    rss = EbpfRss()                   # ebpf_rss_init
    rss.load()                        # build tools/examples/rss.bpf.c (tracesim cc, else clang),
                                      # verify, run with the JIT (engine="interp", "native" or
                                      # "auto" for the others)
    rss.set_all(config, table, key)   # config map (key 0), table entries < indirections_len, key
    rss.attach(tun)                   # TUNSETSTEERINGEBPF, or the software path
    rss.steer(frame)                  # the program's u16 return value for a frame (both paths)
    rss.deliver(frame)                # send through the TUN device; the guest queue reached
    rss.status_line()                 # "rss: eBPF steering (jit, object built by clang)" or
                                      # "rss: software RSS (fallback: <why>)"
    rss.unload()

``is_loaded()`` is QEMU's (the program is loaded); ``active`` says which path steers: ``"ebpf"``
or ``"software"``.  Until ``load`` succeeds the software path is active, as QEMU's virtio-net falls
back to in-process RSS when the eBPF program cannot be used.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tracesim.filters.bpf import loader
from tracesim.filters.bpf.loader import ENGINES
from tracesim.filters.bpf.runtime.maps import MAP_TYPE_ARRAY, BpfMap
from tracesim.filters.bpf.toolchain import elf
from tracesim.filters.bpf.vm.memory import VMError
from tracesim.kernel_model.net import packets
from tracesim.kernel_model.net.tun import TunDevice, TunSkb, make_skb, run_steering
from tracesim.tools.rss import rss_software
from tracesim.tools.rss.rss_software import INDIRECTION_TABLE_SIZE, RssConfig

ROOT = Path(__file__).resolve().parents[2]  # the tree (or the installed tracesim package)
SOURCE = ROOT / "tools" / "examples" / "rss.bpf.c"
INCLUDE_DIRS = (ROOT / "kernel_model" / "include", ROOT / "filters" / "bpf" / "include")
PROGRAM_NAME = "tun_rss_steering_prog"
MAP_CONFIG = "tap_rss_map_configurations"
MAP_KEY = "tap_rss_map_toeplitz_key"
MAP_TABLE = "tap_rss_map_indirection_table"
__all__ = ["ENGINES", "EbpfRss", "RssLoadError", "build_object"]


class RssLoadError(Exception):
    """Why the eBPF path cannot be used (the loader then steers in software)."""


# ---------------------------------------------------------------- building the object

COMPILER_ORDER = {"auto": ("tracesim", "clang"), "tracesim": ("tracesim",), "clang": ("clang",)}
COMPILER_LABEL = {"tracesim": "tracesim cc", "clang": "clang"}


def build_object(compiler: str = "auto", source: Path = SOURCE) -> tuple[bytes, str]:
    """Compile the steering program; returns (ELF bytes, "tracesim cc" | "clang").
    ``compiler`` is "tracesim", "clang" or "auto" (the first of tracesim cc, clang that builds)."""
    errors = []
    for name in COMPILER_ORDER[compiler]:
        try:
            return (_build_tracesim(source) if name == "tracesim" else _build_clang(source)), \
                COMPILER_LABEL[name]
        except RssLoadError as err:
            errors.append(str(err))
    raise RssLoadError("; ".join(errors))


def _build_tracesim(source: Path) -> bytes:
    """What ``tracesim cc -O2`` produces (the compiler's Python entry point)."""
    try:
        from tracesim.filters.bpf.compiler.driver import compile_file
        from tracesim.filters.bpf.compiler.errors import CompileError
    except ImportError as err:
        raise RssLoadError(f"tracesim cc unavailable ({err})") from None
    try:
        return compile_file(source, INCLUDE_DIRS, opt_level=2).elf
    except CompileError as err:
        raise RssLoadError(f"tracesim cc failed: {str(err).splitlines()[0]}") from None


def _build_clang(source: Path) -> bytes:
    clang = shutil.which("clang")
    if clang is None:
        raise RssLoadError("clang not found (Debian package 'clang')")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rss.bpf.o"
        cmd = [clang, "-O2", "-g", "-target", "bpf", "-nostdinc", "-c", str(source), "-o", str(out)]
        for d in INCLUDE_DIRS:
            cmd[1:1] = ["-I", str(d)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RssLoadError(f"clang failed: {proc.stderr.strip()}")
        return out.read_bytes()


def _put(m: BpfMap, index: int, value: bytes) -> None:
    m.update(index.to_bytes(4, "little"), value)


# ---------------------------------------------------------------- the attached program

class SteeringProgram:
    """A loaded socket filter bound to an engine: what TUNSETSTEERINGEBPF attaches."""
    prog_type = "socket_filter"

    def __init__(self, runner, engine: str) -> None:
        self._runner, self.engine = runner, engine

    def run(self, ctx: bytearray, env: object) -> int:
        return self._runner(ctx, env=env)


# ---------------------------------------------------------------- the loader

# Known packets the loader steers once to check a freshly loaded program (published vectors,
# address-only and with ports, IPv4 and IPv6 with extension headers, tagged, and non-IP).
_SELF_TEST_FRAMES = [packets.flow_frame(f) for f in (
    packets.Flow("66.9.149.187", "161.142.100.80", "tcp", 2794, 1766),
    packets.Flow("199.92.111.2", "65.69.140.83", "icmp", 1, 2, vlans=(5, 6)),
    packets.Flow("3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", "udp", 2794, 1766,
                 ext=(packets.routing_type2("2001:db8::1"), packets.home_address_option("2001:db8::2"))),
    packets.Flow("3ffe:501:8::260:97ff:fe40:efab", "ff02::1", "tcp", 14230, 4739, vlans=(9,)),
)] + [packets.ethernet(packets.DEFAULT_DST_MAC, packets.DEFAULT_SRC_MAC, packets.ETH_P_ARP, bytes(28))]

class EbpfRss:
    """QEMU's EBPFRSSContext and its ebpf_rss_* functions, with the software fallback."""

    def __init__(self) -> None:
        self.init()

    def init(self) -> None:
        """ebpf_rss_init: nothing loaded; the software path steers."""
        self.program: SteeringProgram | None = None
        self.maps: dict[str, BpfMap] = {}
        self.engine = ""
        self.built_by = ""
        self.object = b""                   # the ELF object of the loaded program
        self.fallback_reason = "no program loaded"
        self.config: RssConfig | None = None
        self.table: list[int] = [0] * INDIRECTION_TABLE_SIZE
        self.packed_key: bytes | None = None
        self.tun: TunDevice | None = None
        self.queue_packets: list[int] = []

    def is_loaded(self) -> bool:
        return self.program is not None

    @property
    def active(self) -> str:
        return "ebpf" if self.program is not None else "software"

    def status_line(self) -> str:
        if self.program is not None:
            return f"rss: eBPF steering ({self.engine}, object built by {self.built_by})"
        return f"rss: software RSS (fallback: {self.fallback_reason})"

    def load(self, obj: bytes | str | Path | None = None, *, engine: str = "jit",
             compiler: str = "auto", verify: bool = True) -> bool:
        """ebpf_rss_load: build (when ``obj`` is None: tracesim cc's object, else clang's, with
        ``compiler="auto"``) or read the object, create its maps, verify the program, prepare it
        for ``engine`` and self-test it.  The first object that passes is used; when none does
        the software path stays active, ``fallback_reason`` says why, and False is returned."""
        self.unload()
        errors = []
        for built_by, get in self._candidates(obj, compiler):
            try:
                data = get()
                program = self._load_object(data, engine, verify)
                self._self_test(program)
            except (RssLoadError, elf.ElfLoadError, ValueError, OSError) as err:
                errors.append(f"{built_by}: {err}")
                self.maps = {}
                continue
            self.program, self.engine, self.built_by = program, program.engine, built_by
            self.object = data
            break
        if self.program is None:
            self.fallback_reason = "; ".join(errors)
            return False
        self._write_maps()
        if self.tun is not None:
            self.attach(self.tun)
        return True

    @staticmethod
    def _candidates(obj: bytes | str | Path | None, compiler: str) -> list:
        """(label, fetch bytes) for each object to try, in order."""
        if isinstance(obj, bytes):
            return [("caller", lambda: obj)]
        if obj is not None:
            return [(str(obj), lambda: Path(obj).read_bytes())]
        return [(COMPILER_LABEL[name], lambda name=name: build_object(name)[0])
                for name in COMPILER_ORDER[compiler]]

    def _load_object(self, data: bytes, engine: str, verify: bool) -> SteeringProgram:
        """Through the program loader: the object's maps, then (once they are the three this
        program needs) the socket filter verified and prepared for ``engine``."""
        try:
            obj = loader.open_object(data)
            spec = obj.program(PROGRAM_NAME)
            maps = loader.create_maps(obj.maps)
        except (loader.LoadError, elf.ElfLoadError) as err:
            raise RssLoadError(str(err)) from None
        self.maps = {m.name: m for m in maps}
        expected = {MAP_CONFIG: (10, 1), MAP_KEY: (40, 1), MAP_TABLE: (2, INDIRECTION_TABLE_SIZE)}
        for name, (vsize, entries) in expected.items():
            m = self.maps.get(name)
            if m is None or m.map_type != MAP_TYPE_ARRAY or (m.value_size, m.max_entries) != (vsize, entries):
                raise RssLoadError(f"object has no array map {name} of {entries} x {vsize} bytes")
        try:
            loaded = loader.load_object_program(obj, spec, maps=maps, engine=engine,
                                                verify=verify)
        except loader.LoadError as err:
            if err.stage == "verifier":
                raise RssLoadError(f"verifier rejected the program: {err.summary}") from None
            raise RssLoadError(str(err)) from None
        if loaded.prog_type != SteeringProgram.prog_type:   # TUNSETSTEERINGEBPF's own check
            raise RssLoadError(f"program {spec.name} in SEC(\"{spec.section}\") is a "
                               f"{loaded.prog_type} program, not a socket filter")
        return SteeringProgram(loaded.runner, loaded.engine or engine)   # what "auto" chose

    def _self_test(self, program: SteeringProgram) -> None:
        """Steer a few known packets with the program and with the software algorithm under a
        test configuration; any difference (or a fault) refuses the program — a miscompiled
        object then leaves RSS in software instead of misrouting or crashing.  The maps are
        zeroed afterwards; ``load`` writes the real configuration next."""
        config, table = RssConfig(default_queue=0x7FFF), [(i * 37 + 11) % 128 for i in range(128)]
        key = rss_software.pack_toeplitz_key(rss_software.STANDARD_KEY)
        _put(self.maps[MAP_CONFIG], 0, config.pack())
        _put(self.maps[MAP_KEY], 0, key)
        for i, q in enumerate(table):
            _put(self.maps[MAP_TABLE], i, q.to_bytes(2, "little"))
        try:
            for frame in _SELF_TEST_FRAMES:
                skb = make_skb(frame)
                want = rss_software.steer(skb.data, skb.network_header, config, table, key)
                got = run_steering(program, skb)
                if got != want & 0xFFFF:
                    raise RssLoadError(f"self-test failed: the program returned {got} where "
                                       f"the algorithm gives {want}")
        except VMError as err:
            raise RssLoadError(f"self-test failed: the program faulted ({err})") from None
        finally:
            for m in self.maps.values():
                m.values[:] = bytes(len(m.values))

    def set_all(self, config: RssConfig, indirection_table: list[int], toeplitz_key: bytes) -> bool:
        """ebpf_rss_set_all: store the configuration, the first ``indirections_len`` table
        entries (at most 128) and the key (converted as QEMU does).  False if len > 128."""
        if config.indirections_len > INDIRECTION_TABLE_SIZE:
            return False
        self.config = config
        for i in range(config.indirections_len):
            self.table[i] = indirection_table[i] & 0xFFFF
        self.packed_key = rss_software.pack_toeplitz_key(toeplitz_key)
        self._write_maps()
        return True

    def _write_maps(self) -> None:
        if not self.maps or self.config is None:
            return
        _put(self.maps[MAP_CONFIG], 0, self.config.pack())
        _put(self.maps[MAP_KEY], 0, self.packed_key)
        for i in range(self.config.indirections_len):
            _put(self.maps[MAP_TABLE], i, self.table[i].to_bytes(2, "little"))

    def unload(self) -> None:
        """ebpf_rss_unload: detach and drop the program and its maps (configuration is kept)."""
        if self.tun is not None and self.tun.steering_prog is self.program:
            self.tun.set_steering_ebpf(None)
        self.program, self.maps, self.engine = None, {}, ""
        self.fallback_reason = "no program loaded"

    # -- steering --------------------------------------------------------------------------------
    def attach(self, tun: TunDevice) -> None:
        """Attach to ``tun``: the program via TUNSETSTEERINGEBPF, or detach it for software RSS."""
        self.tun = tun
        self.queue_packets = [0] * tun.numqueues
        rc = tun.set_steering_ebpf(self.program)
        if rc:
            raise RssLoadError(f"TUNSETSTEERINGEBPF failed: {rc}")

    def steer(self, frame: bytes) -> int:
        """The u16 return value for ``frame`` (TUN delivers to it modulo its queue count):
        the program's on the eBPF path, the software algorithm's otherwise."""
        return self.steer_skb(make_skb(frame))

    def steer_skb(self, skb: TunSkb) -> int:
        """``steer`` for an skb already made (``tracesim.kernel_model.net.tun.make_skb``)."""
        if self.program is not None:
            return run_steering(self.program, skb)
        return rss_software.steer(skb.data, skb.network_header, self.config, self.table,
                                  self.packed_key) & 0xFFFF

    def deliver(self, frame: bytes) -> int:
        """Send ``frame`` through the attached TUN device and return the guest queue it reaches.
        eBPF path: the device's queue, chosen by the program.  Software path: the device picks
        its queue itself (automq) and the software result chooses the guest queue, as QEMU's
        in-process RSS does.  ``queue_packets`` counts guest queues on both paths."""
        if self.tun is None:
            raise RssLoadError("not attached to a TUN device")
        skb = self.tun.xmit(frame)
        queue = skb.queue_mapping if self.program is not None else self.steer(frame) % self.tun.numqueues
        self.queue_packets[queue] += 1
        return queue

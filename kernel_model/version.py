"""The modelled kernel's version strings: ``init/version.c``, ``init/version-timestamp.c`` and
``fs/proc/version.c``.

``linux_banner`` is the boot log's first line; ``linux_proc_banner`` is the format
``/proc/version`` is printed with (``%s version %s (BY@HOST) (COMPILER) %s``, filled with the
utsname's sysname, release and version). Both are data symbols of the kernel: kallsyms lists
them (type ``R``, .rodata) and their bytes are in the model's memory (``kallsyms.py``), so a
probe's ``@linux_proc_banner:string`` reads the format string as on a kernel.
"""
from __future__ import annotations

UTS_SYSNAME = "Linux"
UTS_RELEASE = "6.18.44-tracesim"            # 6.18.44, the reference kernel; built as the model
UTS_VERSION = "#1 SMP PREEMPT_DYNAMIC Fri Nov 28 12:00:00 UTC 2025"
LINUX_COMPILE_BY = "tracesim"
LINUX_COMPILE_HOST = "tracesim"
LINUX_COMPILER = "gcc (GCC) 14.2.0, GNU ld (GNU Binutils) 2.44"

LINUX_BANNER = (f"{UTS_SYSNAME} version {UTS_RELEASE} ({LINUX_COMPILE_BY}@{LINUX_COMPILE_HOST}) "
                f"({LINUX_COMPILER}) {UTS_VERSION}\n")
LINUX_PROC_BANNER = (f"%s version %s ({LINUX_COMPILE_BY}@{LINUX_COMPILE_HOST}) "
                     f"({LINUX_COMPILER}) %s\n")


def proc_version() -> str:
    """``/proc/version`` (version_proc_show: linux_proc_banner with the utsname's fields)."""
    return LINUX_PROC_BANNER % (UTS_SYSNAME, UTS_RELEASE, UTS_VERSION)

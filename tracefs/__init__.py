"""The tracefs pseudo-filesystem: an in-process node tree and a thin FUSE adapter.

In process::

    from tracesim.tracefs.system import System
    system = System.boot(cpus=2, seed=1, clock="virtual")     # kernel model + tree + BPF layer
    tree = system.tree
    tree.echo("/events/net/netif_receive_skb/enable", "1")   # echo 1 > ...   (append=True: >>)
    system.control(["send", "lo", "--len", "128"])            # what `tracesim ctl` runs
    print(tree.read_text("/trace"))                           # cat trace

The tree's file operations (``getattr``, ``readdir``, ``open`` -> handle with ``read``/``write``/
``flush``/``release``, ``mkdir``/``rmdir``) are what the FUSE adapter (``tracesim.tracefs.fuse_mount``)
calls one to one, so a mount and the in-process tree behave the same. Failures raise
``tracesim.tracefs.errors.FsError`` (an OSError carrying the kernel's errno).

Modules: ``nodes`` (directories/files, modes), ``handles`` (per-open state: seq files, lazy
``trace`` snapshots, blocking streams), ``blocking`` (EAGAIN/EINTR waits), ``tree`` (paths and
the shell-like helpers), ``root``/``instance``/``events``/``lists``/``streams`` (the Linux 6.18
files over ``kernel_model``), ``context`` (the kernel, its lock and the BPF loader seam),
``caller`` (the process behind a FUSE request), ``parse`` (kstrtoul), ``system`` (one running
simulation), ``fuse_mount`` (fusepy).
"""

#!/bin/sh
# Unpack the kernel's ftrace selftests (tools/testing/selftests/ftrace) from Debian's
# linux-source tarball, once, so the suite can run them against the mount. Only that folder is
# taken: the tarball is 150 MB and the tests need a few hundred KB. Without the package (not root,
# no apt) nothing happens and the selftest test skips, naming the package.
tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n 1)
[ -n "$tarball" ] || exit 0
top=$(basename "$tarball" .tar.xz)
[ -x "/usr/src/$top/tools/testing/selftests/ftrace/ftracetest" ] && exit 0
[ -w /usr/src ] || { echo "note: cannot unpack the ftrace selftests into /usr/src (not writable)"; exit 0; }
tar -xJf "$tarball" -C /usr/src "$top/tools/testing/selftests/ftrace" 2>/dev/null \
    || echo "warning: could not unpack the ftrace selftests from $tarball"
exit 0

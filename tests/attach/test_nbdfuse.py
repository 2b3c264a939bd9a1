#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""
A weft volume as a file through nbdfuse (libnbd-bin): nbdkit-weft-plugin.so
against a real cluster (scripts/cluster, three targets), nbdfuse mounting
the export as MOUNTDIR/nbd.

    test_nbdfuse.py CASE        (ctest runs one case per test)

CASE:
  unix        nbdkit on a unix socket (test_nbdkit.py's Nbdkit), nbdfuse
              --unix (multi-conn: several connections).  Versioned 4 KiB
              blocks over many extents and a 3 MiB span across extents are
              written through the file with O_DIRECT, more with plain
              writes and fsync, some overwritten; all read back byte for
              byte through the file (O_DIRECT, and buffered after a fresh
              open) and straight from the cluster through libweft (ctypes,
              a child process); a block written through libweft reads back
              through the file.  Then unmounted: nbdfuse ends (bounded),
              nbdkit stops cleanly.
  activation  nbdfuse MOUNTDIR [ nbdkit ... weft ... ]: nbdkit started by
              nbdfuse with socket activation; a write and a read back, the
              same data through libweft; unmounted, nbdfuse and its nbdkit
              end.

Env (ctest sets them): those of test_nbdkit.py, and WEFT_LIBWEFT (the
libweft.so of the build).  Exit 77: nbdfuse or /dev/fuse missing.  Every
wait is bounded; only processes this test started are stopped, by pid.
"""
import ctypes
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_nbdkit import (BS, EXT, PLUGIN, VOL_SIZE, Cluster, Nbdkit,  # noqa: E402
                         block, log, need)


def umount_cmd(mnt):
    # fusermount3 (Debian's fuse3) works for any user; root may umount.
    if shutil.which("fusermount3"):
        return ["fusermount3", "-u", mnt]
    return ["umount", mnt]


def wait_gone(pid, seconds):
    """True once process pid (not necessarily our child) has ended."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().split(") ")[1][0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


class Fuse:
    """nbdfuse -P PIDFILE TMP/mnt MODE...; the file is TMP/mnt/nbd."""

    def __init__(self, tmp, *mode, env=None):
        self.mnt = tmp + "/mnt"
        os.mkdir(self.mnt)
        self.file = self.mnt + "/nbd"
        pidfile = tmp + "/nbdfuse.pid"
        self.logpath = tmp + "/nbdfuse.log"
        self.log = open(self.logpath, "w+")
        self.kids = []                  # the nbdkit it started, if any
        self.p = subprocess.Popen(["nbdfuse", "-P", pidfile, self.mnt] +
                                  list(mode), stderr=self.log, env=env)
        end = time.monotonic() + 30
        while not (os.path.exists(pidfile) and os.path.ismount(self.mnt)):
            assert self.p.poll() is None, "nbdfuse exited: " + self.text()
            assert time.monotonic() < end, "nbdfuse not mounted in 30 s"
            time.sleep(0.02)

    def text(self):
        self.log.flush()
        with open(self.logpath) as f:
            return f.read()

    def unmount(self):
        """Unmount; nbdfuse must end by itself, with 0, in 30 s."""
        subprocess.run(umount_cmd(self.mnt), check=True, timeout=60)
        rc = self.p.wait(timeout=30)
        assert rc == 0, "nbdfuse exited with %d: %s" % (rc, self.text())
        assert not os.path.ismount(self.mnt)

    def abort(self):
        """After a failure: lazy unmount, then our nbdfuse killed."""
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], timeout=60)
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=30)
        for pid in self.kids:
            if not wait_gone(pid, 10):
                os.kill(pid, signal.SIGKILL)


def aligned(n):
    """A page-aligned buffer of n bytes (O_DIRECT)."""
    return mmap.mmap(-1, n)


def write_direct(path, off, data):
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        buf = aligned(len(data))
        buf[:] = data
        assert os.pwritev(fd, [buf], off) == len(data)
    finally:
        os.close(fd)


def read_direct(path, off, n):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = aligned(n)
        assert os.preadv(fd, [buf], off) == n
        return bytes(buf)
    finally:
        os.close(fd)


def read_plain(path, off, n):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, n, off)
    finally:
        os.close(fd)


def span(off, n, ver):
    return b"".join(block(o, ver) for o in range(off, off + n, BS))


# --- libweft through ctypes, in a child process --------------------------
# The child maps weft.h's options and synchronous calls; under ASan it runs
# with the sanitizer's runtime preloaded (the library is instrumented).

class Opts(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("map_path", ctypes.c_char_p),
                ("transport", ctypes.c_char_p), ("queue_depth", ctypes.c_uint),
                ("timeout_ms", ctypes.c_uint), ("flags", ctypes.c_uint),
                ("log", ctypes.c_void_p), ("log_arg", ctypes.c_void_p),
                ("log_level", ctypes.c_int), ("run_dir", ctypes.c_char_p),
                ("host", ctypes.c_char_p), ("spin_us", ctypes.c_uint),
                ("buf_arena", ctypes.c_size_t), ("key_name", ctypes.c_char_p),
                ("key", ctypes.c_void_p), ("keyring", ctypes.c_char_p)]


WEFT_F_NO_SHORT_CIRCUIT = 1


def libweft_child(argv):
    """libweft MAP RUN_DIR KEYRING VOL read|write OFF FILE: read len(FILE)
    bytes at OFF and compare with FILE, or write FILE at OFF; exit 0 when
    done and equal."""
    mp, run, keyring, vol, op, off, path = argv
    lib = ctypes.CDLL(os.environ["WEFT_LIBWEFT"])
    lib.weft_pread.restype = lib.weft_pwrite.restype = ctypes.c_ssize_t
    lib.weft_pread.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_size_t, ctypes.c_uint64]
    lib.weft_pwrite.argtypes = lib.weft_pread.argtypes + [ctypes.c_uint]
    lib.weft_cluster_close.argtypes = [ctypes.c_void_p]
    lib.weft_volume_open.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                     ctypes.POINTER(ctypes.c_void_p)]
    with open(path, "rb") as f:
        want = f.read()
    o = Opts(size=ctypes.sizeof(Opts), map_path=mp.encode(),
             run_dir=run.encode(), key_name=b"client", keyring=keyring.encode(),
             flags=WEFT_F_NO_SHORT_CIRCUIT)  # through the targets
    cl, v = ctypes.c_void_p(), ctypes.c_void_p()
    rc = lib.weft_cluster_open(ctypes.byref(o), ctypes.byref(cl))
    assert rc == 0, "weft_cluster_open: %d" % rc
    try:
        rc = lib.weft_volume_open(cl, vol.encode(), ctypes.byref(v))
        assert rc == 0, "weft_volume_open: %d" % rc
        buf = ctypes.create_string_buffer(len(want))
        if op == "write":
            ctypes.memmove(buf, want, len(want))
            n = lib.weft_pwrite(v, buf, len(want), int(off), 0)
            assert n == len(want), "weft_pwrite: %d" % n
            return
        n = lib.weft_pread(v, buf, len(want), int(off))
        assert n == len(want), "weft_pread: %d" % n
        got = buf.raw
        if got != want:
            bad = next(i for i in range(len(want)) if got[i] != want[i])
            raise AssertionError("libweft read at %d differs from byte %d on"
                                 % (int(off), bad))
    finally:
        lib.weft_cluster_close(cl)


def libweft(c, tmp, vol, op, off, data):
    path = tmp + "/libweft.dat"
    with open(path, "wb") as f:
        f.write(data)
    env = dict(os.environ)
    if os.environ.get("WEFT_NBD_PRELOAD"):
        env["LD_PRELOAD"] = os.environ["WEFT_NBD_PRELOAD"]
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    subprocess.run([sys.executable, os.path.abspath(__file__), "libweft",
                    c.map, c.run, c.keyring, vol, op, str(off), path],
                   env=env, check=True, timeout=120)


# --- cases ----------------------------------------------------------------

def case_unix(c, tmp):
    k = Nbdkit(c, tmp, "volume=vol3")
    f = None
    try:
        f = Fuse(tmp, "--unix", k.sock)
        assert os.stat(f.file).st_size == VOL_SIZE, os.stat(f.file)
        want = {}                       # offset -> bytes expected there
        # O_DIRECT: one block in each of 24 extents, at varying places.
        for i in range(24):
            off = i * EXT + (i * 37 % (EXT // BS)) * BS
            want[off] = block(off, 1)
            write_direct(f.file, off, want[off])
        # One 3 MiB write across extent boundaries.
        big = 40 * EXT + EXT // 2
        want[big] = span(big, 3 * EXT, 2)
        write_direct(f.file, big, want[big])
        # Plain writes, then fsync (a flush through the export).
        fd = os.open(f.file, os.O_WRONLY)
        try:
            for i in range(16):
                off = 50 * EXT + i * 3 * BS
                want[off] = block(off, 3)
                assert os.pwrite(fd, want[off], off) == BS
            os.fsync(fd)
        finally:
            os.close(fd)
        # Overwrites: the last version reads back.
        for i in range(0, 24, 3):
            off = i * EXT + (i * 37 % (EXT // BS)) * BS
            want[off] = block(off, 4)
            write_direct(f.file, off, want[off])
        log("wrote %d ranges, %d KiB, through %s" %
            (len(want), sum(map(len, want.values())) // 1024, f.file))
        for off, data in want.items():
            assert read_direct(f.file, off, len(data)) == data, \
                "O_DIRECT read at %d differs" % off
            assert read_plain(f.file, off, len(data)) == data, \
                "buffered read at %d differs" % off
        # Unwritten blocks read as zeros.
        assert read_direct(f.file, 60 * EXT, 2 * BS) == bytes(2 * BS)
        # Straight from the cluster: what the file wrote is on the targets.
        for off, data in want.items():
            libweft(c, tmp, "vol3", "read", off, data)
        log("every range read back through the file and through libweft")
        # And a write through libweft reads back through the file (no
        # cache in nbdfuse or the plugin hides it).
        off = 5 * EXT + 7 * BS
        read_direct(f.file, off, BS)
        libweft(c, tmp, "vol3", "write", off, block(off, 9))
        assert read_direct(f.file, off, BS) == block(off, 9)
        f.unmount()
        f = None
        log("unmounted; nbdfuse ended with 0")
    finally:
        if f:
            f.abort()
        k.stop()


def case_activation(c, tmp):
    env = dict(os.environ)
    if os.environ.get("WEFT_NBD_PRELOAD"):
        env["LD_PRELOAD"] = os.environ["WEFT_NBD_PRELOAD"]
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    f = Fuse(tmp, "[", "nbdkit", "-t", "32", PLUGIN, "map=" + c.map,
             "run_dir=" + c.run, "key=client", "keyring=" + c.keyring,
             "volume=vol1", "]", env=env)
    try:
        kids = open("/proc/%d/task/%d/children" % (f.p.pid, f.p.pid)).read().split()
        assert len(kids) == 1, "nbdfuse's children: %s" % kids
        kpid = int(kids[0])
        f.kids.append(kpid)
        assert "nbdkit" in open("/proc/%d/cmdline" % kpid).read()
        assert os.stat(f.file).st_size == VOL_SIZE
        off = 3 * EXT - BS              # the last block of one extent and
        data = span(off, 2 * BS, 5)     # the first of the next
        write_direct(f.file, off, data)
        assert read_direct(f.file, off, len(data)) == data
        libweft(c, tmp, "vol1", "read", off, data)
        f.unmount()
        f = None
        assert wait_gone(kpid, 30), "nbdkit %d still running after unmount" % kpid
        log("socket activation: nbdkit %d ended with nbdfuse" % kpid)
    finally:
        if f:
            f.abort()


CASES = {"unix": case_unix, "activation": case_activation}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "libweft":
        libweft_child(sys.argv[2:])
        return
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        sys.exit("usage: test_nbdfuse.py " + "|".join(CASES))
    need("nbdkit", "nbdfuse")
    if not os.path.exists("/dev/fuse"):
        print("skip: no /dev/fuse")
        sys.exit(77)
    c = Cluster()
    try:
        with tempfile.TemporaryDirectory(prefix="weft-fuse.", dir="/var/tmp") as tmp:
            CASES[sys.argv[1]](c, tmp)
    finally:
        c.stop()
    print("ok: " + sys.argv[1])


if __name__ == "__main__":
    main()

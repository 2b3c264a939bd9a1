#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""
nbdkit-weft-plugin.so against a real cluster: three weft-target daemons
started by scripts/cluster on conf/local.conf (free ports), nbdkit serving
a volume on a unix socket, and libnbd (the Python module behind nbdsh),
nbdcopy, nbdinfo and qemu-img/qemu-io as the clients.

    test_nbdkit.py CASE        (ctest runs one case per test)

CASE: io, refuse, stress, kill3, kill1, enospc, flushall.  Env (ctest sets
them): WEFT_SRC, WEFT_BIN, WEFT_NBD_PLUGIN; WEFT_NBD_PRELOAD (ASan builds:
the runtime nbdkit must load first).  Exit 77: a tool is missing (skipped).  Every
wait is bounded; only processes this test started are stopped, by pid.
"""
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

try:
    import nbd
except ImportError:
    print("skip: no python3-libnbd (scripts/deps)")
    sys.exit(77)

SRC = os.environ["WEFT_SRC"]
BIN = os.environ["WEFT_BIN"]
PLUGIN = os.environ["WEFT_NBD_PLUGIN"]
BS = 4096
EXT = 1 << 20                    # conf/local.conf's extent size
VOL_SIZE = 1 << 30               # vol1, vol3 in conf/local.conf
WATCHDOG_S = int(os.environ.get("WEFT_NBD_WATCHDOG_S", 200))  # < ctest's 300 s


def log(msg):
    print("  " + msg, file=sys.stderr, flush=True)


def need(*tools):
    for t in tools:
        if subprocess.run(["sh", "-c", "command -v " + t],
                          stdout=subprocess.DEVNULL).returncode:
            print("skip: %s not installed (scripts/deps)" % t)
            sys.exit(77)


class Cluster:
    """scripts/cluster start/stop: three targets on loopback."""

    def __init__(self, size="512M"):
        env = dict(os.environ, WEFT_BIN=BIN)
        out = subprocess.run(
            [SRC + "/scripts/cluster", "start", "-c", SRC + "/conf/local.conf",
             "--size", size, "--port-base", "auto"],
            env=env, stdout=subprocess.PIPE, check=True, timeout=120,
            text=True).stdout
        kv = dict(w.split("=", 1) for w in out.split())
        self.dir = kv["WEFT_CLUSTER_DIR"]
        self.map = kv["WEFT_MAP"]
        self.run = kv["WEFT_RUN_DIR"]
        self.keyring = kv["WEFT_KEYRING"]
        # weftctl (and anything else started here) use the client key.
        os.environ["WEFT_KEYRING"] = self.keyring
        os.environ["WEFT_KEY"] = kv["WEFT_KEY"]

    def stop(self):
        subprocess.run([SRC + "/scripts/cluster", "stop", self.dir], timeout=60)

    def pid(self, tid):
        with open("%s/target-%d.pid" % (self.dir, tid)) as f:
            return int(f.read())

    def kill9(self, tid):
        """SIGKILL target tid, wait (bounded) until it is gone."""
        pid = self.pid(tid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().split(") ")[1][0] == "Z":
                        break
            except FileNotFoundError:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("target %d (pid %d) did not die" % (tid, pid))
        os.unlink("%s/target-%d.pid" % (self.dir, tid))

    def restart(self, tid):
        subprocess.run([BIN + "/weft-target", "-c", self.map, "--id", str(tid),
                        "--run-dir", self.run, "--pid-file",
                        "%s/target-%d.pid" % (self.dir, tid),
                        "--keyring", self.keyring, "--key", "target-%d" % tid],
                       check=True, timeout=60)

    def weftctl(self, *args):
        subprocess.run([BIN + "/weftctl"] + list(args) +
                       ["-c", self.map, "--run-dir", self.run], check=True,
                       stdout=subprocess.DEVNULL, timeout=60)

    def flushes(self):
        """FLUSH requests each target served since it started."""
        out = subprocess.run([BIN + "/weftctl", "status", "--json", "-c",
                              self.map, "--run-dir", self.run],
                             stdout=subprocess.PIPE, text=True, check=True,
                             timeout=60).stdout
        return {t["id"]: t["flushes"] for t in json.loads(out)["targets"]}

    def primary(self, vol, off):
        out = subprocess.run([BIN + "/weftctl", "locate", "-c", self.map, vol,
                              str(off)], stdout=subprocess.PIPE, text=True,
                             check=True, timeout=30).stdout
        for line in out.splitlines():
            w = line.split()
            if w[:2] == ["primary", "target"]:
                return int(w[2])
        raise AssertionError("weftctl locate: no primary in\n" + out)


class Nbdkit:
    """nbdkit -f on a unix socket in tmp; its stderr goes to a log file."""

    def __init__(self, cluster, tmp, *params, expect_fail=False):
        self.sock = tmp + "/nbd.sock"
        self.logpath = tmp + "/nbdkit.log"
        pidfile = tmp + "/nbdkit.pid"
        env = dict(os.environ)
        if os.environ.get("WEFT_NBD_PRELOAD"):
            env["LD_PRELOAD"] = os.environ["WEFT_NBD_PRELOAD"]
            env["ASAN_OPTIONS"] = "detect_leaks=0"
        args = ["nbdkit", "-f", "-U", self.sock, "-P", pidfile, "-t", "32",
                "--exit-with-parent", PLUGIN]
        if cluster:
            args += ["map=" + cluster.map, "run_dir=" + cluster.run,
                     "key=client", "keyring=" + cluster.keyring]
        args += list(params)
        self.handles = []
        self.log = open(self.logpath, "w+")
        self.p = subprocess.Popen(args, stderr=self.log, env=env)
        if expect_fail:
            self.rc = self.p.wait(timeout=60)
            return
        deadline = time.monotonic() + 30
        while not os.path.exists(pidfile):
            assert self.p.poll() is None, "nbdkit exited: " + self.text()
            assert time.monotonic() < deadline, "nbdkit not ready in 30 s"
            time.sleep(0.02)
        self.uri = "nbd+unix:///?socket=" + self.sock
        # A request that never ends would block libnbd's synchronous calls
        # (which keep Python's lock: no thread of ours would run).  A
        # separate process watches: past WATCHDOG_S it shows where
        # nbdkit's threads are and kills it (our child), so the test fails
        # and still stops the cluster.
        self.dog = subprocess.Popen(
            ["sh", "-c", 'sleep %d; echo "watchdog: nbdkit still busy after '
             '%d s; its threads:" >&2; timeout 60 gdb -q -batch -p %d -ex "thread apply '
             'all bt 10" >&2 2>/dev/null; kill -9 %d' %
             (WATCHDOG_S, WATCHDOG_S, self.p.pid, self.p.pid)],
            start_new_session=True)     # its group: sh and its sleep

    def text(self):
        self.log.flush()
        with open(self.logpath) as f:
            return f.read()

    def connect(self):
        h = nbd.NBD()
        h.connect_unix(self.sock)
        self.handles.append(h)
        return h

    def stop(self):
        # nbdkit waits for its clients on SIGTERM: hang up first (under
        # the watchdog still: a hung request blocks a shutdown too).
        for h in self.handles:
            try:
                h.shutdown()
            except nbd.Error:
                pass
        self.handles = []
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        if hasattr(self, "dog") and self.dog.poll() is None:
            os.killpg(self.dog.pid, signal.SIGKILL)
            self.dog.wait()
        assert self.p.returncode == 0, \
            "nbdkit exited with %s:\n%s" % (self.p.returncode, self.text())


# A block that says which write it came from: (offset, version) repeated.
# Version 0 is a block never written (zeros).
def block(off, ver):
    if not ver:
        return bytes(BS)
    return struct.pack("<QQ", off, ver) * (BS // 16)


def version_of(buf, off):
    if buf == bytes(BS):
        return 0
    o, v = struct.unpack_from("<QQ", buf)
    assert o == off and buf == block(off, v), \
        "block at %d holds data of another block or a torn write" % off
    return v


def rand_bytes(n, seed):
    import random
    return random.Random(seed).randbytes(n)


# ---- cases -------------------------------------------------------------------

def case_io(c, tmp):
    """Write/read/verify, flush, FUA, trim, zero, size, multi-conn, block
    size, an unaligned request refused with its message, nbdcopy and qemu."""
    need("nbdcopy", "nbdinfo")
    k = Nbdkit(c, tmp, "volume=vol3")
    try:
        h = k.connect()
        assert h.get_size() == VOL_SIZE
        assert h.get_block_size(nbd.SIZE_MINIMUM) == BS
        assert h.can_multi_conn() and h.can_flush() and h.can_fua()
        assert h.can_trim() and h.can_zero() and not h.is_read_only()

        # Across extents and PGs: 3 MiB from 1 MiB - 8 KiB.
        data = rand_bytes(3 << 20, 1)
        off = EXT - 2 * BS
        h.pwrite(data, off)
        assert h.pread(len(data), off) == data, "read back differs"
        h.flush()
        fua = rand_bytes(BS, 2)
        h.pwrite(fua, 7 * EXT + BS, nbd.CMD_FLAG_FUA)
        assert h.pread(BS, 7 * EXT + BS) == fua

        # Trim: whole blocks read as zeros (a whole extent and parts).
        h.trim(EXT + 2 * BS, off)
        assert h.pread(EXT + 2 * BS, off) == bytes(EXT + 2 * BS)
        assert h.pread(len(data) - EXT - 2 * BS, off + EXT + 2 * BS) == \
            data[EXT + 2 * BS:], "trim touched blocks outside its range"
        # An unaligned trim discards the whole blocks inside it only.
        h.set_strict_mode(0)
        h.trim(2 * BS, off + EXT + 2 * BS + 100)
        got = h.pread(3 * BS, off + EXT + 2 * BS)
        assert got[:BS] == data[EXT + 2 * BS:EXT + 3 * BS]
        assert got[BS:2 * BS] == bytes(BS)
        assert got[2 * BS:] == data[EXT + 4 * BS:EXT + 5 * BS]
        # Zero with holes allowed (a discard) and without (nbdkit writes
        # zeros), with FUA.
        h.zero(BS, 7 * EXT + BS, nbd.CMD_FLAG_FUA)
        assert h.pread(BS, 7 * EXT + BS) == bytes(BS)
        h.pwrite(fua, 7 * EXT + BS)
        h.zero(BS, 7 * EXT + BS, nbd.CMD_FLAG_NO_HOLE)
        assert h.pread(BS, 7 * EXT + BS) == bytes(BS)

        # Unaligned reads reach the plugin (strict mode off): EINVAL and
        # a message that says why.
        try:
            h.pread(512, 100)
            raise AssertionError("unaligned read succeeded")
        except nbd.Error as e:
            assert e.errnum == 22, e
        assert "not a multiple of the volume's 4096-byte block" in k.text()

        # Multi-conn: a write on one connection, a flush on another, a
        # read on a third sees it.
        h2, h3 = k.connect(), k.connect()
        h.pwrite(fua, 9 * EXT)
        h2.flush()
        assert h3.pread(BS, 9 * EXT) == fua

        # Many short connections: each asks the size (answered by the
        # reactor at once, not by libweft) and reads a block.
        for i in range(64):
            x = k.connect()
            assert x.get_size() == VOL_SIZE
            assert x.pread(BS, 9 * EXT) == fua
            x.shutdown()
        k.handles = k.handles[:3]

        # nbdcopy in (four connections: the export allows multi-conn), read
        # back byte for byte on one.
        src = tmp + "/src.img"
        img = rand_bytes(32 << 20, 3)
        with open(src, "wb") as f:
            f.write(img)
        subprocess.run(["nbdcopy", src, k.uri], check=True, timeout=120)
        h = k.connect()
        for o in range(0, len(img), 4 << 20):
            assert h.pread(4 << 20, o) == img[o:o + (4 << 20)], \
                "nbdcopy's data differs at %d" % o
        info = subprocess.run(["nbdinfo", "--size", k.uri], check=True,
                              stdout=subprocess.PIPE, text=True, timeout=30)
        assert int(info.stdout) == VOL_SIZE

        # qemu: it reads the block size, so a 512-byte write becomes a
        # read-modify-write of one 4 KiB block on its side.
        if subprocess.run(["sh", "-c", "command -v qemu-io"],
                          stdout=subprocess.DEVNULL).returncode == 0:
            q = subprocess.run(
                ["qemu-io", "--image-opts",
                 "driver=nbd,server.type=unix,server.path=" + k.sock,
                 "-c", "write -P 0xab 0 1M", "-c", "write -P 0xcd 4608 512",
                 "-c", "read -P 0xab 0 4608", "-c", "read -P 0xcd 4608 512",
                 "-c", "read -P 0xab 5120 1043456", "-c", "flush"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                timeout=120)
            assert q.returncode == 0 and "Pattern verification failed" \
                not in q.stdout, q.stdout
            img = subprocess.run(["qemu-img", "info", "--output=json",
                                  "--image-opts",
                                  "driver=nbd,server.type=unix,server.path=" +
                                  k.sock], stdout=subprocess.PIPE, text=True,
                                 check=True, timeout=60).stdout
            assert '"virtual-size": %d' % VOL_SIZE in img, img
        else:
            log("qemu-io not installed: the qemu checks are skipped")
    finally:
        k.stop()


def case_refuse(c, tmp):
    """nbdkit refuses to start, with a message that names the cause."""
    k = Nbdkit(c, tmp, "volume=nope", expect_fail=True)
    assert k.rc != 0
    assert "volume 'nope' does not exist in map " + c.map in k.text(), k.text()
    k = Nbdkit(None, tmp, "map=" + tmp + "/none.conf", "volume=vol1",
               expect_fail=True)
    assert k.rc != 0
    assert "map %s/none.conf: no such file" % tmp in k.text(), k.text()
    k = Nbdkit(None, tmp, "volume=vol1", expect_fail=True)
    assert k.rc != 0 and "map=MAP and volume=NAME are required" in k.text()
    k = Nbdkit(c, tmp, "volume=vol1", "log_level=loud", expect_fail=True)
    assert k.rc != 0 and "log_level=loud" in k.text()


class Stream:
    """Versioned single-block writes at a queue depth through libnbd's
    asynchronous calls: per block the last acknowledged version, and the
    version of a failed write (it may have landed)."""

    def __init__(self, h, blocks, qd):
        self.h, self.blocks, self.qd = h, blocks, qd
        self.acked = {b: 0 for b in blocks}
        self.maybe = {}
        self.busy = {}           # cookie -> (block, version, buffer)
        self.ver = 0
        self.acks = self.fails = self.flushes = 0
        self.errnos = set()
        self.slowest = 0.0
        self.rng = __import__("random").Random(os.getpid())

    def fill(self):
        idle = [b for b in self.blocks
                if b not in self.maybe and
                all(b != x[0] for x in self.busy.values())]
        while len(self.busy) < self.qd and idle:
            b = idle.pop(self.rng.randrange(len(idle)))
            self.ver += 1
            buf = nbd.Buffer.from_bytearray(bytearray(block(b, self.ver)))
            c = self.h.aio_pwrite(buf, b)
            self.busy[c] = (b, self.ver, buf, time.monotonic())

    def flush(self):
        self.busy[self.h.aio_flush()] = (None, 0, None, time.monotonic())
        self.flushes += 1

    def reap(self, timeout_ms=100):
        self.h.poll(timeout_ms)
        for c in list(self.busy):
            b, v, _, t0 = self.busy[c]
            try:
                if not self.h.aio_command_completed(c):
                    continue
                if b is None:
                    del self.busy[c]            # a flush
                    continue
                self.acked[b] = v
                self.acks += 1
            except nbd.Error as e:
                self.maybe[b] = v
                self.fails += 1
                self.errnos.add(e.errnum)
            self.slowest = max(self.slowest, time.monotonic() - t0)
            del self.busy[c]

    def run(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.fill()
            self.reap()

    def drain(self, bound):
        end = time.monotonic() + bound
        while self.busy:
            assert time.monotonic() < end, \
                "%d writes still in flight after %d s" % (len(self.busy), bound)
            self.reap()

    def verify(self, h):
        for b in self.blocks:
            v = version_of(h.pread(BS, b), b)
            assert v == self.acked[b] or v == self.maybe.get(b, -1), \
                "block at %d holds version %d, acknowledged %d" % \
                (b, v, self.acked[b])


def blocks_over(extents):
    # Eight blocks in each of the first `extents` extents (all PGs' kinds).
    return [e * EXT + i * (EXT // 8) for e in range(extents) for i in range(8)]


def case_stress(c, tmp):
    """Three connections, 16 writes in flight on each, flushes among them,
    short connections opening meanwhile, through a plugin whose libweft
    queue holds 4 requests (most wait for room): every write acknowledged
    reads back; then requests larger than the queue's pieces."""
    k = Nbdkit(c, tmp, "volume=vol1", "queue_depth=4")
    try:
        blocks = blocks_over(24)
        streams = [Stream(k.connect(), blocks[i::3], 16) for i in range(3)]
        end = time.monotonic() + 3
        conns = 0
        while time.monotonic() < end:
            for s in streams:
                s.fill()
                if s.acks // 50 > s.flushes:
                    s.flush()
                s.reap(0)
            # New connections meanwhile: each asks the size under the
            # plugin's lock while requests are being pushed.
            x = nbd.NBD()
            x.connect_unix(k.sock)
            assert x.get_size() == VOL_SIZE
            x.shutdown()
            conns += 1
        for s in streams:
            s.drain(30)
            assert s.fails == 0, "writes failed: %s\n%s" % (s.errnos, k.text())
        log("%d writes acknowledged on 3 connections, %d flushes, %d other "
            "connections" % (sum(s.acks for s in streams),
                             sum(s.flushes for s in streams), conns))
        h = k.connect()
        for s in streams:
            s.verify(h)

        # One request at a time on an otherwise idle export (no leader
        # between them) while another thread keeps connecting (the size,
        # under the plugin's lock): no request may be left behind by a
        # lock holder that leaves (each read is given 10 s).
        stop = threading.Event()

        def connector():
            while not stop.is_set():
                x = nbd.NBD()
                x.connect_unix(k.sock)
                x.get_size()
                x.shutdown()
        t = threading.Thread(target=connector)
        t.start()
        try:
            n, end = 0, time.monotonic() + 3
            while time.monotonic() < end:
                buf = nbd.Buffer(BS)
                ck = h.aio_pread(buf, blocks[n % len(blocks)])
                limit = time.monotonic() + 10
                while not h.aio_command_completed(ck):
                    assert time.monotonic() < limit, \
                        "a read did not complete in 10 s (read %d)" % n
                    h.poll(100)
                n += 1
        finally:
            stop.set()
            t.join(30)
        log("%d single reads beside connections opening" % n)
        big = rand_bytes(6 << 20, 4)
        h.pwrite(big, 30 * EXT - 3 * BS, nbd.CMD_FLAG_FUA)
        assert h.pread(len(big), 30 * EXT - 3 * BS) == big
    finally:
        k.stop()


def case_kill3(c, tmp):
    """3 replicas: a target SIGKILLed in the middle of a write stream and
    marked down; I/O goes on, every write completes and reads back."""
    victim = os.getpid() % 3
    k = Nbdkit(c, tmp, "volume=vol3", "timeout_ms=20000")
    try:
        h = k.connect()
        s = Stream(h, blocks_over(48), 16)
        s.run(1.0)
        before = s.acks
        c.kill9(victim)
        c.weftctl("target", "down", str(victim))
        s.run(2.0)
        s.drain(60)
        log("target %d killed: %d writes acknowledged (%d after the kill), "
            "%d failed, slowest %.2f s" % (victim, s.acks, s.acks - before,
                                          s.fails, s.slowest))
        assert s.fails == 0, "writes failed: errnos %s\n%s" % (s.errnos,
                                                               k.text())
        assert s.acks > before, "no write completed after the kill"
        s.verify(h)
        # A new connection (a new client) reads the same.
        h2 = k.connect()
        s.verify(h2)
        h2.flush()
    finally:
        k.stop()


def case_kill1(c, tmp):
    """1 replica: a target SIGKILLed during a write stream; writes to its
    extents fail with EIO after the plugin's timeout_ms (no hang), the
    others go on; restarted, it holds every acknowledged write."""
    victim = os.getpid() % 3
    timeout_ms = 2000
    k = Nbdkit(c, tmp, "volume=vol1", "timeout_ms=%d" % timeout_ms)
    try:
        blocks = blocks_over(24)
        on_victim = {b for b in blocks if c.primary("vol1", b) == victim}
        assert on_victim and len(on_victim) < len(blocks)
        h = k.connect()
        s = Stream(h, blocks, 16)
        s.run(1.0)
        c.kill9(victim)
        t0 = time.monotonic()
        s.run(1.5)
        # Bounded: every request ends about timeout_ms after it was queued.
        s.drain(30)
        log("target %d killed: %d writes acknowledged, %d failed (errnos %s), "
            "slowest %.2f s (timeout_ms %d)" % (victim, s.acks, s.fails,
                                                sorted(s.errnos), s.slowest,
                                                timeout_ms))
        assert s.fails > 0 and s.errnos == {5}, "expected EIO: %s" % s.errnos
        assert set(s.maybe) <= on_victim, "a write to a live target failed"
        assert "on volume vol1: no acting replica answered in time" in \
            k.text(), k.text()[-2000:]
        # Reads, all in flight at once: the dead target's blocks fail with
        # EIO, the others read back their acknowledged version.
        reads = {}
        for b in blocks:
            buf = nbd.Buffer(BS)
            reads[h.aio_pread(buf, b)] = (b, buf)
        end = time.monotonic() + 60
        while reads:
            assert time.monotonic() < end, "reads still in flight after 60 s"
            h.poll(100)
            for ck in list(reads):
                b, buf = reads[ck]
                try:
                    if not h.aio_command_completed(ck):
                        continue
                    assert b not in on_victim, "read of a dead target's block"
                    v = version_of(bytes(buf.to_bytearray()), b)
                    assert v == s.acked[b] or v == s.maybe.get(b, -1)
                except nbd.Error as e:
                    assert b in on_victim and e.errnum == 5, e
                del reads[ck]
        log("reads settled %.1f s after the kill" % (time.monotonic() - t0))
        # Back: it holds every acknowledged write.
        c.restart(victim)
        s.verify(h)
    finally:
        k.stop()


def case_enospc(c, tmp):
    """Devices of 64 MiB under vol1 (1 GiB, one replica): a write to a new
    extent once its target has none free fails with ENOSPC and says so;
    what was written before reads back, and so do overwrites in place."""
    k = Nbdkit(c, tmp, "volume=vol1")
    try:
        h = k.connect()
        acked, fails = [], []
        for e in range(VOL_SIZE // EXT):
            off = e * EXT
            try:
                h.pwrite(block(off, 1), off)
                acked.append(off)
            except nbd.Error as err:
                fails.append((off, err.errnum))
            if len(fails) >= 8:
                break
        log("%d extents written, then %s" % (len(acked), fails[:3]))
        assert acked and fails, "the devices never filled"
        assert {e for _, e in fails} == {28}, "expected ENOSPC: %s" % fails
        assert "on volume vol1: no space left on the target" in k.text(), \
            k.text()[-2000:]
        for off in acked:
            assert h.pread(BS, off) == block(off, 1), "extent at %d" % off
            h.pwrite(block(off, 2), off)        # allocated: still writable
            assert h.pread(BS, off) == block(off, 2)
    finally:
        k.stop()


def case_flushall(c, tmp):
    """A flush covers the writes completed before it on every connection
    (what can_multi_conn promises): writes on one connection (each to a
    block whose only replica is on target T), a flush on another; T must
    have served a flush since.  weft_flush covers its own handle's writes
    only: a plugin whose connections or threads had handles of their own
    would fail here unless its flush went through all of them."""
    k = Nbdkit(c, tmp, "volume=vol1")
    try:
        a, b = k.connect(), k.connect()
        for t in range(3):
            blocks = [off for off in blocks_over(24)
                      if c.primary("vol1", off) == t][:4]
            assert blocks, "no block of vol1 on target %d" % t
            # Settle first: no flush of an earlier step may still count.
            b.flush()
            before = c.flushes()
            # Several writes in flight: they spread over several of the
            # connection's worker threads.
            bufs = [nbd.Buffer.from_bytearray(bytearray(block(off, t + 1)))
                    for off in blocks]
            busy = {a.aio_pwrite(buf, off) for buf, off in zip(bufs, blocks)}
            end = time.monotonic() + 30
            while busy:
                assert time.monotonic() < end, "writes not done in 30 s"
                a.poll(100)
                busy = {ck for ck in busy if not a.aio_command_completed(ck)}
            assert c.flushes() == before, "a flush before the flush: %s" % before
            b.flush()
            after = c.flushes()
            log("writes on target %d, flush on another connection: "
                "flushes %s -> %s" % (t, before, after))
            assert after[t] > before[t], \
                "the flush on connection b did not reach target %d, which " \
                "holds connection a's writes (%s -> %s)" % (t, before, after)
            for off in blocks:
                assert b.pread(BS, off) == block(off, t + 1)
    finally:
        k.stop()


CASES = {"io": case_io, "refuse": case_refuse, "stress": case_stress,
         "kill3": case_kill3, "kill1": case_kill1, "enospc": case_enospc,
         "flushall": case_flushall}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        sys.exit("usage: test_nbdkit.py " + "|".join(CASES))
    need("nbdkit")
    c = Cluster("64M" if sys.argv[1] == "enospc" else "512M")
    try:
        with tempfile.TemporaryDirectory(prefix="weft-nbd.", dir="/var/tmp") as tmp:
            CASES[sys.argv[1]](c, tmp)
    finally:
        c.stop()
    print("ok: " + sys.argv[1])


if __name__ == "__main__":
    main()

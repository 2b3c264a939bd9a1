# SPDX-License-Identifier: Apache-2.0
"""weft-target as the installed systemd unit runs it: the ExecStart line of
weft-target@.service (from `cmake --install`) started by hand, logging to
syslog (a socket of this test at /dev/log, in a mount namespace of its
own), answering weftctl, draining and exiting 0 on SIGTERM, its pid file
removed; and --log-level dropping lines below the level."""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from weft_tools import BIN, BUILD, SRC, run


def wait_gone(pid, seconds=20):
    for _ in range(int(seconds * 20)):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


class TargetService(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="weft-svc-", dir="/var/tmp")
        self.d = os.path.join(self.tmp, "cluster")
        # A formatted one-target cluster, its target stopped again: the
        # unit's command line starts it.
        p = run([os.path.join(SRC, "scripts", "cluster"), "start", "-c",
                 os.path.join(SRC, "conf", "single.conf"), "--dir", self.d,
                 "--size", "256M", "--port-base", "auto"], env={"WEFT_BIN": BIN},
                timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        run([os.path.join(SRC, "scripts", "cluster"), "stop", self.d], check=0)
        # The cluster requires keys: the targets started here take the
        # keyring (and their key) from the environment, as weft-target
        # does by default; weftctl proves the same key.
        kv = dict(w.split("=", 1) for w in p.stdout.split())
        os.environ["WEFT_KEYRING"] = kv["WEFT_KEYRING"]
        os.environ["WEFT_KEY"] = "target-0"     # the key of target 0
        self.map = os.path.join(self.d, "cluster.conf")
        self.run_dir = os.path.join(self.d, "run")
        self.pids = []

    def tearDown(self):
        os.environ.pop("WEFT_KEYRING", None)
        os.environ.pop("WEFT_KEY", None)
        for pid in self.pids:       # only what this test started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def pid(self):
        with open(os.path.join(self.run_dir, "target-0.pid")) as f:
            return int(f.read())

    def exec_start(self, pfx):
        with open(os.path.join(pfx, "lib", "systemd", "system",
                               "weft-target@.service")) as f:
            unit = f.read()
        line = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
        line = (line.replace("${WEFT_MAP}", self.map).replace("%i", "0")
                .replace("/run/weft", self.run_dir).replace("$WEFT_TARGET_ARGS", ""))
        args = shlex.split(line)
        self.assertEqual(args[0], os.path.join(pfx, "bin", "weft-target"))
        return args

    def test_unit_command_line_logs_to_syslog_and_drains(self):
        if os.geteuid() != 0 or not shutil.which("unshare"):
            self.skipTest("needs root and unshare for a private /dev/log")
        pfx = os.path.join(self.tmp, "pfx")
        run(["cmake", "--install", BUILD, "--prefix", pfx], check=0, timeout=120)
        args = self.exec_start(pfx)
        self.assertIn("--syslog", args)
        dev = os.path.join(self.tmp, "dev")
        os.mkdir(dev)
        open(os.path.join(dev, "null"), "w").close()
        log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        log.bind(os.path.join(dev, "log"))
        log.settimeout(10)
        try:
            script = ("mount --bind /dev/null %s/null && mount --bind %s /dev && "
                      "exec %s" % (shlex.quote(dev), shlex.quote(dev),
                                   " ".join(shlex.quote(a) for a in args)))
            p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh",
                                "-c", script], capture_output=True, text=True,
                               timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            pid = self.pid()
            self.pids.append(pid)
            lines = []
            while not any("serving" in l for l in lines):
                lines.append(log.recv(4096).decode())
            # daemon.info, the program, its pid, the target id.
            self.assertRegex(lines[-1], r"^<30>.*weft-target\[%d\]: target 0: "
                             r"target 0 serving" % pid)
            st = run(["weftctl", "status", "-c", self.map, "--run-dir", self.run_dir,
                      "--json"], check=0)
            self.assertIn('"state": "up"', st.stdout)
            os.kill(pid, signal.SIGTERM)
            self.assertTrue(wait_gone(pid), "no exit after SIGTERM")
            while not any(l.endswith("target 0: exit") for l in lines):
                lines.append(log.recv(4096).decode())
            self.assertFalse(os.path.exists(os.path.join(self.run_dir, "target-0.pid")))
        finally:
            log.close()

    def start(self, *extra):
        p = run(["weft-target", "-c", self.map, "--id", "0", "--run-dir", self.run_dir,
                 "--pid-file", os.path.join(self.run_dir, "target-0.pid")] + list(extra),
                timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        pid = self.pid()
        self.pids.append(pid)
        return pid

    def stop(self, pid):
        os.kill(pid, signal.SIGTERM)
        self.assertTrue(wait_gone(pid))
        with open(os.path.join(self.run_dir, "target-0.log")) as f:
            text = f.read()
        os.unlink(os.path.join(self.run_dir, "target-0.log"))
        return text

    def test_log_level(self):
        text = self.stop(self.start())
        self.assertRegex(text, r"weft-target\[\d+\]: target 0: target 0 serving")
        self.assertRegex(text, r"target 0: exit\n")
        text = self.stop(self.start("--log-level", "warning"))
        self.assertNotIn("serving", text)
        self.assertNotIn("exit", text)
        p = run(["weft-target", "-c", self.map, "--id", "0", "--log-level", "loud"],
                check=2)
        self.assertIn("not err, warning, info or debug", p.stderr)


if __name__ == "__main__":
    unittest.main()

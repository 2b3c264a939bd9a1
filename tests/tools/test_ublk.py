# SPDX-License-Identifier: Apache-2.0
"""weft-ublk where the host kernel has no ublk driver: what it can check
without one.  Its command line (usage errors exit 2 with the reason), a
map or volume that does not exist refused with a clear message, and a
missing driver (no /dev/ublk-control) reported at once, never a hang.  The
block device itself is tested in the rig's guest on a kernel with ublk_drv
(tests/rig/guest-ublk.sh: steps ublk-fs-tcp, ublk-fs-verbs, ublk-enospc-tcp)."""
import os
import unittest

from weft_tools import BIN, SRC, run

UBLK = os.path.join(BIN, "weft-ublk")
MAP = os.path.join(SRC, "conf", "local.conf")
NO_DRIVER = not os.path.exists("/dev/ublk-control")


@unittest.skipUnless(os.path.exists(UBLK), "weft-ublk not built (no <linux/ublk_cmd.h>)")
class UblkCommandLine(unittest.TestCase):
    def usage_error(self, args, words):
        p = run(["weft-ublk"] + args, timeout=30, check=2)
        for w in words:
            self.assertIn(w, p.stderr)
        return p

    def test_help_names_the_commands(self):
        p = run(["weft-ublk", "--help"], timeout=30, check=0)
        for w in ("add -c MAP --volume NAME", "--queues", "--depth", "del", "list",
                  "--key", "--keyring"):
            self.assertIn(w, p.stdout)
        p = run(["weft-ublk", "--version"], timeout=30, check=0)
        self.assertTrue(p.stdout.startswith("weft-ublk "))

    def test_usage_errors(self):
        self.usage_error([], ["a command is required"])
        self.usage_error(["frob"], ["unknown command 'frob'"])
        self.usage_error(["add"], ["-c MAP and --volume NAME are required"])
        self.usage_error(["add", "-c", MAP], ["--volume NAME"])
        self.usage_error(["add", "-c", MAP, "--volume", "vol3", "--queues", "0"],
                         ["--queues 0", "1 to 16"])
        self.usage_error(["add", "-c", MAP, "--volume", "vol3", "--queues", "17"],
                         ["--queues 17"])
        self.usage_error(["add", "-c", MAP, "--volume", "vol3", "--depth", "5000"],
                         ["--depth 5000", "1 to 1024"])
        self.usage_error(["add", "-c", MAP, "--volume", "vol3", "--depth", "-1"],
                         ["--depth -1"])
        self.usage_error(["add", "-c", MAP, "--volume", "vol3", "extra"],
                         ["unexpected argument 'extra'"])
        self.usage_error(["del"], ["one device is required"])
        self.usage_error(["del", "/dev/sda"], ["one device is required"])
        self.usage_error(["del", "1", "2"], ["one device is required"])
        self.usage_error(["list", "x"], ["unexpected argument 'x'"])
        run(["weft-ublk", "add", "--bogus"], timeout=30, check=2)

    def test_missing_volume_refused(self):
        p = run(["weft-ublk", "add", "-c", MAP, "--volume", "nosuch"], timeout=30, check=1)
        self.assertIn("volume 'nosuch' does not exist in map", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_missing_map_refused(self):
        p = run(["weft-ublk", "add", "-c", "/nonexistent/map.conf", "--volume", "vol3"],
                timeout=30, check=1)
        self.assertIn("map /nonexistent/map.conf: no such file", p.stderr)

    @unittest.skipUnless(NO_DRIVER, "this kernel has the ublk driver")
    def test_missing_driver_said_at_once(self):
        # An existing volume gets as far as the driver; bounded by the
        # timeout (a hang fails the test).
        for args in (["add", "-c", MAP, "--volume", "vol3"],
                     ["add", "-c", MAP, "--volume", "vol3", "--foreground"],
                     ["list"], ["del", "0"]):
            p = run(["weft-ublk"] + args, timeout=30, check=1)
            self.assertIn("ublk driver is not loaded", p.stderr, args)
            self.assertIn("modprobe ublk_drv", p.stderr, args)


if __name__ == "__main__":
    unittest.main()

# SPDX-License-Identifier: Apache-2.0
"""weft-bench io as a new user meets it: it says it writes the working
set, refuses a volume holding data it did not write (its mark is missing)
unless --overwrite, shows the progress of prefill, floor layout and
verify, and says up front and at the end where the time goes."""
import os
import re
import unittest

from weft_tools import FIO_ENGINE, Cluster, run


class BenchIo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    def create(self, name, size="64M"):
        self.c.ctl("volume", "create", "-c", self.c.map, name, "--size", size,
                   "--pool", "rep1", check=0)

    def bench(self, *args, check=None, env=None):
        e = dict(self.c.env)
        e.update(env or {})
        return run(["weft-bench", "io", "-c", self.c.map] + list(args), env=e,
                   check=check, timeout=240)

    def test_says_it_writes_and_marks_the_volume(self):
        self.create("fresh")
        p = self.bench("--volume", "fresh", "--size", "8M", "--verify-only", check=0)
        self.assertIn("writes the working set: bytes 0 .. 8388608 of volume fresh",
                      p.stderr)
        # Its own mark: a second run goes on without --overwrite.
        self.bench("--volume", "fresh", "--size", "16M", "--verify-only", check=0)

    def test_refuses_data_it_did_not_write(self):
        if not FIO_ENGINE:
            self.skipTest("libweft_fio.so was not built: nothing else writes a "
                          "volume here")
        self.create("userdata")
        env = dict(self.c.env)
        if os.environ.get("WEFT_SANITIZE"):
            asan = run(["cc", "-print-file-name=libasan.so"]).stdout.strip()
            env.update(LD_PRELOAD=asan, ASAN_OPTIONS="detect_leaks=0")
        # Someone's data, in the middle of the volume only.
        run(["fio", "--ioengine=external:" + FIO_ENGINE, "--weft_map=" + self.c.map,
             "--weft_volume=userdata", "--name=w", "--rw=write", "--bs=64k",
             "--offset=20m", "--size=1m"], env=env, check=0, timeout=120)
        p = self.bench("--volume", "userdata", "--size", "32M", "--verify-only",
                       check=1)
        self.assertIn("holds data weft-bench did not write", p.stderr)
        self.assertIn("--overwrite", p.stderr)
        self.assertNotIn("prefill", p.stderr + p.stdout)       # nothing written
        p = self.bench("--volume", "userdata", "--size", "32M", "--verify-only",
                       "--overwrite", check=0)
        self.assertIn("writing over it", p.stderr)
        # From now on it is marked: no --overwrite needed.
        self.bench("--volume", "userdata", "--size", "32M", "--verify-only", check=0)

    def test_progress_plan_and_time(self):
        self.create("timed", "96M")
        floor = os.path.join(self.c.dir, "floor.dat")
        p = self.bench("--volume", "timed", "--size", "32M", "--runtime", "0.3",
                       "--qd", "2", "--floor-file", floor, check=0,
                       env={"WEFT_BENCH_PROGRESS_MS": "0"})
        err = p.stderr
        self.assertRegex(err, r"prefill: \d+ of 32 MiB")
        self.assertRegex(err, r"floor layout: \d+ of 32 MiB")
        self.assertRegex(err, r"verify: \d+ of 32 MiB")
        self.assertRegex(err, r"plan: prefill 32 MiB, 1 job\(s\) of 0\.3 s each "
                              r"between two device-floor runs")
        m = re.search(r"time: prefill [\d.]+ s, jobs [\d.]+ s, device floors [\d.]+ s "
                      r"\(with the layout\), round trip [\d.]+ s, verify [\d.]+ s; "
                      r"[\d.]+ s in all", p.stdout)
        self.assertIsNotNone(m, p.stdout)


if __name__ == "__main__":
    unittest.main()

# SPDX-License-Identifier: Apache-2.0
"""Rough edges a new user hit, on a real cluster: errors that say which
thing is wrong, fio jobs refused at setup rather than at the first I/O,
and `weftctl locate` asking the targets whether the replicas answer."""
import os
import re
import unittest

from weft_tools import FIO_ENGINE, SRC, Cluster, run

LOCAL = os.path.join(SRC, "conf", "local.conf")


class Errors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    def test_check_without_c_says_so(self):
        p = run(["weftctl", "check", LOCAL], check=2)
        self.assertIn("the map goes after -c: weftctl check -c " + LOCAL, p.stderr)
        p = run(["weftctl", "status"], check=2)
        self.assertIn("-c MAP is required", p.stderr)

    def test_bench_io_names_what_is_missing(self):
        p = run(["weft-bench", "io", "-c", self.c.map, "--volume", "nosuch",
                 "--no-floor", "--runtime", "0.1"], env=self.c.env, check=1)
        self.assertIn("no volume 'nosuch' in the map " + self.c.map, p.stderr)
        p = run(["weft-bench", "io", "-c", "/nonexistent.conf", "--volume", "vol1",
                 "--no-floor", "--runtime", "0.1"], env=self.c.env, check=1)
        self.assertIn("no map file /nonexistent.conf", p.stderr)
        p = run(["weft-bench", "io", "-c", self.c.map, "--volume", "vol1",
                 "--transport", "pigeon"], env=self.c.env, check=2)
        self.assertIn("not tcp, unix or verbs", p.stderr)

    def fio(self, *args):
        if not FIO_ENGINE:
            self.skipTest("libweft_fio.so was not built (no fio source)")
        env = dict(self.c.env)
        if os.environ.get("WEFT_SANITIZE"):
            asan = run(["cc", "-print-file-name=libasan.so"]).stdout.strip()
            env.update(LD_PRELOAD=asan, ASAN_OPTIONS="detect_leaks=0")
        return run(["fio", "--ioengine=external:" + FIO_ENGINE,
                    "--weft_map=" + self.c.map, "--name=j", "--iodepth=4"] +
                   list(args), env=env, timeout=120)

    def test_fio_refuses_at_setup(self):
        p = self.fio("--weft_volume=vol1", "--rw=randwrite", "--bs=512", "--size=1m")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("not a multiple of the volume's block size 4096", p.stderr)
        self.assertNotIn("weft queue", p.stdout + p.stderr)     # no I/O was tried
        p = self.fio("--weft_volume=vol1", "--rw=read", "--bs=4k", "--size=2g")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("past the end of the volume (1073741824 bytes)", p.stderr)
        p = self.fio("--weft_volume=vol1", "--rw=read", "--bs=4k", "--size=8m",
                     "--offset=1020m")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("past the end", p.stderr)
        p = self.fio("--weft_volume=vol1", "--rw=read", "--bs=4k", "--size=4m")
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_fio_names_what_is_missing(self):
        p = self.fio("--weft_volume=nosuch", "--rw=read", "--bs=4k", "--size=1m")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("cannot open volume nosuch: the map has no volume of that name",
                      p.stderr)
        p = self.fio("--weft_volume=vol1", "--weft_transport=pigeon", "--rw=read",
                     "--bs=4k", "--size=1m")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("tcp, unix or verbs", p.stderr)


class Locate(unittest.TestCase):
    def setUp(self):
        self.c = Cluster()

    def tearDown(self):
        self.c.stop()

    def test_locate_says_which_replicas_answer(self):
        p = self.c.ctl("locate", "-c", self.c.map, "vol3", "0", check=0)
        members = re.findall(r"^\s+(primary|replica)\s+target (\d+)\s.*\s(answers|DOWN)",
                             p.stdout, re.M)
        self.assertEqual(len(members), 3, p.stdout)
        self.assertTrue(all(m[2] == "answers" for m in members), p.stdout)
        # A replica dies; the map still says up, the targets say otherwise.
        victim = int(members[1][1])
        self.c.kill9(victim)
        p = self.c.ctl("locate", "-c", self.c.map, "vol3", "0", "--timeout", "1000",
                       check=0)
        line = [l for l in p.stdout.splitlines() if "target %d " % victim in l]
        self.assertEqual(len(line), 1, p.stdout)
        self.assertIn("DOWN", line[0])
        self.assertEqual(p.stdout.count("answers"), 2, p.stdout)
        # The map alone asks nobody.
        p = self.c.ctl("locate", "-c", self.c.map, "vol3", "0", "--map-only", check=0)
        self.assertNotIn("DOWN", p.stdout)
        self.assertNotIn("answers", p.stdout)


if __name__ == "__main__":
    unittest.main()

# SPDX-License-Identifier: Apache-2.0
"""weft-bench fabric and placement --json: one strict JSON document each
(closed objects, null for a figure that cannot be computed, never NaN),
matching docs/schemas/bench-*.json."""
import os
import unittest

from weft_tools import SRC, run, strict_json, validate


class BenchJson(unittest.TestCase):
    def fabric(self, transport, *extra):
        p = run(["weft-bench", "fabric", "--transport", transport, "--size", "4096",
                 "--iters", "300", "--json"] + list(extra), timeout=60, check=0)
        d = strict_json(p.stdout)
        validate(d, "bench-fabric")
        self.assertEqual(d["transport"], transport)
        return d

    def test_fabric_tcp(self):
        d = self.fabric("tcp")
        self.assertEqual(d["floor"], "socket-ping-pong")
        # Both waiting policies, each with its own floor of the same policy.
        self.assertEqual(d["policy"], "busy-poll")
        for k in ("floor_p50_us", "sleep_p50_us", "sleep_floor_p50_us",
                  "sleep_read_p50_us", "sleep_read_floor_p50_us"):
            self.assertGreater(d[k], 0, k)

    def test_fabric_one_policy(self):
        d = self.fabric("tcp", "--spin-us", "0")
        self.assertEqual(d["policy"], "sleep")
        self.assertEqual(d["spin_us"], 0)
        self.assertNotIn("sleep_p50_us", d)
        self.assertGreater(d["floor_p50_us"], 0)

    def test_fabric_unix_no_floor(self):
        d = self.fabric("unix", "--no-floor")
        self.assertEqual(d["floor"], "none")
        self.assertIsNone(d["floor_p50_us"])      # not measured: null

    def test_placement_movement_it_cannot_compute_is_null(self):
        # Three targets on one host: no host to add or take out.
        p = run(["weft-bench", "placement", "-c",
                 os.path.join(SRC, "conf", "local.conf"), "--json"],
                timeout=120, check=0)
        d = strict_json(p.stdout)
        validate(d, "bench-placement")
        self.assertIsNone(d["movement"]["host_out"])
        self.assertIsNone(d["unbalanced"]["movement"]["host_out"])
        self.assertEqual(d["targets"], 3)

    def test_placement_synth(self):
        p = run(["weft-bench", "placement", "--synth", "2x2x2", "--json"],
                timeout=120, check=0)
        d = strict_json(p.stdout)
        validate(d, "bench-placement")
        self.assertIsInstance(d["movement"]["host_out"], (int, float))

    def test_placement_pg_num_and_no_balance(self):
        # --synth scales pg_num to about 100 replicas a device (32 devices,
        # 3 replicas: 1024); --pg-num overrides it; --no-balance leaves
        # the balanced figures null and still derives epochs.
        p = run(["weft-bench", "placement", "--synth", "2x4x4", "--no-balance",
                 "--json"], timeout=120, check=0)
        d = strict_json(p.stdout)
        validate(d, "bench-placement")
        self.assertEqual(d["pg_num"], 1024)
        self.assertIsNone(d["max_over_mean"])
        self.assertIsNone(d["movement"]["add_host"])
        self.assertIsInstance(d["unbalanced"]["movement"]["add_host"], (int, float))
        for c in ("device_out", "device_in", "weight_up", "device_down"):
            inc = d["incremental"][c]
            self.assertGreater(inc["recomputed"], 0, c)
            self.assertLess(inc["recomputed"], d["pg_num"], c)
        p = run(["weft-bench", "placement", "--synth", "2x4x4", "--pg-num", "256",
                 "--no-balance", "--json"], timeout=120, check=0)
        self.assertEqual(strict_json(p.stdout)["pg_num"], 256)
        p = run(["weft-bench", "placement", "--synth", "2x4x4", "--pg-num", "100"],
                timeout=60, check=2)


if __name__ == "__main__":
    unittest.main()


class ChainFloor(unittest.TestCase):
    """weft-bench chain: the replicated write's message topology with no
    device and no weft code (docs/performance.md, "The floor of a
    replicated write"): runs, answers checked, sane strict JSON."""

    def chain(self, *extra):
        p = run(["weft-bench", "chain", "--iters", "300", "--warmup", "50",
                 "--rounds", "2", "--json"] + list(extra), timeout=120, check=0)
        d = strict_json(p.stdout)
        validate(d, "bench-chain")
        return d

    def test_both_topologies_sleeping(self):
        d = self.chain()
        self.assertEqual(d["wait"], "sleep")
        for t, procs in (("pair", 2), ("chain", 4)):
            r = d[t]
            self.assertEqual(r["processes"], procs)
            self.assertEqual(len(r["per_round"]), 2)
            for x in r["per_round"]:
                self.assertEqual(x["round_trips"], 300)
            self.assertLessEqual(r["p50_us"], r["p99_us"])
            self.assertEqual(r["all_rounds"]["count"], 600)
            # Sleeping processes sleep: at least the client's one wait per
            # round trip (no timing threshold, a count).
            self.assertGreaterEqual(r["voluntary_switches_per_rt"], 0.5, t)
            self.assertGreater(r["cpu_us_per_rt"], 0)

    def test_one_topology_spinning(self):
        d = self.chain("--topology", "chain", "--wait", "spin", "--rounds", "1")
        self.assertEqual(d["wait"], "spin")
        self.assertNotIn("pair", d)
        self.assertEqual(d["chain"]["all_rounds"]["count"], 300)

    def test_bad_arguments(self):
        for bad in (["--topology", "ring"], ["--wait", "maybe"], ["--rounds", "0"],
                    ["--iters", "x"], ["extra"]):
            run(["weft-bench", "chain"] + bad, timeout=30, check=2)

    def test_floor_dsync(self):
        # The device floor with every write RWF_DSYNC (--cache auto's
        # writes): said in the JSON, data still verified.
        path = "/var/tmp/weft-test-floor-dsync-%d" % os.getpid()
        try:
            p = run(["weft-bench", "floor", "--file", path, "--rw", "randwrite",
                     "--size", "4M", "--qd", "4", "--runtime", "0.2", "--dsync",
                     "--quiet", "--json"], timeout=60, check=0)
            d = strict_json(p.stdout)
            self.assertTrue(d["dsync"])
            self.assertTrue(d["verify"]["ok"])
            self.assertGreater(d["writes"], 0)
        finally:
            if os.path.exists(path):
                os.unlink(path)

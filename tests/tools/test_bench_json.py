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

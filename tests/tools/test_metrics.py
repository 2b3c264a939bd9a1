# SPDX-License-Identifier: Apache-2.0
"""weft-target --metrics on a real cluster: the endpoint answers with a
real HTTP client (urllib and curl), its text parses with Prometheus's own
parser (python3-prometheus-client), and the figures follow the I/O
weft-bench does: requests, bytes, the latency histogram (cumulative
buckets, +Inf equal to the count), the map epoch; other paths and methods
are refused; without --metrics there is no endpoint."""
import os
import subprocess
import unittest
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from weft_tools import FIO_ENGINE, Cluster, run


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return ctype, fams


def value(fams, name, **labels):
    """The sample of family name (or a histogram part) with these labels."""
    for f in fams.values():
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise KeyError("%s %s" % (name, labels))


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(extra=["--metrics", "127.0.0.1:0"])
        cls.urls = []
        for t in range(3):
            with open(os.path.join(cls.c.run_dir, "target-%d.metrics" % t)) as f:
                cls.urls.append(f.read().strip())

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    def total(self, name, **labels):
        return sum(value(scrape(u)[1], name, **labels) for u in self.urls)

    def test_the_text_parses_and_follows_the_io(self):
        ctype, fams = scrape(self.urls[0])
        self.assertIn("text/plain", ctype)
        self.assertIn("version=0.0.4", ctype)
        for name in ("weft_requests", "weft_bytes", "weft_request_latency_seconds",
                     "weft_map_epoch", "weft_connections", "weft_store_extents",
                     "weft_answers", "weft_fabric_operations", "weft_etcd_state",
                     "weft_inflight_requests", "weft_pgs", "weft_recovered_pgs",
                     "weft_recovered_bytes", "weft_recovery_bytes_left"):
            self.assertIn(name, fams, name)
        self.assertEqual(fams["weft_recovery_bytes_left"].type, "gauge")
        self.assertEqual(value(fams, "weft_recovery_bytes_left"), 0)
        for how in ("log", "whole"):
            self.assertEqual(value(fams, "weft_recovered_pgs_total", how=how), 0)
        self.assertEqual(fams["weft_request_latency_seconds"].type, "histogram")
        self.assertEqual(value(fams, "weft_target_info", target="0"), 1)
        w0 = self.total("weft_requests_total", op="write")
        h0 = self.total("weft_request_latency_seconds_count", op="write")
        # vol1: one replica, so every write a target serves is a client's.
        run(["weft-bench", "io", "-c", self.c.map, "--volume", "vol1", "--rw",
             "randwrite", "--qd", "4", "--runtime", "1", "--size", "16M",
             "--no-floor", "--overwrite"], env=self.c.env, check=0, timeout=120)
        w1 = self.total("weft_requests_total", op="write")
        h1 = self.total("weft_request_latency_seconds_count", op="write")
        self.assertGreater(w1 - w0, 1000)
        self.assertEqual(h1 - h0, w1 - w0, "the histogram misses writes")
        self.assertGreater(self.total("weft_bytes_total", op="write"), 16 << 20)
        # Cumulative buckets, +Inf equal to the count, a positive sum.
        for u in self.urls:
            _, f = scrape(u)
            for op in ("read", "write"):
                b = [s for s in f["weft_request_latency_seconds"].samples
                     if s.name.endswith("_bucket") and s.labels["op"] == op]
                self.assertEqual(b[-1].labels["le"], "+Inf")
                self.assertEqual([s.value for s in b], sorted(s.value for s in b))
                self.assertEqual(b[-1].value,
                                 value(f, "weft_request_latency_seconds_count", op=op))
            self.assertGreater(value(f, "weft_request_latency_seconds_sum", op="write"), 0)
            self.assertEqual(value(f, "weft_map_epoch"), 1)
            used = value(f, "weft_store_extents", state="used")
            self.assertGreater(used, 0)

    def test_curl_and_other_paths(self):
        p = subprocess.run(["curl", "-sf", self.urls[1]], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        list(text_string_to_metric_families(p.stdout))
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(self.urls[1].replace("/metrics", "/other"), timeout=10)
        self.assertEqual(e.exception.code, 404)
        req = urllib.request.Request(self.urls[1], data=b"x", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(e.exception.code, 405)


    def test_fio_prints_libwefts_counters(self):
        if not FIO_ENGINE:
            self.skipTest("libweft_fio.so was not built")
        env = dict(self.c.env)
        if os.environ.get("WEFT_SANITIZE"):
            asan = run(["cc", "-print-file-name=libasan.so"]).stdout.strip()
            env.update(LD_PRELOAD=asan, ASAN_OPTIONS="detect_leaks=0")
        p = run(["fio", "--ioengine=external:" + FIO_ENGINE, "--weft_map=" + self.c.map,
                 "--weft_volume=vol1", "--weft_short_circuit=0", "--weft_stats=1",
                 "--name=w", "--rw=write", "--bs=4k", "--size=16m", "--iodepth=8"],
                env=env, check=0, timeout=120)
        line = [l for l in p.stdout.splitlines() if l.startswith("weft: ")]
        self.assertEqual(len(line), 1, p.stdout)
        # 4096 writes of 4 KiB, each one send and one one-sided write (a
        # connection's setup, three sends with the key exchange, is lost
        # in the rounding).
        self.assertIn("4096 writes (16777216 bytes)", line[0])
        self.assertIn("0 errors", line[0])
        self.assertIn("per I/O: 1.00 sends, 1.00 one-sided writes", line[0])


class Off(unittest.TestCase):
    def test_no_endpoint_without_the_option(self):
        c = Cluster()
        try:
            self.assertFalse(os.path.exists(os.path.join(c.run_dir, "target-0.metrics")))
        finally:
            c.stop()


if __name__ == "__main__":
    unittest.main()

# SPDX-License-Identifier: Apache-2.0
"""weftctl on a real cluster: every command's --json parsed with Python's
json module and checked against docs/schemas/weftctl-*.json; the volume
commands (list, info with what the targets hold, --yes, thin provisioning
warnings, MAP.bak); status sizes with units; exit codes 0/1/2."""
import json
import os
import re
import shutil
import socket
import struct
import tempfile
import threading
import unittest

from weft_tools import SRC, Cluster, run, strict_json, validate


class Weftctl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster()

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    def j(self, *args, check=0, schema=None):
        """weftctl ARGS -c MAP --json: the parsed, schema-checked document."""
        p = self.c.ctl(*(list(args) + ["-c", self.c.map, "--json"]), check=check)
        d = strict_json(p.stdout)
        validate(d, schema or "weftctl-" + args[0])
        self.assertEqual(d["ok"], check == 0, p.stdout)
        return d

    def epoch(self):
        return self.j("check")["epoch"]

    def test_check_map_status_locate_json(self):
        d = self.j("check")
        self.assertTrue(d["valid"])
        self.assertEqual(d["targets"], 3)
        d = self.j("map", "show")
        self.assertEqual(sorted(v["name"] for v in d["volumes"])[:2], ["vol1", "vol3"])
        self.assertEqual(sum(1 for n in d["nodes"] if n["type"] == "device"), 3)
        d = self.j("status")
        self.assertEqual([t["state"] for t in d["targets"]], ["up"] * 3)
        for t in d["targets"]:
            self.assertEqual(t["used_bytes"], t["used_extents"] * t["extent_size"])
            self.assertEqual(t["via"], "control socket")
            # Status version 7: bytes left to copy (none: nothing
            # recovers); version 6's early-release counters.
            self.assertEqual(t["recovery_bytes_left"], 0)
            for k in ("releases_sent", "releases_received", "holds_released",
                      "writes_released"):
                self.assertGreaterEqual(t[k], 0, k)
        for k in ("recovery_bytes_left", "releases_sent", "releases_received",
                  "holds_released", "writes_released"):
            self.assertEqual(d["summary"][k], sum(t[k] for t in d["targets"]), k)
        self.assertEqual(d["summary"]["recovery_bytes_left_unknown"], 0)
        d = self.j("locate", "vol3", "5M")
        self.assertEqual(d["extent"], 5)
        self.assertEqual(len(d["acting"]), 3)
        self.assertTrue(all(m["answers"] is True for m in d["acting"]))
        d = self.j("locate", "vol3", "5M", "--map-only")
        self.assertTrue(all(m["answers"] is None for m in d["acting"]))
        d = self.j("balance")
        self.assertEqual(len(d["pools"]), 2)
        d = self.j("recover")
        self.assertTrue(d["done"])

    def test_failures_are_documents_and_bad_arguments_are_not(self):
        d = self.j("locate", "nosuch", "0", check=1)
        self.assertIn("no volume 'nosuch'", d["error"])
        d = self.j("volume", "info", "nosuch", check=1)
        self.assertIn("no volume 'nosuch'", d["error"])
        # Exit 2: nothing on stdout, the usage on stderr.
        for args in (["status", "--bogus"], ["volume", "frobnicate", "x"],
                     ["locate", "vol1"], ["target", "down", "x"]):
            p = self.c.ctl(*(args + ["-c", self.c.map, "--json"]), check=2)
            self.assertEqual(p.stdout, "", args)
            self.assertNotEqual(p.stderr, "", args)
        p = run(["weftctl", "check", "-c", "/nonexistent.conf", "--json"], check=1)
        d = strict_json(p.stdout)
        validate(d, "weftctl-check")
        self.assertFalse(d["valid"])

    def test_status_text_has_units(self):
        p = self.c.ctl("status", "-c", self.c.map, check=0)
        rows = [l for l in p.stdout.splitlines() if re.match(r"^\d+\s", l)]
        self.assertEqual(len(rows), 3, p.stdout)
        for r in rows:
            # USED and FREE: a number and a unit each.
            self.assertRegex(r, r"\sup\s+\d+\s+[\d.]+ (B|KiB|MiB|GiB)\s+[\d.]+ (B|KiB|MiB|GiB|TiB)\s")
        self.assertIn("space:", p.stdout)
        self.assertRegex(p.stdout, r"copied to new members this epoch, 0\.0 MiB "
                         r"left to copy")
        self.assertRegex(p.stdout, r"read leases released early: \d+ sent, \d+ "
                         r"received; \d+ holds ended, \d+ held writes started")

    def test_status_reads_a_target_of_version_6(self):
        """A target of status version 6 drops a request of version 7 (the
        socket closes): weftctl asks again in 6, shows it up, and its bytes
        left as not known.  Target 0's control socket here is a stand-in
        that answers as such a target; weftctl runs without a key (the
        real targets, reached over the network, refuse it)."""
        cid = self.j("status", "--run-dir", self.c.run_dir)["cluster_id"]
        epoch = self.epoch()
        d = tempfile.mkdtemp(prefix="weftctl-v6-")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        srv.bind(os.path.join(d, "target-0.ctl"))
        srv.listen(4)
        asked = []

        def serve():
            for _ in range(2):
                c, _ = srv.accept()
                q = c.recv(64)
                magic, ver, op = struct.unpack_from("<IHH", q)
                asked.append(ver)
                if ver == 6 and op == 1:
                    st = bytearray(368)
                    struct.pack_into("<IHHiIQQ", st, 0, magic, 6, 1, 0, 0, cid,
                                     epoch)
                    struct.pack_into("<I", st, 56, 1 << 20)      # extent_size
                    struct.pack_into("<II", st, 120, 5, 0)       # 5 recovering
                    struct.pack_into("<QQ", st, 128, 1 << 20, 100)
                    struct.pack_into("<Q", st, 336, 7)           # releases_sent
                    c.send(bytes(st))
                c.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            p = run(["weftctl", "status", "-c", self.c.map, "--run-dir", d,
                     "--json", "--timeout", "1000"],
                    env=dict(self.c.env, WEFT_KEY=""), check=1)
            t.join(10)
        finally:
            srv.close()
            shutil.rmtree(d)
        self.assertEqual(asked, [7, 6])
        doc = strict_json(p.stdout)
        validate(doc, "weftctl-status")
        t0 = doc["targets"][0]
        self.assertEqual(t0["state"], "up", t0)
        self.assertNotIn("recovery_bytes_left", t0)
        self.assertEqual(t0["recovery_extents_left"], 100)
        self.assertEqual(t0["releases_sent"], 7)
        self.assertEqual(doc["summary"]["recovery_bytes_left_unknown"], 1)

    def test_status_reads_a_newer_remote_target(self):
        """Over a data connection the status request has no version, so a
        target answers its own layout: here a stand-in for a target of a
        later version (a 400-byte reply, 8 bytes more than this build's).
        weftctl reads the fields it knows instead of calling the target
        silent (a build that wanted its own size exactly did)."""
        cid = self.j("status", "--run-dir", self.c.run_dir)["cluster_id"]
        epoch = self.epoch()
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        srv.settimeout(10)
        d = tempfile.mkdtemp(prefix="weftctl-v8-")
        with open(self.c.map) as f:
            text = f.read()
        text, n = re.subn(r"(\{\s*id = 0;[^}]*?port = )\d+",
                          lambda m: m.group(1) + str(srv.getsockname()[1]), text)
        self.assertEqual(n, 1, text)
        conf = os.path.join(d, "map.conf")
        with open(conf, "w") as f:
            f.write(text)
        lens = []

        def recv_n(c, n):
            b = b""
            while len(b) < n:
                m = c.recv(n - len(b))
                if not m:
                    raise EOFError
                b += m
            return b

        def serve():
            try:
                c, _ = srv.accept()
                c.settimeout(10)
                recv_n(c, 32)                                # HELLO
                c.sendall(struct.pack("<IHHIIIiQ", 0x48544657, 1, 2, 32, 32,
                                      4096, 0, 0))           # ACCEPT
                h = recv_n(c, 24)
                ln = struct.unpack_from("<I", h, 4)[0]
                q = recv_n(c, ln)
                lens.append(ln)
                tag = struct.unpack_from("<Q", q, 8)[0]
                a = bytearray(400)
                struct.pack_into("<HBBHHQ", a, 0, 0x5746, q[2], 9, 0, 0, tag)
                struct.pack_into("<IHHiIQQ", a, 16, 0, 8, 1, 0, 0, cid, epoch)
                struct.pack_into("<I", a, 16 + 56, 1 << 20)  # extent_size
                struct.pack_into("<Q", a, 16 + 336, 7)       # releases_sent
                struct.pack_into("<QQ", a, 16 + 368, 3 << 20, 99)
                c.sendall(struct.pack("<BBHIIIQ", 0xf7, 4, 0, len(a), 0, 0, 0)
                          + bytes(a))
                c.recv(64)                                   # its close
                c.close()
            except (OSError, EOFError):
                pass

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            # No control sockets in d: every target over its data address.
            p = run(["weftctl", "status", "-c", conf, "--run-dir", d, "--json",
                     "--timeout", "2000"], env=dict(self.c.env, WEFT_KEY=""))
            t.join(10)
        finally:
            srv.close()
            shutil.rmtree(d)
        self.assertEqual(lens, [32])
        doc = strict_json(p.stdout)
        validate(doc, "weftctl-status")
        t0 = doc["targets"][0]
        self.assertEqual(t0["state"], "up", (t0, p.stderr))
        self.assertEqual(t0["via"], "data address")
        self.assertEqual(t0["releases_sent"], 7)
        self.assertEqual(t0["recovery_bytes_left"], 3 << 20)

    def test_volume_info_counts_what_the_targets_hold(self):
        self.j("volume", "create", "held", "--size", "64M", "--pool", "rep1",
               "--run-dir", self.c.run_dir)
        d = self.j("volume", "info", "held")
        self.assertEqual(d["volume"]["extents_held"], 0)
        self.assertEqual(d["volume"]["targets_answered"], 3)
        # 8 MiB written by weft-bench's write/verify pass, and its mark in
        # the volume's last extent: 9 extents of rep1.
        run(["weft-bench", "io", "-c", self.c.map, "--volume", "held", "--size", "8M",
             "--verify-only", "--overwrite"], env=self.c.env, check=0, timeout=120)
        d = self.j("volume", "info", "held")
        v = d["volume"]
        self.assertEqual(v["extents_held"], 9, d)
        self.assertEqual(sum(t["extents"] for t in v["targets"]), 9)
        self.assertEqual(v["bytes_held"], 9 << 20)
        for t in v["targets"]:
            self.assertEqual(t["bytes"], t["extents"] << 20)
        p = self.c.ctl("volume", "info", "held", "-c", self.c.map, check=0)
        self.assertIn("held: 9 extents (9.00 MiB", p.stdout)
        d = self.j("volume", "list")
        self.assertIn({"name": "held", "id": v["id"], "pool": "rep1", "replicas": 1,
                       "size": 64 << 20, "extents": 64}, d["volumes"])

    def test_resize_smaller_and_delete_need_yes(self):
        self.j("volume", "create", "shrinkme", "--size", "128M", "--pool", "rep3",
               "--run-dir", self.c.run_dir)
        e = self.epoch()
        d = self.j("volume", "resize", "shrinkme", "--size", "64M", check=1)
        self.assertIn("add --yes", d["error"])
        d = self.j("volume", "delete", "shrinkme", check=1)
        self.assertIn("add --yes", d["error"])
        self.assertEqual(self.epoch(), e, "a refused change wrote the map")
        d = self.j("volume", "resize", "shrinkme", "--size", "256M")   # growing: no --yes
        self.assertEqual(d["size"], 256 << 20)
        d = self.j("volume", "resize", "shrinkme", "--size", "64M", "--yes")
        self.assertEqual(d["size"], 64 << 20)
        d = self.j("volume", "delete", "shrinkme", "--yes", "--run-dir", self.c.run_dir)
        self.assertEqual(d["epoch"], e + 3)
        self.assertEqual([r["result"] for r in d["reloaded"]], [0, 0, 0])
        self.assertNotIn("shrinkme", [v["name"] for v in self.j("volume", "list")["volumes"]])

    def test_create_warns_when_the_pool_cannot_hold_it(self):
        # Three 512 MiB devices, 3 replicas: about 1.5 GiB / 3 for rep3.
        p = self.c.ctl("volume", "create", "-c", self.c.map, "huge", "--size", "100G",
                       "--pool", "rep3", check=0)
        self.assertIn("thin provisioning", p.stderr)
        self.assertIn("huge", self.j("volume", "list")["volumes"][-1]["name"])
        d = self.j("volume", "create", "small", "--size", "16M", "--pool", "rep1")
        self.assertFalse(d["space"]["overcommitted"])
        self.assertNotIn("warnings", d)
        d = self.j("volume", "resize", "huge", "--size", "200G")
        self.assertTrue(d["space"]["overcommitted"])
        self.assertIn("thin provisioning", d["warnings"][0])
        self.j("volume", "delete", "huge", "--yes")

    def test_rewrites_keep_the_old_file_as_bak(self):
        with open(self.c.map) as f:
            before = f.read()
        p = self.c.ctl("volume", "create", "-c", self.c.map, "bak1", "--size", "1G",
                       "--pool", "rep1", check=0)
        self.assertIn("written anew", p.stdout)
        self.assertIn("comments and layout are not kept", p.stdout)
        self.assertIn(self.c.map + ".bak", p.stdout)
        with open(self.c.map + ".bak") as f:
            self.assertEqual(f.read(), before)
        d = self.j("target", "reweight", "2", "1.0", "--run-dir", self.c.run_dir)
        self.assertEqual(d["backup"], self.c.map + ".bak")
        self.assertEqual(len(d["reloaded"]), 3)
        # -o elsewhere: no backup, nothing told.
        out = os.path.join(self.c.dir, "balanced.conf")
        d = self.j("balance", "-o", out)
        self.assertEqual(d["map"], out)
        self.assertIsNone(d["backup"])
        self.assertNotIn("reloaded", d)

    def test_target_down_up_recover_json(self):
        d = self.j("target", "down", "1", "--run-dir", self.c.run_dir)
        self.assertEqual(d["pgs_pinned"], 0)
        d = self.j("target", "up", "1", "--run-dir", self.c.run_dir)
        d = self.j("recover", "--wait", "--timeout", "60", "--run-dir", self.c.run_dir)
        self.assertTrue(d["done"])
        st = self.j("status")
        self.assertEqual(st["summary"]["pgs_pinned"], 0)

    def test_scrub_and_map_push_json(self):
        d = self.j("scrub", "vol3", schema="weftctl-scrub")
        self.assertEqual(d["targets_started"], 3)
        self.assertEqual(d["chunks_differed"], 0)
        self.assertGreater(d["bytes_compared"], 0)
        self.assertEqual(d["targets_missing"], 0)
        d = self.j("scrub", "nosuch", check=1, schema="weftctl-scrub")
        self.assertIn("no volume 'nosuch'", d["error"])
        d = self.j("map", "push", schema="weftctl-map-push")
        self.assertEqual(len(d["reloaded"]), 3)
        for t in d["reloaded"]:
            self.assertEqual(t["via"], "control socket")
            self.assertTrue(t["answered"])
            self.assertEqual(t["result"], 0)

    def test_volume_allow_deny_json(self):
        e0 = self.epoch()
        d = self.j("volume", "allow", "vol1", "app1", "--ro")
        self.assertEqual((d["action"], d["key"], d["mode"]), ("allow", "app1", "ro"))
        self.assertEqual(d["epoch"], e0 + 1)
        self.assertTrue(all(t["answered"] for t in d["reloaded"]), d)
        with open(self.c.map) as f:
            text = f.read()
        self.assertIn('volume = "vol1"; key = "app1"; mode = "ro";', text)
        d = self.j("volume", "allow", "vol1", "app1")
        self.assertEqual(d["mode"], "rw")
        d = self.j("volume", "deny", "vol1", "app1")
        self.assertEqual(d["action"], "deny")
        self.assertEqual(d["epoch"], e0 + 3)
        self.assertIn("no entry for key app1", self.j("volume", "deny", "vol1", "app1",
                                                      check=1)["error"])
        self.assertIn("no such volume", self.j("volume", "allow", "nosuch", "k",
                                               check=1)["error"])
        p = self.c.ctl("volume", "deny", "vol1", "k", "--ro", "-c", self.c.map,
                       "--json", check=2)
        self.assertEqual(p.stdout, "")

    def test_key_issue_and_peer_json(self):
        d = tempfile.mkdtemp(prefix="weft-keys-")
        try:
            kr = os.path.join(d, "keyring")
            out = os.path.join(d, "host.keyring")
            e0 = self.epoch()
            i = self.j("key", "issue", "app9", "--host", "node9", "--volume",
                       "vol1", "--ro", "--volume", "vol3", "-o", out,
                       "--keyring", kr)
            self.assertEqual((i["action"], i["name"], i["host"], i["peer"]),
                             ("issue", "app9", "node9", False))
            self.assertEqual(i["volumes"], [{"volume": "vol1", "mode": "ro"},
                                            {"volume": "vol3", "mode": "rw"}])
            self.assertEqual(i["epoch"], e0 + 1)
            self.assertIn("node9:/etc/weft/keyring", i["next_step"])
            self.assertTrue(all(t["answered"] for t in i["reloaded"]), i)
            self.assertEqual(os.stat(out).st_mode & 0o777, 0o600)
            with open(out) as f:
                lines = [ln.split() for ln in f if not ln.startswith("#")]
            self.assertEqual([ln[0] for ln in lines], ["app9"])
            with open(kr) as f:
                self.assertIn(lines[0][1], f.read())
            self.assertNotIn(lines[0][1], json.dumps(i))
            with open(self.c.map) as f:
                text = f.read()
            self.assertIn('volume = "vol1"; key = "app9"; mode = "ro";', text)
            self.assertIn('volume = "vol3"; key = "app9"; mode = "rw";', text)
            # The same name again, an unknown volume, a missing --host or -o.
            self.assertIn("already has", self.j(
                "key", "issue", "app9", "--host", "n", "-o", out, "--keyring",
                kr, check=1)["error"])
            self.assertIn("no volume", self.j(
                "key", "issue", "app10", "--host", "n", "--volume", "nosuch",
                "-o", out, "--keyring", kr, check=1)["error"])
            for bad in (["--volume", "vol1"], ["--host", "n"], ["--ro", "--host", "n"]):
                p = self.c.ctl("key", "issue", "app10", "--keyring", kr, *bad,
                               "-c", self.c.map, check=2)
                self.assertEqual(p.stdout, "")
            # A target's key: --peer, and key peer --remove takes it out.
            t = self.j("key", "issue", "tgt9", "--host", "node9", "--peer",
                       "-o", out, "--keyring", kr)
            self.assertTrue(t["peer"])
            with open(self.c.map) as f:
                self.assertIn('"tgt9"', [ln for ln in f if "peer_keys" in ln][0])
            r = self.j("key", "peer", "tgt9", "--remove", "--keyring", kr)
            self.assertEqual((r["action"], r["epoch"]), ("unpeer", t["epoch"] + 1))
            r = self.j("key", "peer", "tgt9", "--keyring", kr)
            self.assertEqual(r["action"], "peer")
            self.j("key", "peer", "tgt9", "--remove", "--keyring", kr)
            for vol in ("vol1", "vol3"):
                self.j("volume", "deny", vol, "app9")
        finally:
            shutil.rmtree(d)

    def test_key_peer_keeps_the_last_peer_key_without_yes(self):
        d = tempfile.mkdtemp(prefix="weft-peer-")
        try:
            m = os.path.join(d, "map.conf")
            with open(self.c.map) as f:
                text = f.read()
            text = re.sub(r"(?m)^\s*peer_keys\s*=.*$", "", text)
            with open(m, "w") as f:
                f.write(text + '\npeer_keys = [ "only" ];\n')
            kr = os.path.join(d, "keyring")
            run_dir = os.path.join(d, "run")
            p = self.c.ctl("key", "peer", "only", "--remove", "--keyring", kr,
                           "-c", m, "--run-dir", run_dir, check=1)
            self.assertIn("last key of peer_keys", p.stderr)
            with open(m) as f:
                self.assertIn('"only"', f.read())
            self.c.ctl("key", "peer", "only", "--yes", "--keyring", kr, "-c", m,
                       check=2)
            self.c.ctl("key", "peer", "only", "--remove", "--yes", "--keyring", kr,
                       "-c", m, "--run-dir", run_dir, check=0)
            with open(m) as f:
                self.assertNotIn('"only"', f.read())
        finally:
            shutil.rmtree(d)

    def test_key_create_list_revoke_export_json(self):
        d = tempfile.mkdtemp(prefix="weft-keys-")
        try:
            kr = os.path.join(d, "keyring")
            c = self.j("key", "create", "client.a", "--keyring", kr)
            self.assertEqual((c["action"], c["name"]), ("create", "client.a"))
            self.assertEqual(os.stat(kr).st_mode & 0o777, 0o600)
            self.j("key", "create", "client.b", "--keyring", kr)
            self.assertIn("already has", self.j("key", "create", "client.a",
                                                "--keyring", kr, check=1)["error"])
            l = self.j("key", "list", "--keyring", kr)
            self.assertEqual([k["name"] for k in l["keys"]], ["client.a", "client.b"])
            # No secret anywhere in any output.
            with open(kr) as f:
                secrets = [ln.split()[1] for ln in f if not ln.startswith("#")]
            e0 = self.epoch()
            r = self.j("key", "revoke", "client.a", "--keyring", kr)
            self.assertTrue(r["removed"])
            self.assertEqual(r["epoch"], e0 + 1)
            self.assertTrue(all(t["answered"] for t in r["reloaded"]), r)
            l = self.j("key", "list", "--keyring", kr)
            self.assertEqual([k["name"] for k in l["keys"]], ["client.b"])
            self.assertIn("client.a", l["revoked"])
            # Revoked names are not reused.
            self.assertIn("revoked", self.j("key", "create", "client.a",
                                            "--keyring", kr, check=1)["error"])
            out = os.path.join(d, "one")
            x = self.c.ctl("key", "export", "client.b", "--keyring", kr, "-o", out,
                           "--json", check=0)
            validate(strict_json(x.stdout), "weftctl-key")
            with open(out) as f:
                body = f.read()
            self.assertIn("client.b", body)
            self.assertEqual(os.stat(out).st_mode & 0o777, 0o600)
            for p in (r, l, c):
                for s in secrets:
                    self.assertNotIn(s, str(p))
            # A keyring others can read is refused, saying how to fix it.
            os.chmod(kr, 0o644)
            self.assertIn("chmod 600", self.j("key", "list", "--keyring", kr,
                                              check=1)["error"])
            p = self.c.ctl("key", "create", "bad name", "--keyring", kr, check=2)
            self.assertEqual(p.stdout, "")
        finally:
            shutil.rmtree(d)


class RecoverEstimate(unittest.TestCase):
    """`weftctl recover --wait` says how long is left at the rate seen so
    far: a whole copy (--pg-log 0) held to 4 MiB/s per reactor
    (--recovery-mbps) lasts long enough for several looks."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(extra=("--recovery-mbps", "4", "--pg-log", "0"))

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    def ctl(self, *args, check=None):
        return self.c.ctl(*(list(args) + ["-c", self.c.map, "--run-dir",
                                          self.c.run_dir]), check=check)

    def bench_verify(self):
        run(["weft-bench", "io", "-c", self.c.map, "--volume", "vol3",
             "--size", "48M", "--verify-only"], env=dict(self.c.env),
            check=0, timeout=240)

    def test_recover_wait_estimates_the_time_left(self):
        self.bench_verify()
        self.ctl("target", "down", "1", check=0)
        self.ctl("target", "up", "1", check=0)
        p = self.ctl("recover", "--wait", "--timeout", "2", check=1)
        self.assertRegex(p.stdout, r"at the rate so far: about \d+ s left",
                         p.stdout)
        # Bytes left to copy (status version 7), not extents.
        self.assertRegex(p.stdout, r"MiB copied, [\d.]+ MiB left to copy;",
                         p.stdout)
        self.assertNotIn("extents left", p.stdout)
        st = self.c.ctl("status", "-c", self.c.map, "--json", check=0)
        st = strict_json(st.stdout)
        validate(st, "weftctl-status")
        self.assertGreater(st["summary"]["recovery_bytes_left"], 0)
        p = self.ctl("recover", "--wait", "--timeout", "2", "--json", check=1)
        d = strict_json(p.stdout)
        validate(d, "weftctl-recover")
        self.assertFalse(d["done"])
        self.assertGreaterEqual(d["seconds_left_estimate"], 0)
        self.assertEqual(d["estimate_from"], "bytes")
        self.assertGreater(d["bytes_left"], 0)
        self.ctl("recover", "--wait", "--timeout", "240", check=0)
        # The volume after the pins are gone: written again and read back
        # byte for byte (weft-bench prefills before it verifies; that the
        # copies themselves are right is test_sys_pglog's and
        # test_sys_move's).
        self.bench_verify()


class Versions(unittest.TestCase):
    def test_every_tool_prints_the_cmake_version(self):
        with open(os.path.join(SRC, "CMakeLists.txt")) as f:
            want = re.search(r"project\(weft VERSION (\S+)", f.read()).group(1)
        for tool in ("weftctl", "weft-target", "weft-bench"):
            p = run([tool, "--version"], check=0)
            self.assertEqual(p.stdout.strip(), "%s (weft) %s" % (tool, want))


if __name__ == "__main__":
    unittest.main()

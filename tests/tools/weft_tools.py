# SPDX-License-Identifier: Apache-2.0
"""Helpers of the tools' tests: run a binary, start and stop a local
cluster with scripts/cluster (free ports, pid files), read strict JSON."""
import json
import os
import signal
import subprocess
import time

SRC = os.environ.get("WEFT_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("WEFT_BIN", os.path.join(SRC, "build", "bin"))
BUILD = os.environ.get("WEFT_BUILD", os.path.join(SRC, "build"))
FIO_ENGINE = os.environ.get("WEFT_FIO_ENGINE", "")


def run(args, timeout=120, env=None, check=None, stdin=None):
    """Run args (a list; args[0] in BIN when it has no slash); returns the
    CompletedProcess with text stdout and stderr.  check: expected exit."""
    if "/" not in args[0] and os.path.exists(os.path.join(BIN, args[0])):
        args = [os.path.join(BIN, args[0])] + list(args[1:])
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                       env=e, input=stdin)
    if check is not None and p.returncode != check:
        raise AssertionError("%s: exit %d, wanted %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), p.returncode, check, p.stdout, p.stderr))
    return p


def _no_constant(name):
    raise ValueError("not JSON: %s" % name)


def strict_json(text):
    """json.loads that refuses NaN, Infinity and -Infinity (not JSON)."""
    return json.loads(text, parse_constant=_no_constant)


def schema(name):
    with open(os.path.join(SRC, "docs", "schemas", name + ".json")) as f:
        return json.load(f)


def validate(doc, name):
    import jsonschema  # python3-jsonschema (scripts/deps)
    jsonschema.validate(doc, schema(name))


class Cluster:
    """scripts/cluster start on a map (default conf/local.conf), free ports."""

    def __init__(self, conf=None, size="512M", extra=()):
        conf = conf or os.path.join(SRC, "conf", "local.conf")
        cmd = [os.path.join(SRC, "scripts", "cluster"), "start", "-c", conf,
               "--size", size, "--port-base", "auto"]
        if extra:
            cmd += ["--"] + list(extra)
        p = run(cmd, timeout=120, env={"WEFT_BIN": BIN})
        if p.returncode != 0:
            raise AssertionError("scripts/cluster start failed:\n" + p.stderr)
        kv = dict(w.split("=", 1) for w in p.stdout.split())
        self.dir = kv["WEFT_CLUSTER_DIR"]
        self.map = kv["WEFT_MAP"]
        self.run_dir = kv["WEFT_RUN_DIR"]
        self.keyring = kv["WEFT_KEYRING"]
        self.env = {"WEFT_RUN_DIR": self.run_dir, "WEFT_CLUSTER_DIR": self.dir,
                    "WEFT_KEYRING": self.keyring, "WEFT_KEY": kv["WEFT_KEY"]}

    def pid(self, tid):
        try:
            with open(os.path.join(self.dir, "target-%d.pid" % tid)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return 0

    def kill9(self, tid):
        """SIGKILL target tid (ours: its pid file) and wait until it is gone."""
        pid = self.pid(tid)
        assert pid > 0, "no pid file for target %d" % tid
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        os.unlink(os.path.join(self.dir, "target-%d.pid" % tid))

    def ctl(self, *args, check=None, timeout=60):
        """weftctl CMD ARGS with this cluster's map and run dir."""
        return run(["weftctl"] + list(args), env=self.env, check=check,
                   timeout=timeout)

    def stop(self):
        run([os.path.join(SRC, "scripts", "cluster"), "stop", self.dir], timeout=60)

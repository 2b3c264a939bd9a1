# SPDX-License-Identifier: Apache-2.0
"""scripts/cluster as README's "By hand" uses it: the eval line works
while the map's fixed ports are taken, and fails loudly when the cluster
did not start (instead of exporting nothing)."""
import os
import re
import socket
import subprocess
import unittest

from weft_tools import BIN, SRC


def bash(script, env=None, timeout=120):
    e = dict(os.environ, WEFT_BIN=BIN)
    e.update(env or {})
    return subprocess.run(["bash", "-c", script], cwd=SRC, env=e, text=True,
                          capture_output=True, timeout=timeout)


class ClusterScript(unittest.TestCase):
    def test_failed_start_fails_the_eval(self):
        p = bash('set -e; eval "export $(scripts/cluster start -c /nonexistent.conf)"; '
                 'echo went-on')
        self.assertNotEqual(p.returncode, 0)
        self.assertNotIn("went-on", p.stdout)
        self.assertIn("no map file /nonexistent.conf", p.stderr)
        self.assertIn("did not start", p.stderr)
        # Without set -e the eval's own status says it.
        p = bash('eval "export $(scripts/cluster start -c /nonexistent.conf)"')
        self.assertNotEqual(p.returncode, 0)

    def test_readme_by_hand_with_the_ports_taken(self):
        with open(os.path.join(SRC, "README.md")) as f:
            readme = f.read()
        m = re.search(r'^\s*(eval "export \$\(scripts/cluster start [^\n]*\)")\s*$',
                      readme, re.M)
        self.assertIsNotNone(m, "README has no eval line of scripts/cluster start")
        line = m.group(1)
        # Someone else holds conf/local.conf's first port.
        held = socket.socket()
        try:
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            held.bind(("127.0.0.1", 7400))
            held.listen(1)
        except OSError:
            pass    # taken already: the same situation
        try:
            p = bash('set -e; %s; echo "DIR=$WEFT_CLUSTER_DIR"; '
                     '"$WEFT_BIN/weftctl" status -c "$WEFT_MAP"; '
                     'scripts/cluster stop "$WEFT_CLUSTER_DIR"' % line)
        finally:
            held.close()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"\n0\s+127\.0\.0\.1:\d+\s+up")
        d = re.search(r"DIR=(\S+)", p.stdout).group(1)
        self.assertFalse(os.path.exists(d), "stop left the cluster folder")


if __name__ == "__main__":
    unittest.main()

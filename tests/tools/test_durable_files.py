# SPDX-License-Identifier: Apache-2.0
"""Files replaced whole (the map, a keyring) survive a crash once the tool
says they are written: under strace, the rename into place is followed by
an fsync of the directory that holds the new name (without it the rename
may be lost with the page cache, and a host that crashes after a map change
was pushed comes back with the older epoch's file)."""
import os
import re
import shutil
import tempfile
import unittest

from weft_tools import BIN, SRC, run


def traced(args):
    """Run a weftctl command under strace; the lines of its renames and
    fsyncs, fds shown with their paths (-y)."""
    # LeakSanitizer cannot run under ptrace (the ASan build's weftctl
    # would exit 1 at its end); the other tests check leaks.
    env = {"ASAN_OPTIONS": "detect_leaks=0"} if os.environ.get("WEFT_SANITIZE") else None
    p = run(["strace", "-f", "-y", "-qq", "-e", "trace=rename,renameat,renameat2,fsync",
             os.path.join(BIN, "weftctl")] + args, timeout=120, check=0, env=env)
    return [ln for ln in p.stderr.splitlines() if "rename" in ln or "fsync(" in ln]


class DurableFiles(unittest.TestCase):
    def setUp(self):
        self.d = os.path.realpath(tempfile.mkdtemp(prefix="weft-durable-"))

    def tearDown(self):
        shutil.rmtree(self.d)

    def assert_dir_synced_after_rename(self, lines, path):
        ren = [i for i, ln in enumerate(lines)
               if re.search(r'rename\w*\(.*"%s"\)\s*= 0' % re.escape(path), ln)]
        self.assertTrue(ren, "no rename onto %s in:\n%s" % (path, "\n".join(lines)))
        later = lines[ren[-1] + 1:]
        want = r"fsync\(\d+<%s>\)\s*= 0" % re.escape(os.path.dirname(path))
        self.assertTrue(any(re.search(want, ln) for ln in later),
                        "no fsync of %s after the rename onto %s:\n%s" %
                        (os.path.dirname(path), path, "\n".join(lines)))

    def test_keyring(self):
        kr = os.path.join(self.d, "keyring")
        self.assert_dir_synced_after_rename(
            traced(["key", "create", "client.d", "--keyring", kr]), kr)

    def test_map(self):
        m = os.path.join(self.d, "map.conf")
        shutil.copy(os.path.join(SRC, "conf", "local.conf"), m)
        # No target runs: the map is written, the push reaches nobody.
        self.assert_dir_synced_after_rename(
            traced(["volume", "create", "-c", m, "vdur", "--size", "1G",
                    "--pool", "rep1"]), m)


if __name__ == "__main__":
    unittest.main()

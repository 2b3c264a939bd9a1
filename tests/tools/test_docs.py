# SPDX-License-Identifier: Apache-2.0
"""docs/libweft.md's table of calls covers every function weft.h declares,
with the arguments in the header's order."""
import os
import re
import unittest

from weft_tools import SRC


def header_functions():
    with open(os.path.join(SRC, "initiator", "include", "weft.h")) as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    fns = {}
    for m in re.finditer(r"\b(weft_[a-z_]+)\s*\(([^;{]*?)\)\s*;", text, re.S):
        args = []
        for a in m.group(2).split(","):
            a = a.strip()
            if a and a != "void":
                args.append(re.search(r"(\w+)\s*$", a).group(1))
        fns[m.group(1)] = args
    return fns


class LibweftDoc(unittest.TestCase):
    def test_every_call_documented_in_order(self):
        with open(os.path.join(SRC, "docs", "libweft.md")) as f:
            doc = f.read()
        fns = header_functions()
        self.assertGreater(len(fns), 20)
        for name, args in fns.items():
            m = re.search(r"^\| `%s\(([^)]*)\)`" % name, doc, re.M)
            self.assertIsNotNone(m, "%s is not in docs/libweft.md's table" % name)
            got = [a.strip().lstrip("&") for a in m.group(1).split(",") if a.strip()]
            self.assertEqual(len(got), len(args), "%s: %s vs weft.h %s" % (name, got, args))
            for g, a in zip(got, args):
                # An out-pointer may carry the caller's name (&cl for out).
                self.assertTrue(g == a or a == "out", "%s: %s vs weft.h %s" %
                                (name, got, args))


if __name__ == "__main__":
    unittest.main()

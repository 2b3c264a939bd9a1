#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Independent reference of weft's PG -> acting set function (placement.c,
WF_PLACEMENT_VERSION 1), in Python's exact integers.  It recomputes the
golden vectors of test_placement.c from the algorithm's definition, so a
compiler, libc or platform that computed anything differently would show.

    python3 tests/placement/reference.py     # exits 1 on a mismatch
"""
import os
import re
import sys

M = (1 << 64) - 1
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = open(os.path.join(HERE, '..', '..', 'placement', 'log2_tab.c')).read()
start = SRC.index('log2_tab[1025]')
TAB = [int(x, 16) for x in re.findall(r'0x([0-9a-f]{9})', SRC[start:SRC.index('};', start)])]
SALT_PG, SALT_DEV = 0x5bd1e9955bd1e995, 0x27d4eb2f165667c5


def mix64(x):
    x &= M
    x ^= x >> 33
    x = (x * 0xff51afd7ed558ccd) & M
    x ^= x >> 33
    x = (x * 0xc4ceb9fe1a85ec53) & M
    return x ^ (x >> 33)


def mum(x, y):
    m = x * y
    return (m & M) ^ (m >> 64)


def nlog2(x):
    """-log2(x / 2^64) in 32.32, table + linear interpolation."""
    x = max(x, 1)
    lz = 64 - x.bit_length()
    f = ((x << lz) << 1) & M
    i, r = f >> 54, (f >> 22) & 0xffffffff
    lo = TAB[i] + (((TAB[i + 1] - TAB[i]) * r) >> 32)
    return ((lz + 1) << 32) - lo


def place(pool_id, pg, devs, replicas):
    """devs: (target id, weight 16.16, failure domain).  Acting set, primary first."""
    salt = mix64(((pool_id << 32) | pg) ^ SALT_PG)
    best = {}
    for tid, w, fd in devs:
        a = mix64((tid * 0x9e3779b97f4a7c15 + SALT_DEV) & M)
        b = mix64(a ^ SALT_PG) | 1
        u = mum(salt ^ a, b)
        straw = ((nlog2(u) * ((1 << 48) // w)) >> 32, -u, tid)
        if fd not in best or straw < best[fd]:
            best[fd] = straw
    return [s[2] for s in sorted(best.values())[:replicas]]


def golden(name):
    text = open(os.path.join(HERE, 'golden.h')).read()
    line = re.search(r'#define %s (.*)' % name, text).group(1)
    nums = [int(x) for x in re.findall(r'\d+', line)]
    return [nums[i:i + 3] for i in range(0, len(nums), 3)]


def main():
    ok = True
    rack128 = [(i, 1 << 16, i // 4) for i in range(128)]        # host domain
    got = [place(1, pg, rack128, 3) for pg in (0, 1, 2, 3, 100, 1000, 2048, 4095)]
    ok &= got == golden('GOLDEN_RACK128')
    weighted = [(i, (1 << 15) + (i % 5) * 24248, i // 12) for i in range(36)]  # rack domain
    got = [place(1, pg * 7, weighted, 3) for pg in range(6)]
    ok &= got == golden('GOLDEN_WEIGHTED')
    print('reference: golden vectors %s' % ('match' if ok else 'DIFFER'))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())

/* SPDX-License-Identifier: Apache-2.0 */
/* Golden placement vectors (WF_PLACEMENT_VERSION 1); tests/placement/reference.py
 * recomputes the acting sets independently.  Regenerate only on a format change:
 * WEFT_GOLDEN_PRINT=1 test_placement --filter golden_print/print */
#define GOLDEN_PG_OF 2296, 2274, 2368, 3432, 1887, 1775, 2586, 1176,
#define GOLDEN_PG_BIG 882239
#define GOLDEN_RACK128 { 125, 70, 45 }, { 31, 2, 73 }, { 59, 66, 104 }, { 4, 108, 57 }, { 15, 105, 53 }, { 91, 80, 117 }, { 20, 2, 49 }, { 107, 122, 99 },
#define GOLDEN_WEIGHTED { 18, 34, 7 }, { 22, 10, 33 }, { 7, 33, 17 }, { 19, 31, 7 }, { 12, 34, 1 }, { 19, 5, 31 },
/* XXH64 of every PG's set on four generated maps (tests/placement/test_derive.c):
 * WEFT_PRINT_GOLDEN=1 test_derive --filter golden/whole_tables */
#define GOLDEN_TABLE_0 0xf0fabf5ac6fe60c0ull
#define GOLDEN_TABLE_1 0x7e4cebdfd9560584ull
#define GOLDEN_TABLE_2 0xd2f79dc9b5839b5dull
#define GOLDEN_TABLE_3 0x58af20118e825741ull

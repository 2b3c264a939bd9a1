/* SPDX-License-Identifier: Apache-2.0 */
/* Golden tables of the sparse algorithm (pool algorithm = "sparse", about 16
 * high draws a PG: tests/placement/gen.c): XXH64 of every PG's set on the
 * maps of test_derive's golden/whole_tables.  Any change is a placement
 * format change.  Regenerate only then:
 * WEFT_PRINT_GOLDEN=1 test_derive_sparse --filter golden/whole_tables */
#define GOLDEN_SPARSE_TABLE_0 0xdb764b25b1c2b9d6ull
#define GOLDEN_SPARSE_TABLE_1 0x23c9e8026159d8c5ull
#define GOLDEN_SPARSE_TABLE_2 0x4711aa97bf271ea2ull
#define GOLDEN_SPARSE_TABLE_3 0x691db88b78f9dad6ull

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Placement: PG of an extent, acting set of a PG, the per-epoch table.
 *
 * The acting set of a PG is a weighted rendezvous (straw2) choice made
 * "down the hierarchy" in its coupled form: every eligible device draws
 * E = -log2(u) from a hash of (pool, pg, device); its straw is E / weight
 * (smaller is better, the same order as ln(u)/weight largest-first); the
 * straw of a bucket is the best straw of the devices below it.  The acting
 * set is the R failure domains with the best straws, each represented by
 * its best device, primary first.
 *
 * That is the same distribution as drawing once per bucket with the
 * bucket's summed weight (the minimum of independent exponential clocks is
 * an exponential clock with the summed rate), but a bucket's outcome is now
 * a function of its devices' draws only.  So a weight change inside one
 * bucket cannot shuffle PGs between other buckets, and removing or adding a
 * device changes at most one member of a PG (the acting set is the greedy
 * basis of a partition matroid).  No collisions happen, so no retries are
 * needed.  Cost: one hash per device and one logarithm per (failure domain,
 * weight) run, rather than one of each per level; see docs/placement.md.
 *
 * All arithmetic is on fixed-width integers: the logarithm is a checked-in
 * table with linear interpolation, a straw is that times a fixed-point
 * reciprocal of the weight, ties go to the larger draw, then to the
 * smaller hash_id.  tests/placement/reference.py is an independent model.
 */
#define _GNU_SOURCE             /* qsort_r */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "placement/placement.h"

#define SALT_PG  0x5bd1e9955bd1e995ull
#define SALT_DEV 0x27d4eb2f165667c5ull
#define SALT_SPARSE 0x94d049bb133111ebull

/* murmur3's 64-bit finalizer: a bijection with full avalanche. */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/*
 * log2(1 + i/1024) in 32.32 fixed point, i = 0..1024, rounded to nearest.
 * Generated once with 60-digit decimal arithmetic:
 *   round(Decimal(1 + i/1024).ln() / Decimal(2).ln() * 2**32)
 * and checked in, so no build depends on a libm.
 */
static const uint64_t log2_tab[1025] = {
	0x000000000, 0x0005c4995, 0x000b87c20, 0x0011497ad, 0x001709c47, 0x001cc89f9,
	0x0022860d0, 0x0028420d6, 0x002dfca17, 0x0033b5c9e, 0x00396d875, 0x003f23daa,
	0x0044d8c46, 0x004a8c455, 0x00503e5e2, 0x0055ef0f7, 0x005b9e5a1, 0x00614c3eb,
	0x0066f8bde, 0x006ca3d86, 0x00724d8ef, 0x0077f5e22, 0x007d9cd2b, 0x008342615,
	0x0088e68eb, 0x008e895b6, 0x00942ac83, 0x0099cad5b, 0x009f6984a, 0x00a506d5a,
	0x00aaa2c96, 0x00b03d608, 0x00b5d69bb, 0x00bb6e7b9, 0x00c10500d, 0x00c69a2c2,
	0x00cc2dfe2, 0x00d1c0776, 0x00d75198b, 0x00dce162a, 0x00e26fd5d, 0x00e7fcf2e,
	0x00ed88ba9, 0x00f3132d6, 0x00f89c4c2, 0x00fe24174, 0x0103aa8f9, 0x01092fb59,
	0x010eb38a0, 0x0114360d6, 0x0119b7407, 0x011f3723b, 0x0124b5b7e, 0x012a32fd9,
	0x012faef56, 0x0135299ff, 0x013aa2fdd, 0x01401b0fb, 0x014591d63, 0x014b0751e,
	0x01507b836, 0x0155ee6b5, 0x015b600a4, 0x0160d060d, 0x01663f6fb, 0x016bad376,
	0x017119b87, 0x017684f3a, 0x017beee97, 0x0181579a7, 0x0186bf075, 0x018c2530a,
	0x01918a16e, 0x0196edbad, 0x019c501ce, 0x01a1b13dc, 0x01a7111df, 0x01ac6fbe2,
	0x01b1cd1ed, 0x01b729409, 0x01bc84241, 0x01c1ddc9c, 0x01c736325, 0x01cc8d5e4,
	0x01d1e34e3, 0x01d73802b, 0x01dc8b7c5, 0x01e1ddbb9, 0x01e72ec11, 0x01ec7e8d7,
	0x01f1cd212, 0x01f71a7cd, 0x01fc66a0f, 0x0201b18e2, 0x0206fb44f, 0x020c43c5f,
	0x02118b11a, 0x0216d1289, 0x021c160b6, 0x022159ba8, 0x02269c369, 0x022bdd802,
	0x02311d97a, 0x02365c7dc, 0x023b9a32f, 0x0240d6b7c, 0x0246120cc, 0x024b4c327,
	0x025085296, 0x0255bcf22, 0x025af38d2, 0x026028fb1, 0x02655d3c5, 0x026a90518,
	0x026fc23b1, 0x0274f2f9a, 0x027a228db, 0x027f50f7c, 0x02847e386, 0x0289aa500,
	0x028ed53f3, 0x0293ff068, 0x029927a66, 0x029e4f1f6, 0x02a375721, 0x02a89a9ee,
	0x02adbea65, 0x02b2e188f, 0x02b803474, 0x02bd23e1c, 0x02c24358f, 0x02c761ad4,
	0x02cc7edf6, 0x02d19aefa, 0x02d6b5de9, 0x02dbcfacc, 0x02e0e85aa, 0x02e5ffe8b,
	0x02eb16577, 0x02f02ba76, 0x02f53fd90, 0x02fa52ecc, 0x02ff64e33, 0x030475bcd,
	0x0309857a0, 0x030e941b6, 0x0313a1a15, 0x0318ae0c6, 0x031db95d0, 0x0322c393b,
	0x0327ccb0f, 0x032cd4b53, 0x0331dba0f, 0x0336e174a, 0x033be630d, 0x0340e9d5f,
	0x0345ec646, 0x034aeddcc, 0x034fee3f7, 0x0354ed8cf, 0x0359ebc5b, 0x035ee8ea4,
	0x0363e4faf, 0x0368dff86, 0x036dd9e2f, 0x0372d2bb1, 0x0377ca814, 0x037cc1360,
	0x0381b6d9c, 0x0386ab6ce, 0x038b9eeff, 0x039091636, 0x039582c79, 0x039a731d0,
	0x039f62643, 0x03a4509d9, 0x03a93dc98, 0x03ae29e89, 0x03b314fb1, 0x03b7ff019,
	0x03bce7fc7, 0x03c1cfec3, 0x03c6b6d14, 0x03cb9cac0, 0x03d0817cf, 0x03d565447,
	0x03da48031, 0x03df29b92, 0x03e40a672, 0x03e8ea0d8, 0x03edc8acb, 0x03f2a6451,
	0x03f782d72, 0x03fc5e634, 0x040138e9f, 0x0406126b9, 0x040aeae89, 0x040fc2616,
	0x041498d67, 0x04196e482, 0x041e42b6f, 0x042316233, 0x0427e88d7, 0x042cb9f60,
	0x04318a5d5, 0x043659c3e, 0x043b282a0, 0x043ff5902, 0x0444c1f6b, 0x04498d5e2,
	0x044e57c6d, 0x045321313, 0x0457e99db, 0x045cb10ca, 0x0461777e8, 0x04663cf3c,
	0x046b016ca, 0x046fc4e9b, 0x0474876b5, 0x047948f1d, 0x047e097db, 0x0482c90f6,
	0x048787a72, 0x048c45458, 0x049101eac, 0x0495bd977, 0x049a784bd, 0x049f32085,
	0x04a3eacd7, 0x04a8a29b7, 0x04ad5972d, 0x04b20f53e, 0x04b6c43f1, 0x04bb7834d,
	0x04c02b356, 0x04c4dd415, 0x04c98e58e, 0x04ce3e7c8, 0x04d2edac9, 0x04d79be98,
	0x04dc4933b, 0x04e0f58b7, 0x04e5a0f13, 0x04ea4b655, 0x04eef4e83, 0x04f39d7a3,
	0x04f8451bb, 0x04fcebcd2, 0x0501918ec, 0x050636612, 0x050ada447, 0x050f7d393,
	0x05141f3fb, 0x0518c0586, 0x051d60839, 0x0521ffc1a, 0x05269e12f, 0x052b3b77e,
	0x052fd7f0e, 0x0534737e3, 0x05390e204, 0x053da7d76, 0x054240a40, 0x0546d8867,
	0x054b6f7f1, 0x0550058e4, 0x05549ab46, 0x05592ef1c, 0x055dc246d, 0x056254b3d,
	0x0566e6393, 0x056b76d75, 0x0570068e8, 0x0574955f2, 0x057923498, 0x057db04e0,
	0x05823c6d1, 0x0586c7a6f, 0x058b51fc0, 0x058fdb6c9, 0x059463f92, 0x0598eba1e,
	0x059d72674, 0x05a1f8499, 0x05a67d492, 0x05ab01666, 0x05af84a1a, 0x05b406fb3,
	0x05b888736, 0x05bd090ab, 0x05c188c14, 0x05c607979, 0x05ca858df, 0x05cf02a4b,
	0x05d37edc3, 0x05d7fa34b, 0x05dc74aea, 0x05e0ee4a5, 0x05e567081, 0x05e9dee83,
	0x05ee55eb1, 0x05f2cc111, 0x05f7415a7, 0x05fbb5c79, 0x06002958c, 0x06049c0e6,
	0x06090de8c, 0x060d7ee82, 0x0611ef0cf, 0x06165e578, 0x061accc81, 0x061f3a5f1,
	0x0623a71cc, 0x062813017, 0x062c7e0d8, 0x0630e8413, 0x0635519cf, 0x0639ba210,
	0x063e21cdb, 0x064288a35, 0x0646eea24, 0x064b53cad, 0x064fb81d5, 0x06541b9a0,
	0x06587e415, 0x065ce0137, 0x06614110c, 0x0665a139a, 0x066a008e4, 0x066e5f0f1,
	0x0672bcbc5, 0x067719965, 0x067b759d6, 0x067fd0d1e, 0x06842b340, 0x068884c43,
	0x068cdd82a, 0x0691356fb, 0x06958c8bb, 0x0699e2d6f, 0x069e3851c, 0x06a28cfc6,
	0x06a6e0d72, 0x06ab33e26, 0x06af861e6, 0x06b3d78b7, 0x06b82829d, 0x06bc77f9f,
	0x06c0c6fc0, 0x06c515304, 0x06c962973, 0x06cdaf30e, 0x06d1fafdd, 0x06d645fe3,
	0x06da90325, 0x06ded99a7, 0x06e322370, 0x06e76a083, 0x06ebb10e4, 0x06eff749a,
	0x06f43cba8, 0x06f881613, 0x06fcc53df, 0x070108512, 0x07054a9b1, 0x07098c1be,
	0x070dccd41, 0x07120cc3c, 0x07164beb5, 0x071a8a4b0, 0x071ec7e31, 0x072304b3e,
	0x072740bdb, 0x072b7c00d, 0x072fb67d7, 0x0733f033f, 0x073829249, 0x073c614fa,
	0x074098b55, 0x0744cf561, 0x074905320, 0x074d3a498, 0x07516e9cd, 0x0755a22c4,
	0x0759d4f81, 0x075e07008, 0x07623845e, 0x076668c87, 0x076a98888, 0x076ec7865,
	0x0772f5c23, 0x0777233c5, 0x077b4ff51, 0x077f7beca, 0x0783a7236, 0x0787d1998,
	0x078bfb4f4, 0x079024450, 0x07944c7af, 0x079873f15, 0x079c9aa88, 0x07a0c0a0a,
	0x07a4e5da2, 0x07a90a552, 0x07ad2e11f, 0x07b15110e, 0x07b573522, 0x07b994d60,
	0x07bdb59cd, 0x07c1d5a6b, 0x07c5f4f40, 0x07ca13850, 0x07ce3159f, 0x07d24e731,
	0x07d66ad0a, 0x07da8672f, 0x07dea15a3, 0x07e2bb86b, 0x07e6d4f8b, 0x07eaedb08,
	0x07ef05ae4, 0x07f31cf25, 0x07f7337ce, 0x07fb494e4, 0x07ff5e66a, 0x080372c65,
	0x0807866d9, 0x080b995ca, 0x080fab93c, 0x0813bd132, 0x0817cddb2, 0x081bddebf,
	0x081fed45d, 0x0823fbe90, 0x082809d5c, 0x082c170c5, 0x0830238d0, 0x08342f57f,
	0x08383a6d8, 0x083c44cdd, 0x08404e794, 0x084457700, 0x08485fb24, 0x084c67406,
	0x08506e1a8, 0x08547440f, 0x085879b3e, 0x085c7e73a, 0x086082807, 0x086485da7,
	0x086888820, 0x086c8a775, 0x08708bbaa, 0x08748c4c3, 0x08788c2c4, 0x087c8b5af,
	0x088089d8b, 0x088487a59, 0x088884c1e, 0x088c812de, 0x08907ce9d, 0x089477f5e,
	0x089872525, 0x089c6bff6, 0x08a064fd5, 0x08a45d4c5, 0x08a854ecb, 0x08ac4bde9,
	0x08b042225, 0x08b437b80, 0x08b82ca00, 0x08bc20da8, 0x08c01467c, 0x08c40747e,
	0x08c7f97b4, 0x08cbeb021, 0x08cfdbdc8, 0x08d3cc0ad, 0x08d7bb8d3, 0x08dbaa63f,
	0x08df988f5, 0x08e3860f7, 0x08e772e49, 0x08eb5f0ef, 0x08ef4a8ed, 0x08f335646,
	0x08f71f8fe, 0x08fb09118, 0x08fef1e98, 0x0902da182, 0x0906c19da, 0x090aa87a1,
	0x090e8eade, 0x091274392, 0x0916591c1, 0x091a3d570, 0x091e20ea1, 0x092203d58,
	0x0925e6199, 0x0929c7b67, 0x092da8ac6, 0x093188fb8, 0x093568a43, 0x093947a68,
	0x093d2602c, 0x094103b92, 0x0944e0c9e, 0x0948bd353, 0x094c98fb4, 0x0950741c5,
	0x09544e989, 0x095828705, 0x095c01a3a, 0x095fda32d, 0x0963b21e1, 0x09678965a,
	0x096b6009b, 0x096f360a6, 0x09730b681, 0x0976e022d, 0x097ab43af, 0x097e87b0a,
	0x09825a841, 0x09862cb58, 0x0989fe451, 0x098dcf330, 0x09919f7f9, 0x09956f2af,
	0x09993e356, 0x099d0c9ef, 0x09a0da680, 0x09a4a790b, 0x09a874193, 0x09ac4001c,
	0x09b00b4a8, 0x09b3d5f3d, 0x09b79ffdb, 0x09bb69688, 0x09bf32346, 0x09c2fa618,
	0x09c6c1f01, 0x09ca88e06, 0x09ce4f329, 0x09d214e6d, 0x09d5d9fd5, 0x09d99e765,
	0x09dd62520, 0x09e12590a, 0x09e4e8325, 0x09e8aa374, 0x09ec6b9fb, 0x09f02c6bd,
	0x09f3ec9bd, 0x09f7ac2fe, 0x09fb6b284, 0x09ff29852, 0x0a02e746a, 0x0a06a46d0,
	0x0a0a60f87, 0x0a0e1ce92, 0x0a11d83f5, 0x0a1592fb2, 0x0a194d1cc, 0x0a1d06a47,
	0x0a20bf926, 0x0a2477e6c, 0x0a282fa1c, 0x0a2be6c38, 0x0a2f9d4c5, 0x0a33533c5,
	0x0a370893b, 0x0a3abd52b, 0x0a3e71797, 0x0a4225082, 0x0a45d7fef, 0x0a498a5e3,
	0x0a4d3c25e, 0x0a50ed566, 0x0a549defc, 0x0a584df23, 0x0a5bfd5df, 0x0a5fac333,
	0x0a635a721, 0x0a67081ad, 0x0a6ab52da, 0x0a6e61aaa, 0x0a720d920, 0x0a75b8e41,
	0x0a7963a0d, 0x0a7d0dc89, 0x0a80b75b8, 0x0a846059c, 0x0a8808c38, 0x0a8bb0990,
	0x0a8f57da5, 0x0a92fe87c, 0x0a96a4a17, 0x0a9a4a279, 0x0a9def1a5, 0x0aa19379d,
	0x0aa537465, 0x0aa8da800, 0x0aac7d270, 0x0ab01f3b8, 0x0ab3c0bdc, 0x0ab761ade,
	0x0abb020c1, 0x0abea1d87, 0x0ac241135, 0x0ac5dfbcc, 0x0ac97dd4f, 0x0acd1b5c1,
	0x0ad0b8526, 0x0ad454b7f, 0x0ad7f08d1, 0x0adb8bd1c, 0x0adf26866, 0x0ae2c0aaf,
	0x0ae65a3fb, 0x0ae9f344e, 0x0aed8bba8, 0x0af123a0e, 0x0af4baf83, 0x0af851c08,
	0x0afbe7fa1, 0x0aff7da50, 0x0b0312c19, 0x0b06a74fe, 0x0b0a3b502, 0x0b0dcec27,
	0x0b1161a70, 0x0b14f3fe0, 0x0b1885c7b, 0x0b1c17041, 0x0b1fa7b37, 0x0b2337d5f,
	0x0b26c76bc, 0x0b2a5674f, 0x0b2de4f1d, 0x0b3172e28, 0x0b3500472, 0x0b388d1ff,
	0x0b3c196d0, 0x0b3fa52e9, 0x0b433064b, 0x0b46bb0fb, 0x0b4a452fb, 0x0b4dcec4c,
	0x0b5157cf3, 0x0b54e04f1, 0x0b5868449, 0x0b5befafe, 0x0b5f76913, 0x0b62fce89,
	0x0b6682b64, 0x0b6a07fa7, 0x0b6d8cb54, 0x0b7110e6d, 0x0b74948f5, 0x0b7817af0,
	0x0b7b9a45e, 0x0b7f1c544, 0x0b829dda3, 0x0b861ed7e, 0x0b899f4d9, 0x0b8d1f3b4,
	0x0b909ea14, 0x0b941d7fa, 0x0b979bd69, 0x0b9b19a63, 0x0b9e96eec, 0x0ba213b06,
	0x0ba58feb2, 0x0ba90b9f5, 0x0bac86cd0, 0x0bb001746, 0x0bb37b959, 0x0bb6f530c,
	0x0bba6e462, 0x0bbde6d5d, 0x0bc15edff, 0x0bc4d664b, 0x0bc84d644, 0x0bcbc3deb,
	0x0bcf39d45, 0x0bd2af452, 0x0bd624315, 0x0bd998992, 0x0bdd0c7ca, 0x0be07fdbf,
	0x0be3f2b76, 0x0be7650ef, 0x0bead6e2d, 0x0bee48333, 0x0bf1b9003, 0x0bf5294a0,
	0x0bf89910c, 0x0bfc0854a, 0x0bff7715b, 0x0c02e5543, 0x0c0653103, 0x0c09c049f,
	0x0c0d2d019, 0x0c1099372, 0x0c1404eae, 0x0c17701cf, 0x0c1adacd7, 0x0c1e44fc9,
	0x0c21aeaa6, 0x0c2517d73, 0x0c2880830, 0x0c2be8ae0, 0x0c2f50586, 0x0c32b7823,
	0x0c361e2bb, 0x0c3984550, 0x0c3ce9fe4, 0x0c404f279, 0x0c43b3d12, 0x0c4717fb1,
	0x0c4a7ba58, 0x0c4dded0a, 0x0c51417ca, 0x0c54a3a98, 0x0c5805579, 0x0c5b6686d,
	0x0c5ec7378, 0x0c622769c, 0x0c65871da, 0x0c68e6536, 0x0c6c450b2, 0x0c6fa344f,
	0x0c7301011, 0x0c765e3f9, 0x0c79bb00a, 0x0c7d17447, 0x0c80730b0, 0x0c83ce549,
	0x0c8729214, 0x0c8a83713, 0x0c8ddd449, 0x0c91369b7, 0x0c948f761, 0x0c97e7d47,
	0x0c9b3fb6d, 0x0c9e971d5, 0x0ca1ee080, 0x0ca544772, 0x0ca89a6ac, 0x0cabefe31,
	0x0caf44e03, 0x0cb299623, 0x0cb5ed695, 0x0cb940f5b, 0x0cbc94076, 0x0cbfe69e9,
	0x0cc338bb7, 0x0cc68a5e1, 0x0cc9db869, 0x0ccd2c352, 0x0cd07c69e, 0x0cd3cc24e,
	0x0cd71b667, 0x0cda6a2e8, 0x0cddb87d6, 0x0ce106531, 0x0ce453afc, 0x0ce7a0939,
	0x0ceaecfeb, 0x0cee38f12, 0x0cf1846b3, 0x0cf4cf6ce, 0x0cf819f66, 0x0cfb6407d,
	0x0cfeada16, 0x0d01f6c31, 0x0d053f6d2, 0x0d08879fb, 0x0d0bcf5ad, 0x0d0f169eb,
	0x0d125d6b7, 0x0d15a3c13, 0x0d18e9a01, 0x0d1c2f084, 0x0d1f73f9c, 0x0d22b874e,
	0x0d25fc799, 0x0d2940082, 0x0d2c83209, 0x0d2fc5c30, 0x0d3307efb, 0x0d3649a6b,
	0x0d398ae81, 0x0d3ccbb41, 0x0d400c0ac, 0x0d434bec4, 0x0d468b58c, 0x0d49ca505,
	0x0d4d08d31, 0x0d5046e13, 0x0d53847ac, 0x0d56c19ff, 0x0d59fe50d, 0x0d5d3a8d9,
	0x0d6076565, 0x0d63b1ab2, 0x0d66ec8c3, 0x0d6a26f9a, 0x0d6d60f39, 0x0d709a7a1,
	0x0d73d38d5, 0x0d770c2d7, 0x0d7a445a9, 0x0d7d7c14c, 0x0d80b35c4, 0x0d83ea311,
	0x0d8720936, 0x0d8a56835, 0x0d8d8c00f, 0x0d90c10c8, 0x0d93f5a60, 0x0d9729cda,
	0x0d9a5d837, 0x0d9d90c7a, 0x0da0c39a5, 0x0da3f5fba, 0x0da727eba, 0x0daa596a7,
	0x0dad8a784, 0x0db0bb153, 0x0db3eb415, 0x0db71afcc, 0x0dba4a47b, 0x0dbd79222,
	0x0dc0a78c5, 0x0dc3d5865, 0x0dc703104, 0x0dca302a4, 0x0dcd5cd47, 0x0dd0890ef,
	0x0dd3b4d9d, 0x0dd6e0354, 0x0dda0b215, 0x0ddd359e3, 0x0de05fac0, 0x0de3894ac,
	0x0de6b27ab, 0x0de9db3be, 0x0ded038e6, 0x0df02b727, 0x0df352e81, 0x0df679ef7,
	0x0df9a088a, 0x0dfcc6b3d, 0x0dffec711, 0x0e0311c08, 0x0e0636a24, 0x0e095b167,
	0x0e0c7f1d2, 0x0e0fa2b69, 0x0e12c5e2b, 0x0e15e8a1c, 0x0e190af3d, 0x0e1c2cd90,
	0x0e1f4e517, 0x0e226f5d4, 0x0e258ffc8, 0x0e28b02f5, 0x0e2bcff5e, 0x0e2eef503,
	0x0e320e3e8, 0x0e352cc0d, 0x0e384ad75, 0x0e3b68821, 0x0e3e85c13, 0x0e41a294d,
	0x0e44befd0, 0x0e47dafa0, 0x0e4af68bd, 0x0e4e11b28, 0x0e512c6e5, 0x0e5446bf5,
	0x0e5760a59, 0x0e5a7a214, 0x0e5d93326, 0x0e60abd93, 0x0e63c415b, 0x0e66dbe81,
	0x0e69f3506, 0x0e6d0a4ec, 0x0e7020e35, 0x0e73370e3, 0x0e764ccf7, 0x0e7962273,
	0x0e7c77159, 0x0e7f8b9aa, 0x0e829fb69, 0x0e85b3697, 0x0e88c6b36, 0x0e8bd9948,
	0x0e8eec0ce, 0x0e91fe1ca, 0x0e950fc3e, 0x0e982102b, 0x0e9b31d94, 0x0e9e4247a,
	0x0ea1524df, 0x0ea461ec4, 0x0ea77122b, 0x0eaa7ff17, 0x0ead8e588, 0x0eb09c580,
	0x0eb3a9f02, 0x0eb6b720e, 0x0eb9c3ea7, 0x0ebcd04ce, 0x0ebfdc485, 0x0ec2e7dcd,
	0x0ec5f30a9, 0x0ec8fdd1a, 0x0ecc08322, 0x0ecf122c2, 0x0ed21bbfc, 0x0ed524ed2,
	0x0ed82db45, 0x0edb36157, 0x0ede3e10b, 0x0ee145a60, 0x0ee44cd5a, 0x0ee7539fa,
	0x0eea5a041, 0x0eed60031, 0x0ef0659cc, 0x0ef36ad13, 0x0ef66fa08, 0x0ef9740ae,
	0x0efc78104, 0x0eff7bb0e, 0x0f027eecc, 0x0f0581c41, 0x0f088436d, 0x0f0b86454,
	0x0f0e87ef5, 0x0f1189354, 0x0f148a170, 0x0f178a94d, 0x0f1a8aaec, 0x0f1d8a64e,
	0x0f2089b75, 0x0f2388a63, 0x0f2687319, 0x0f2985599, 0x0f2c831e4, 0x0f2f807fd,
	0x0f327d7e4, 0x0f357a19b, 0x0f3876524, 0x0f3b72281, 0x0f3e6d9b2, 0x0f4168abb,
	0x0f446359b, 0x0f475da55, 0x0f4a578eb, 0x0f4d5115e, 0x0f504a3af, 0x0f5342fe1,
	0x0f563b5f4, 0x0f59335eb, 0x0f5c2afc6, 0x0f5f22388, 0x0f6219132, 0x0f650f8c6,
	0x0f6805a44, 0x0f6afb5b0, 0x0f6df0b09, 0x0f70e5a53, 0x0f73da38e, 0x0f76ce6bb,
	0x0f79c23de, 0x0f7cb5af6, 0x0f7fa8c05, 0x0f829b70e, 0x0f858dc12, 0x0f887fb11,
	0x0f8b7140f, 0x0f8e6270b, 0x0f9153409, 0x0f9443b08, 0x0f9733c0c, 0x0f9a23715,
	0x0f9d12c24, 0x0fa001b3d, 0x0fa2f045e, 0x0fa5de78c, 0x0fa8cc4c6, 0x0fabb9c0f,
	0x0faea6d67, 0x0fb1938d2, 0x0fb47fe4f, 0x0fb76bde0, 0x0fba57787, 0x0fbd42b46,
	0x0fc02d91e, 0x0fc318110, 0x0fc60231e, 0x0fc8ebf4a, 0x0fcbd5594, 0x0fcebe5ff,
	0x0fd1a708c, 0x0fd48f53c, 0x0fd777410, 0x0fda5ed0b, 0x0fdd4602e, 0x0fe02cd7a,
	0x0fe3134f1, 0x0fe5f9694, 0x0fe8df264, 0x0febc4863, 0x0feea9893, 0x0ff18e2f5,
	0x0ff47278b, 0x0ff756655, 0x0ffa39f56, 0x0ffd1d28e, 0x100000000,
};

/*
 * -log2(x / 2^64) in 32.32 fixed point, for the 64-bit hash x (0 counts as
 * 1).  Table lookup on the 10 bits after the leading one, linear
 * interpolation on the next 32: absolute error below 2e-7, i.e. 2e-5
 * relative at the straws that win among a hundred devices.  Result > 0.
 */
static inline uint64_t nlog2(uint64_t x)
{
	unsigned lz, i;
	uint64_t f, r, lo;

	x += (x == 0);
	lz = (unsigned)__builtin_clzll(x);
	f = (x << lz) << 1;                     /* mantissa bits after the 1 */
	i = (unsigned)(f >> 54);
	r = (f >> 22) & 0xffffffffull;
	lo = log2_tab[i];
	lo += ((log2_tab[i + 1] - lo) * r) >> 32;
	return ((uint64_t)(lz + 1) << 32) - lo;
}

/*
 * The draw of a device: the xor of the two halves of a 64x64->128 bit
 * product (wyhash's "mum"), one multiply.  pg_salt is already a full
 * avalanche of (pool, pg), and a, b are per-device random constants.
 */
static inline uint64_t mum(uint64_t x, uint64_t y)
{
#if defined(__x86_64__) && defined(__GNUC__)
	/* The same product, spelled out: GCC 12 otherwise may bounce the two
	 * halves of the __int128 through the stack in the device loop. */
	uint64_t lo, hi;

	__asm__("mulq %3" : "=a"(lo), "=d"(hi) : "a"(x), "rm"(y) : "cc");
	return lo ^ hi;
#else
	unsigned __int128 m = (unsigned __int128)x * y;

	return (uint64_t)m ^ (uint64_t)(m >> 64);
#endif
}

/*
 * Straw of a device: key = E / weight in 32.32 (E = nlog2(u)), computed as
 * E * floor(2^48 / w) >> 32 so comparing straws is one integer compare.
 * Smaller is better; the rounding is deterministic and only matters for
 * straws within 2^-32 of each other.  Ties go to the larger draw, then to
 * the smaller hash_id.
 */
struct straw {
	uint64_t key;
	uint64_t u;             /* the draw */
	uint64_t inv_w;
	uint32_t dev;           /* index into wf_pl_pool.devs */
	uint32_t hash_id;
	uint32_t fd;
};

static inline bool straw_better(const struct straw *a, const struct straw *b)
{
	if (a->key != b->key)
		return a->key < b->key;
	if (a->u != b->u)
		return a->u > b->u;
	return a->hash_id < b->hash_id;
}

static inline uint64_t straw_key(uint64_t e, uint64_t inv_w)
{
	return (uint64_t)(((unsigned __int128)e * inv_w) >> 32);
}

static inline uint64_t pg_salt(uint32_t pool_id, uint32_t pg)
{
	return mix64((((uint64_t)pool_id << 32) | pg) ^ SALT_PG);
}

/*
 * Keep the best straw of each failure domain, the best cap domains sorted
 * best first.  Returns whether s got in.
 */
static inline __attribute__((always_inline)) bool
top_insert(struct straw *top, unsigned *n, unsigned cap,
			      const struct straw *s)
{
	unsigned i = *n, j;

	if (i == cap && !straw_better(s, &top[cap - 1]))
		return false;
	for (j = 0; j < *n; j++)
		if (top[j].fd == s->fd)
			break;
	if (j < *n) {
		if (!straw_better(s, &top[j]))
			return false;
		i = j;                  /* a better device of a listed domain */
	} else if (i == cap) {
		i--;
	} else {
		(*n)++;
	}
	while (i > 0 && straw_better(s, &top[i - 1])) {
		top[i] = top[i - 1];
		i--;
	}
	top[i] = *s;
	return true;
}

/* High 64 bits of x * y. */
static inline uint64_t mulhi(uint64_t x, uint64_t y)
{
	return (uint64_t)(((unsigned __int128)x * y) >> 64);
}

/* The high draw of a candidate. */
static inline uint64_t cand_u(const struct wf_pl_pool *pp, const struct wf_pl_cand *c)
{
	return pp->sparse_thr + mulhi((uint64_t)c->off << 32, pp->sparse_p64);
}

/*
 * Every device draws; the R failure domains with the best straws win.  For
 * a sparse pool (sparse == true, a constant where it is inlined) a device's
 * draw is its high draw when the PG is in its list (c..ce, sorted by dev),
 * else the hash scaled below sparse_thr.
 */
static inline __attribute__((always_inline)) unsigned
place_all(const struct wf_pl_pool *pp, uint32_t pg, uint32_t out[WF_MAX_REPLICAS],
	  bool sparse, const struct wf_pl_cand *c, const struct wf_pl_cand *ce)
{
	const struct wf_pl_dev *devs = pp->devs;
	const struct wf_pl_run *run, *rend = pp->runs + pp->nruns;
	struct straw top[WF_MAX_REPLICAS];
	unsigned ntop = 0, cap = pp->replicas;
	uint64_t salt = pg_salt(pp->pool_id, pg);
	uint64_t thr_u = 0, thr_w = 0;  /* draw and weight of top[cap - 1] */

	for (run = pp->runs; run < rend; run++) {
		const struct wf_pl_dev *d = devs + run->first, *dend = d + run->n, *bd = d;
		uint64_t best = mum(salt ^ d->a, d->b);
		struct straw s;

		if (sparse)
			best = mulhi(best, pp->sparse_thr);
		/* Same weight: the largest draw has the best straw. */
		for (d++; d < dend; d++) {
			uint64_t u = mum(salt ^ d->a, d->b);
			bool win;

			if (sparse)
				u = mulhi(u, pp->sparse_thr);
			win = u > best;
			/* Written to become conditional moves: the outcome
			 * is a coin flip, a branch would mispredict half the
			 * time. */
			best = win ? u : best;
			bd = win ? d : bd;
		}
		/* A high draw of the run beats every other draw of it. */
		for (; sparse && c < ce && c->dev < run->first + run->n; c++) {
			if (c->dev < run->first)
				continue;
			uint64_t cu = cand_u(pp, c);

			if (cu > best || (cu == best && devs + c->dev < bd)) {
				best = cu;
				bd = devs + c->dev;
			}
		}
		/*
		 * Same weight as the last of a full list and a smaller draw:
		 * the straw cannot get in (the key is monotonic in the draw
		 * and ties go to the larger draw), so skip the logarithm.
		 */
		if (best < thr_u && run->inv_w == thr_w)
			continue;
		s.key = straw_key(nlog2(best), run->inv_w);
		s.u = best;
		s.inv_w = run->inv_w;
		s.dev = (uint32_t)(bd - devs);
		s.hash_id = pp->hash_id[s.dev];
		s.fd = run->fd;
		if (top_insert(top, &ntop, cap, &s) && ntop == cap) {
			thr_u = top[cap - 1].u;
			thr_w = top[cap - 1].inv_w;
		}
	}
	for (unsigned i = 0; i < ntop; i++)
		out[i] = pp->target[top[i].dev];
	return ntop;
}

/*
 * Sparse pool: the PG's high draws alone decide when the R-th best of them
 * has a straw no draw under sparse_thr can reach (sparse_bound: the
 * heaviest device's straw for the largest such draw); else every device
 * draws (place_all), which is the definition.
 */
static __attribute__((noinline)) unsigned
place_sparse(const struct wf_placer *pl, const struct wf_pl_pool *pp, uint32_t pg,
	     uint32_t out[WF_MAX_REPLICAS])
{
	const struct wf_pl_cand *c = pp->cand + pp->cand_off[pg];
	const struct wf_pl_cand *ce = pp->cand + pp->cand_off[pg + 1];
	struct straw top[WF_MAX_REPLICAS];
	unsigned ntop = 0, cap = pp->replicas;

	if (pl->exhaustive)
		return place_all(pp, pg, out, true, c, ce);
	for (const struct wf_pl_cand *x = c; x < ce; x++) {
		const struct wf_pl_run *run = &pp->runs[pp->run_of[x->dev]];
		struct straw s;

		s.u = cand_u(pp, x);
		s.key = straw_key(nlog2(s.u), run->inv_w);
		s.inv_w = run->inv_w;
		s.dev = x->dev;
		s.hash_id = pp->hash_id[x->dev];
		s.fd = run->fd;
		top_insert(top, &ntop, cap, &s);
	}
	if (ntop < cap || top[cap - 1].key >= pp->sparse_bound)
		return place_all(pp, pg, out, true, c, ce);
	for (unsigned i = 0; i < ntop; i++)
		out[i] = pp->target[top[i].dev];
	return ntop;
}

static inline unsigned
place_straw2(const struct wf_pl_pool *pp, uint32_t pg, uint32_t out[WF_MAX_REPLICAS])
{
	return place_all(pp, pg, out, false, NULL, NULL);
}

unsigned wf_place_pg(const struct wf_placer *pl, uint32_t pool, uint32_t pg,
		     uint32_t out[WF_MAX_REPLICAS])
{
	const struct wf_pl_pool *pp = &pl->pools[pool];

	if (pp->algorithm == WF_ALGO_SPARSE)
		return place_sparse(pl, pp, pg, out);
	return place_straw2(pp, pg, out);
}

uint32_t wf_pg_of(uint64_t volume_id, uint64_t extent, uint32_t pg_num)
{
	uint8_t b[16];

	/* Little-endian bytes whatever the host, so every host agrees. */
	for (int i = 0; i < 8; i++) {
		b[i] = (uint8_t)(volume_id >> (8 * i));
		b[8 + i] = (uint8_t)(extent >> (8 * i));
	}
	return (uint32_t)XXH3_64bits_withSeed(b, sizeof(b), WF_PG_SEED) & (pg_num - 1);
}

/* ---- compiling a map ---------------------------------------------------- */

/* Failure domain node of a device node for type fdt, or -1 when the device
 * does not hang under nodes[0] (the root). */
static int64_t fd_of(const struct wf_map *map, uint32_t node, uint8_t fdt)
{
	int64_t fd = -1;
	uint32_t n = node;

	for (uint32_t steps = 0; steps <= map->nnodes; steps++) {
		const struct wf_node *nd = &map->nodes[n];

		if (fd < 0 && nd->type >= fdt)
			fd = n;
		if (nd->parent < 0)
			return n == 0 ? fd : -1;
		if ((uint32_t)nd->parent >= map->nnodes)
			return -1;
		n = (uint32_t)nd->parent;
	}
	return -1;                      /* a cycle */
}

struct sort_key {
	uint32_t fd, weight, hash_id, target;
};

static int key_cmp(const void *a, const void *b)
{
	const struct sort_key *x = a, *y = b;

	if (x->fd != y->fd)
		return x->fd < y->fd ? -1 : 1;
	if (x->weight != y->weight)
		return x->weight < y->weight ? -1 : 1;
	if (x->hash_id != y->hash_id)
		return x->hash_id < y->hash_id ? -1 : 1;
	return 0;
}

static int id_cmp(const void *a, const void *b, void *ctx)
{
	const struct wf_map *map = ctx;
	uint32_t x = map->targets[*(const uint32_t *)a].id;
	uint32_t y = map->targets[*(const uint32_t *)b].id;

	return x < y ? -1 : x > y;
}

/* The k-th number of a device's stream (splitmix64's step). */
static inline uint64_t stream(uint64_t seed, uint64_t k)
{
	return mix64(seed + k * 0x9e3779b97f4a7c15ull);
}

/*
 * A device's walk over the PGs: its stops are where it draws high.  Gaps
 * are geometric: gap = E * inv >> 64, E = -log2 of a uniform 64-bit number
 * from the device's own stream (number k for the k-th gap) and inv =
 * 2^64 / -log2(1 - p), so P(gap >= g) = (1 - p)^g.  At the k-th stop the
 * draw's 32 bits come from stream number k | 2^63.
 */
struct walker {
	uint64_t seed, pos, k;          /* pos: the k-th stop */
};

static inline void walk_start(const struct wf_pl_pool *pp, uint32_t d, struct walker *w)
{
	w->seed = mix64((((uint64_t)pp->pool_id << 32) | pp->hash_id[d]) ^ SALT_SPARSE);
	w->k = 0;
	w->pos = mulhi(nlog2(stream(w->seed, 0)), pp->sparse_inv);
}

static inline void walk_next(const struct wf_pl_pool *pp, struct walker *w)
{
	w->k++;
	w->pos += 1 + mulhi(nlog2(stream(w->seed, w->k)), pp->sparse_inv);
}

#define SPARSE_CHUNK 2048               /* PGs filled at a time */

/*
 * The high draws of a sparse pool, PG by PG: each device stops at a share
 * p = sparse_ppm / 10^6 of the PGs and draws there uniformly in
 * [2^64 (1 - p), 2^64).  The stops depend on neither pg_num (a PG split
 * keeps the low PGs' draws) nor any other device or weight.  The rows are
 * filled a chunk of PGs at a time, every device walking through the
 * chunk, so the writes stay in cache; rows list devices in dev order.
 */
static int compile_sparse(struct wf_pl_pool *pp, uint32_t ppm)
{
	uint64_t p64 = (uint64_t)(((unsigned __int128)ppm << 64) / 1000000u);
	uint64_t min_inv = UINT64_MAX;
	size_t cap = 1024 + (size_t)((double)pp->pg_num * pp->ndevs * (ppm / 1e6) * 1.05);
	size_t tcap = 1024, base = 0;
	struct walker *w = malloc(((size_t)pp->ndevs + 1) * sizeof(*w));
	struct { uint32_t pg, dev, off; } *tmp = malloc(tcap * sizeof(*tmp));
	uint32_t cnt[SPARSE_CHUNK + 1];
	int ret = -ENOMEM;

	pp->sparse_p64 = p64;
	pp->sparse_thr = (uint64_t)0 - p64;
	pp->sparse_inv = UINT64_MAX / nlog2(pp->sparse_thr);
	pp->run_of = calloc(pp->ndevs + 1, sizeof(*pp->run_of));
	pp->cand_off = calloc((size_t)pp->pg_num + 1, sizeof(*pp->cand_off));
	pp->cand = malloc(cap * sizeof(*pp->cand));
	if (!w || !tmp || !pp->run_of || !pp->cand_off || !pp->cand)
		goto out;
	for (uint32_t r = 0; r < pp->nruns; r++) {
		for (uint32_t i = 0; i < pp->runs[r].n; i++)
			pp->run_of[pp->runs[r].first + i] = r;
		if (pp->runs[r].inv_w < min_inv)
			min_inv = pp->runs[r].inv_w;
	}
	/* The best straw any draw below thr can have: the heaviest device's. */
	pp->sparse_bound = straw_key(nlog2(pp->sparse_thr - 1), min_inv);
	for (uint32_t d = 0; d < pp->ndevs; d++)
		walk_start(pp, d, &w[d]);
	for (uint32_t lo = 0; lo < pp->pg_num; lo += SPARSE_CHUNK) {
		uint32_t hi = pp->pg_num - lo < SPARSE_CHUNK ? pp->pg_num : lo + SPARSE_CHUNK;
		size_t nt = 0;

		for (uint32_t d = 0; d < pp->ndevs; d++) {
			for (; w[d].pos < hi; walk_next(pp, &w[d])) {
				if (nt == tcap) {
					void *nb = realloc(tmp, (tcap *= 2) * sizeof(*tmp));

					if (!nb)
						goto out;
					tmp = nb;
				}
				tmp[nt].pg = (uint32_t)w[d].pos - lo;
				tmp[nt].dev = d;
				tmp[nt].off = (uint32_t)(stream(w[d].seed, w[d].k | 1ull << 63) >> 32);
				nt++;
			}
		}
		if (base + nt > cap) {
			void *nc;

			cap = (base + nt) * 2;
			nc = realloc(pp->cand, cap * sizeof(*pp->cand));
			if (!nc)
				goto out;
			pp->cand = nc;
		}
		/* Counting sort of the chunk by PG, stable: dev order kept. */
		memset(cnt, 0, sizeof(cnt));
		for (size_t i = 0; i < nt; i++)
			cnt[tmp[i].pg + 1]++;
		for (uint32_t i = 0; i < hi - lo; i++) {
			cnt[i + 1] += cnt[i];
			pp->cand_off[lo + i] = (uint32_t)(base + cnt[i]);
		}
		for (size_t i = 0; i < nt; i++)
			pp->cand[base + cnt[tmp[i].pg]++] = (struct wf_pl_cand){ tmp[i].off, tmp[i].dev };
		base += nt;
	}
	pp->cand_off[pp->pg_num] = (uint32_t)base;
	ret = 0;
out:
	free(w);
	free(tmp);
	return ret;
}

static int compile_pool(struct wf_placer *pl, uint32_t p, struct sort_key *keys)
{
	const struct wf_map *map = pl->map;
	const struct wf_pool *pool = &map->pools[p];
	struct wf_pl_pool *pp = &pl->pools[p];
	uint32_t *fdn = &pl->fd_node[(size_t)p * map->ntargets];
	uint32_t n = 0;

	if (pool->replicas < 1 || pool->replicas > WF_MAX_REPLICAS ||
	    pool->pg_num == 0 || (pool->pg_num & (pool->pg_num - 1)))
		return -EINVAL;
	pp->pool_id = pool->id;
	pp->replicas = pool->replicas;
	pp->failure_domain = pool->failure_domain;
	pp->pg_num = pool->pg_num;

	for (uint32_t t = 0; t < map->ntargets; t++) {
		const struct wf_target *tg = &map->targets[t];
		int64_t fd;

		fdn[t] = WF_TARGET_NONE;
		if (!tg->in || tg->weight == 0 || tg->node >= map->nnodes ||
		    map->nodes[tg->node].type != WF_NODE_DEVICE)
			continue;
		fd = fd_of(map, tg->node, pool->failure_domain);
		if (fd < 0)
			continue;
		fdn[t] = (uint32_t)fd;
		keys[n++] = (struct sort_key){ (uint32_t)fd, tg->weight,
					       map->nodes[tg->node].hash_id, t };
	}
	qsort(keys, n, sizeof(*keys), key_cmp);

	pp->devs = calloc(n ? n : 1, sizeof(*pp->devs));
	pp->target = calloc(n ? n : 1, sizeof(*pp->target));
	pp->hash_id = calloc(n ? n : 1, sizeof(*pp->hash_id));
	pp->runs = calloc(n ? n : 1, sizeof(*pp->runs));
	if (!pp->devs || !pp->target || !pp->hash_id || !pp->runs)
		return -ENOMEM;
	pp->ndevs = n;
	for (uint32_t i = 0; i < n; i++) {
		struct wf_pl_dev *d = &pp->devs[i];

		pp->target[i] = keys[i].target;
		pp->hash_id[i] = keys[i].hash_id;
		d->a = mix64((uint64_t)keys[i].hash_id * 0x9e3779b97f4a7c15ull + SALT_DEV);
		d->b = mix64(d->a ^ SALT_PG) | 1;
		if (i == 0 || keys[i].fd != keys[i - 1].fd)
			pp->nfds++;
		if (i == 0 || keys[i].fd != keys[i - 1].fd ||
		    keys[i].weight != keys[i - 1].weight) {
			pp->runs[pp->nruns++] = (struct wf_pl_run){
				.inv_w = (1ull << 48) / keys[i].weight,
				.first = i, .n = 0, .weight = keys[i].weight,
				.fd = pp->nfds - 1 };
		}
		pp->runs[pp->nruns - 1].n++;
	}
	pp->algorithm = pool->algorithm;
	if (pool->algorithm == WF_ALGO_SPARSE) {
		if (pool->sparse_ppm < 1 || pool->sparse_ppm > WF_SPARSE_PPM_MAX)
			return -EINVAL;
		return compile_sparse(pp, pool->sparse_ppm);
	} else if (pool->algorithm != WF_ALGO_STRAW2) {
		return -EINVAL;
	}
	return 0;
}

int wf_placer_init(struct wf_placer *pl, const struct wf_map *map)
{
	struct sort_key *keys = NULL;
	int ret = -ENOMEM;

	memset(pl, 0, sizeof(*pl));
	pl->map = map;
	pl->npools = map->npools;
	pl->pools = calloc(map->npools ? map->npools : 1, sizeof(*pl->pools));
	pl->fd_node = calloc((size_t)map->npools * map->ntargets + 1, sizeof(*pl->fd_node));
	pl->by_id = calloc(map->ntargets + 1, sizeof(*pl->by_id));
	keys = calloc(map->ntargets + 1, sizeof(*keys));
	if (!pl->pools || !pl->fd_node || !pl->by_id || !keys)
		goto out_free;
	for (uint32_t t = 0; t < map->ntargets; t++)
		pl->by_id[t] = t;
	qsort_r(pl->by_id, map->ntargets, sizeof(*pl->by_id), id_cmp, (void *)map);
	for (uint32_t p = 0; p < map->npools; p++) {
		ret = compile_pool(pl, p, keys);
		if (ret)
			goto out_free;
	}
	free(keys);
	return 0;

out_free:
	free(keys);
	wf_placer_free(pl);
	return ret;
}

void wf_placer_free(struct wf_placer *pl)
{
	if (pl->pools) {
		for (uint32_t p = 0; p < pl->npools; p++) {
			free(pl->pools[p].devs);
			free(pl->pools[p].target);
			free(pl->pools[p].hash_id);
			free(pl->pools[p].runs);
			free(pl->pools[p].run_of);
			free(pl->pools[p].cand_off);
			free(pl->pools[p].cand);
		}
	}
	free(pl->pools);
	free(pl->fd_node);
	free(pl->by_id);
	memset(pl, 0, sizeof(*pl));
}

int wf_placer_target(const struct wf_placer *pl, uint32_t id)
{
	uint32_t lo = 0, hi = pl->map->ntargets;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint32_t mid_id = pl->map->targets[pl->by_id[mid]].id;

		if (mid_id == id)
			return (int)pl->by_id[mid];
		if (mid_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

bool wf_placer_eligible(const struct wf_placer *pl, uint32_t pool, uint32_t t)
{
	return pool < pl->npools && t < pl->map->ntargets &&
	       pl->fd_node[(size_t)pool * pl->map->ntargets + t] != WF_TARGET_NONE;
}

bool wf_override_resolve(const struct wf_placer *pl, const struct wf_override *ov,
			 uint32_t out[WF_MAX_REPLICAS])
{
	const struct wf_map *map = pl->map;
	const uint32_t *fdn;

	if (ov->pool >= pl->npools)
		return false;
	if (ov->pg >= pl->pools[ov->pool].pg_num || ov->n != pl->pools[ov->pool].replicas)
		return false;
	fdn = &pl->fd_node[(size_t)ov->pool * map->ntargets];
	for (unsigned i = 0; i < ov->n; i++) {
		int t = wf_placer_target(pl, ov->target[i]);

		if (t < 0 || fdn[t] == WF_TARGET_NONE)
			return false;
		out[i] = (uint32_t)t;
		for (unsigned j = 0; j < i; j++)
			if (fdn[out[j]] == fdn[t])      /* also catches duplicates */
				return false;
	}
	return true;
}

unsigned wf_place_pg_final(const struct wf_placer *pl, uint32_t pool, uint32_t pg,
			   uint32_t out[WF_MAX_REPLICAS], bool *overridden)
{
	const struct wf_map *map = pl->map;

	for (uint32_t i = 0; i < map->noverrides; i++) {
		const struct wf_override *ov = &map->overrides[i];

		if (ov->pool == pool && ov->pg == pg && wf_override_resolve(pl, ov, out)) {
			*overridden = true;
			return ov->n;
		}
	}
	*overridden = false;
	return wf_place_pg(pl, pool, pg, out);
}

/* ---- the per-epoch table ------------------------------------------------ */

/*
 * Per-PG indexes of one pool for building a table: the first valid
 * override of each PG (ovi, -1 for none) and its pg_temp entry (tmi).
 */
static void pool_index(const struct wf_placer *pl, uint32_t p, int32_t *ovi, int32_t *tmi)
{
	const struct wf_map *map = pl->map;
	uint32_t pg_num = pl->pools[p].pg_num;

	for (uint32_t pg = 0; pg < pg_num; pg++)
		ovi[pg] = tmi[pg] = -1;
	/* First valid override of each PG wins. */
	for (uint32_t i = 0; i < map->noverrides; i++) {
		const struct wf_override *ov = &map->overrides[i];
		uint32_t tmp[WF_MAX_REPLICAS];

		if (ov->pool == p && ov->pg < pg_num && ovi[ov->pg] < 0 &&
		    wf_override_resolve(pl, ov, tmp))
			ovi[ov->pg] = (int32_t)i;
	}
	/* pg_temp: the pinned acting set of a PG, if any. */
	for (uint32_t i = 0; i < map->ntemps; i++)
		if (map->temps[i].pool == p && map->temps[i].pg < pg_num)
			tmi[map->temps[i].pg] = (int32_t)i;
}

/* Placement, up and acting sets of one PG into the table. */
static void fill_pg(const struct wf_placer *pl, struct wf_pg_pool_table *pt, uint32_t p,
		    uint32_t pg, int32_t oi, int32_t ti)
{
	const struct wf_map *map = pl->map;
	uint32_t set[WF_MAX_REPLICAS], *a = &pt->acting[(size_t)pg * pt->stride];
	uint32_t *u = &pt->up[(size_t)pg * pt->stride];
	unsigned n, up = 0, act = 0;

	if (oi >= 0)
		n = wf_override_resolve(pl, &map->overrides[oi], set) ? pt->stride : 0;
	else
		n = wf_place_pg(pl, p, pg, set);
	for (unsigned i = 0; i < n; i++)
		if (map->targets[set[i]].up)
			u[up++] = set[i];
	pt->placed[pg] = (uint8_t)n;
	pt->nup[pg] = (uint8_t)up;
	for (unsigned i = up; i < pt->stride; i++)
		u[i] = WF_TARGET_NONE;
	if (ti >= 0) {
		/* Pinned: the members that hold the data and are up serve;
		 * the up set's others are brought up to date meanwhile. */
		const struct wf_override *tm = &map->temps[ti];

		for (unsigned i = 0; i < tm->n && act < pt->stride; i++) {
			int x = wf_placer_target(pl, tm->target[i]);

			if (x >= 0 && map->targets[x].up)
				a[act++] = (uint32_t)x;
		}
	} else {
		memcpy(a, u, up * sizeof(*a));
		act = up;
	}
	pt->n[pg] = (uint8_t)act;
	for (unsigned i = act; i < pt->stride; i++)
		a[i] = WF_TARGET_NONE;
}

/* Allocate the tables of every pool (contents undefined) and the index
 * scratch *ovi (2 * (max pg_num + 1) entries). */
static int table_alloc(struct wf_pg_table *t, const struct wf_placer *pl, int32_t **ovi)
{
	uint32_t maxpg = 0;

	memset(t, 0, sizeof(*t));
	t->epoch = pl->map->epoch;
	t->npools = pl->npools;
	t->pools = calloc(pl->npools ? pl->npools : 1, sizeof(*t->pools));
	if (!t->pools)
		return -ENOMEM;
	for (uint32_t p = 0; p < pl->npools; p++) {
		const struct wf_pl_pool *pp = &pl->pools[p];
		struct wf_pg_pool_table *pt = &t->pools[p];

		if (pp->pg_num > maxpg)
			maxpg = pp->pg_num;
		pt->pg_num = pp->pg_num;
		pt->stride = pp->replicas;
		pt->acting = malloc((size_t)pp->pg_num * pp->replicas * sizeof(*pt->acting));
		pt->n = calloc(pp->pg_num, 1);
		pt->placed = calloc(pp->pg_num, 1);
		pt->up = malloc((size_t)pp->pg_num * pp->replicas * sizeof(*pt->up));
		pt->nup = calloc(pp->pg_num, 1);
		if (!pt->acting || !pt->n || !pt->placed || !pt->up || !pt->nup)
			goto out_free;
	}
	*ovi = malloc(((size_t)maxpg + 1) * 2 * sizeof(**ovi));
	if (*ovi)
		return 0;
out_free:
	wf_pg_table_free(t);
	return -ENOMEM;
}

int wf_pg_table_build(struct wf_pg_table *t, const struct wf_placer *pl)
{
	int32_t *ovi;
	int ret = table_alloc(t, pl, &ovi);

	if (ret)
		return ret;
	for (uint32_t p = 0; p < pl->npools; p++) {
		struct wf_pg_pool_table *pt = &t->pools[p];
		int32_t *tmi = ovi + pt->pg_num;

		pool_index(pl, p, ovi, tmi);
		for (uint32_t pg = 0; pg < pt->pg_num; pg++) {
			fill_pg(pl, pt, p, pg, ovi[pg], tmi[pg]);
			t->noverrides_used += ovi[pg] >= 0;
			t->ntemps_used += tmi[pg] >= 0;
		}
	}
	free(ovi);
	return 0;
}

/* ---- the next epoch's table from the last one --------------------------- */

/* Whether two maps differ at most in targets' weight, in and up (and in
 * what placement ignores: epoch, names, addresses, volumes, node weight
 * sums).  Fills changed[] with the target indices that differ, up to max;
 * *nchanged = max + 1 when there are more. */
static bool same_shape(const struct wf_map *a, const struct wf_map *b, uint32_t *changed,
		       uint32_t max, uint32_t *nchanged)
{
	*nchanged = 0;
	if (a->ntargets != b->ntargets || a->nnodes != b->nnodes || a->nchild != b->nchild ||
	    a->npools != b->npools || a->noverrides != b->noverrides || a->ntemps != b->ntemps)
		return false;
	if (memcmp(a->child, b->child, a->nchild * sizeof(*a->child)))
		return false;
	for (uint32_t i = 0; i < a->nnodes; i++) {
		const struct wf_node *x = &a->nodes[i], *y = &b->nodes[i];

		if (x->type != y->type || x->parent != y->parent || x->hash_id != y->hash_id ||
		    x->first_child != y->first_child || x->nchild != y->nchild ||
		    (x->type == WF_NODE_DEVICE && x->target != y->target))
			return false;
	}
	for (uint32_t i = 0; i < a->npools; i++) {
		const struct wf_pool *x = &a->pools[i], *y = &b->pools[i];

		if (x->id != y->id || x->replicas != y->replicas ||
		    x->failure_domain != y->failure_domain || x->pg_num != y->pg_num ||
		    x->algorithm != y->algorithm || x->sparse_ppm != y->sparse_ppm)
			return false;
	}
	for (uint32_t i = 0; i < a->noverrides + a->ntemps; i++) {
		const struct wf_override *x = i < a->noverrides ? &a->overrides[i] :
					      &a->temps[i - a->noverrides];
		const struct wf_override *y = i < a->noverrides ? &b->overrides[i] :
					      &b->temps[i - a->noverrides];

		if (x->pool != y->pool || x->pg != y->pg || x->n != y->n ||
		    memcmp(x->target, y->target, x->n * sizeof(*x->target)))
			return false;
	}
	for (uint32_t t = 0; t < a->ntargets; t++) {
		const struct wf_target *x = &a->targets[t], *y = &b->targets[t];

		if (x->id != y->id || x->node != y->node)
			return false;
		if (x->weight == y->weight && x->in == y->in && x->up == y->up)
			continue;
		if (*nchanged < max)
			changed[*nchanged] = t;
		if (*nchanged <= max)
			(*nchanged)++;
	}
	return true;
}

/* What a target's straw needs, as compile_pool derives it for a device. */
struct tdraw {
	uint64_t a, b, inv_w;
	uint32_t hash_id;
};

/* Per target index, under pl's weights (eligible targets only are read). */
static struct tdraw *tdraws(const struct wf_placer *pl)
{
	const struct wf_map *map = pl->map;
	struct tdraw *d = calloc(map->ntargets + 1, sizeof(*d));

	for (uint32_t t = 0; d && t < map->ntargets; t++) {
		uint32_t hid = map->nodes[map->targets[t].node].hash_id;

		d[t].hash_id = hid;
		d[t].a = mix64((uint64_t)hid * 0x9e3779b97f4a7c15ull + SALT_DEV);
		d[t].b = mix64(d[t].a ^ SALT_PG) | 1;
		d[t].inv_w = map->targets[t].weight ? (1ull << 48) / map->targets[t].weight : 0;
	}
	return d;
}

/* Straw of target t (constants d) in PG pg of pool pp (salt its salt). */
static struct straw straw_of(const struct wf_pl_pool *pp, uint32_t pg, uint32_t t,
			     const struct tdraw *d, uint64_t salt)
{
	struct straw s = { 0 };

	s.u = mum(salt ^ d->a, d->b);
	if (pp->algorithm == WF_ALGO_SPARSE) {
		const struct wf_pl_cand *c = pp->cand + pp->cand_off[pg];
		const struct wf_pl_cand *ce = pp->cand + pp->cand_off[pg + 1];

		s.u = mulhi(s.u, pp->sparse_thr);
		for (; c < ce; c++)
			if (pp->target[c->dev] == t)
				s.u = cand_u(pp, c);    /* its high draw */
	}
	s.inv_w = d->inv_w;
	s.hash_id = d->hash_id;
	return s;
}

/*
 * Whether a changed target c that is not a member of the PG's placed set
 * set[0..n) (all up, no override in force) joins it under pl: the set is
 * the greedy basis of a partition matroid over the straws, and only c's
 * straw changed, so c gets in exactly when it beats the member of its
 * failure domain, or, its domain not represented, the set is short or c
 * beats its last member.
 */
static bool joins(const struct wf_placer *pl, const struct tdraw *td, uint32_t p,
		  uint32_t pg, uint32_t c, const uint32_t *set, unsigned n)
{
	const struct wf_pl_pool *pp = &pl->pools[p];
	const uint32_t *fdn = &pl->fd_node[(size_t)p * pl->map->ntargets];
	uint64_t salt = pg_salt(pp->pool_id, pg);
	struct straw sc, sm;
	unsigned i;

	if (fdn[c] == WF_TARGET_NONE)
		return false;
	for (i = 0; i < n && fdn[set[i]] != fdn[c]; i++)
		;
	if (i == n && n < pp->replicas)
		return true;
	i = i == n ? n - 1 : i;
	sc = straw_of(pp, pg, c, &td[c], salt);
	sm = straw_of(pp, pg, set[i], &td[set[i]], salt);
	if (sc.inv_w == sm.inv_w)               /* same weight: the draw decides */
		return sc.u > sm.u || (sc.u == sm.u && sc.hash_id < sm.hash_id);
	sc.key = straw_key(nlog2(sc.u), sc.inv_w);
	sm.key = straw_key(nlog2(sm.u), sm.inv_w);
	return straw_better(&sc, &sm);
}

#define DERIVE_MAX_CHANGED 64

int wf_pg_table_derive(struct wf_pg_table *t, const struct wf_pg_table *prev,
		       const struct wf_placer *prev_pl, const struct wf_placer *pl,
		       struct wf_pg_derive *st)
{
	const struct wf_map *map = pl->map;
	uint32_t changed[DERIVE_MAX_CHANGED], nch;
	bool up_only[DERIVE_MAX_CHANGED], was_down = false;
	uint8_t *flag = NULL;
	struct tdraw *td = NULL;
	int32_t *ovi;
	int ret;

	memset(st, 0, sizeof(*st));
	if (prev->npools != pl->npools ||
	    !same_shape(prev_pl->map, map, changed, DERIVE_MAX_CHANGED, &nch) ||
	    nch > DERIVE_MAX_CHANGED) {
		st->full = true;
		return wf_pg_table_build(t, pl);
	}
	for (uint32_t i = 0; i < pl->npools; i++)
		if (prev->pools[i].pg_num != pl->pools[i].pg_num ||
		    prev->pools[i].stride != pl->pools[i].replicas) {
			st->full = true;
			return wf_pg_table_build(t, pl);
		}
	/* A target whose straw can only have improved needs the join test;
	 * a state change of up alone moves nothing. */
	for (uint32_t i = 0; i < nch; i++) {
		const struct wf_target *x = &prev_pl->map->targets[changed[i]];
		const struct wf_target *y = &map->targets[changed[i]];

		up_only[i] = x->weight == y->weight && x->in == y->in;
		was_down |= !x->up;
	}
	st->changed_targets = nch;
	td = tdraws(pl);
	if (!td)
		return -ENOMEM;
	ret = table_alloc(t, pl, &ovi);
	if (ret) {
		free(td);
		return ret;
	}
	for (uint32_t p = 0; p < pl->npools; p++) {
		const struct wf_pg_pool_table *pv = &prev->pools[p];
		struct wf_pg_pool_table *pt = &t->pools[p];
		const uint32_t *fd0 = &prev_pl->fd_node[(size_t)p * map->ntargets];
		const uint32_t *fd1 = &pl->fd_node[(size_t)p * map->ntargets];
		int32_t *tmi = ovi + pt->pg_num;
		size_t sz = (size_t)pt->pg_num * pt->stride * sizeof(*pt->acting);
		bool gain[DERIVE_MAX_CHANGED];

		memcpy(pt->acting, pv->acting, sz);
		memcpy(pt->up, pv->up, sz);
		memcpy(pt->n, pv->n, pt->pg_num);
		memcpy(pt->placed, pv->placed, pt->pg_num);
		memcpy(pt->nup, pv->nup, pt->pg_num);
		free(flag);
		flag = calloc(pt->pg_num, 1);
		if (!flag) {
			ret = -ENOMEM;
			goto out_free;
		}
		pool_index(pl, p, ovi, tmi);
		for (uint32_t i = 0; i < nch; i++) {
			const struct wf_target *x = &prev_pl->map->targets[changed[i]];
			uint32_t c = changed[i];
			uint64_t w0 = fd0[c] == WF_TARGET_NONE ? 0 : x->weight;
			uint64_t w1 = fd1[c] == WF_TARGET_NONE ? 0 : map->targets[c].weight;

			gain[i] = !up_only[i] && w1 > w0;
		}
		/* Overrides and pins naming a changed target: their validity
		 * (eligibility) or their up members may have changed. */
		for (uint32_t k = 0; k < map->noverrides + map->ntemps; k++) {
			const struct wf_override *ov = k < map->noverrides ? &map->overrides[k] :
						       &map->temps[k - map->noverrides];

			if (ov->pool != p || ov->pg >= pt->pg_num)
				continue;
			for (unsigned j = 0; j < ov->n; j++)
				for (uint32_t i = 0; i < nch; i++)
					if (map->targets[changed[i]].id == ov->target[j])
						flag[ov->pg] = 1;
		}
		for (uint32_t pg = 0; pg < pt->pg_num; pg++) {
			const uint32_t *u = &pv->up[(size_t)pg * pv->stride];
			unsigned nu = pv->nup[pg];
			/* A changed target that was down is not in the stored
			 * up set: any PG with a down member may hold it. */
			bool redo = flag[pg] || (was_down && pv->placed[pg] != nu);

			for (uint32_t i = 0; i < nch && !redo; i++)
				redo = wf_set_has(u, nu, changed[i]);
			/* Not a member anywhere: only a straw that improved can
			 * get in, and not into a PG an override decides. */
			for (uint32_t i = 0; i < nch && !redo && ovi[pg] < 0; i++)
				redo = gain[i] && joins(pl, td, p, pg, changed[i], u, nu);
			t->noverrides_used += ovi[pg] >= 0;
			t->ntemps_used += tmi[pg] >= 0;
			if (!redo)
				continue;
			fill_pg(pl, pt, p, pg, ovi[pg], tmi[pg]);
			st->recomputed++;
			st->changed += pt->n[pg] != pv->n[pg] || pt->nup[pg] != pv->nup[pg] ||
				       memcmp(&pt->up[(size_t)pg * pt->stride], u,
					      pt->stride * sizeof(*u)) ||
				       memcmp(&pt->acting[(size_t)pg * pt->stride],
					      &pv->acting[(size_t)pg * pt->stride],
					      pt->stride * sizeof(*u));
		}
		st->scanned += pt->pg_num;
	}
	free(td);
	free(flag);
	free(ovi);
	return 0;

out_free:
	free(td);
	free(flag);
	free(ovi);
	wf_pg_table_free(t);
	return ret;
}

void wf_pg_table_free(struct wf_pg_table *t)
{
	if (t->pools) {
		for (uint32_t p = 0; p < t->npools; p++) {
			free(t->pools[p].acting);
			free(t->pools[p].n);
			free(t->pools[p].placed);
			free(t->pools[p].up);
			free(t->pools[p].nup);
		}
	}
	free(t->pools);
	memset(t, 0, sizeof(*t));
}

int wf_place_extent(const struct wf_pg_table *t, const struct wf_map *map,
		    uint32_t vol, uint64_t offset, struct wf_extent_loc *loc)
{
	const struct wf_volume *v;

	if (vol >= map->nvolumes || map->extent_size == 0)
		return -EINVAL;
	v = &map->volumes[vol];
	if (v->pool >= t->npools)
		return -EINVAL;
	if (offset >= v->size)
		return -ERANGE;
	loc->extent = offset / map->extent_size;
	loc->pool = v->pool;
	loc->pg = wf_pg_of(v->id, loc->extent, t->pools[v->pool].pg_num);
	loc->n = wf_pg_acting(t, v->pool, loc->pg, &loc->acting);
	return 0;
}

/* ---- balance figures ---------------------------------------------------- */

int wf_pool_shares(const struct wf_placer *pl, uint32_t pool, double *share)
{
	const struct wf_map *map = pl->map;
	const struct wf_pl_pool *pp;
	double *fdw, *fds, total = 0;
	bool *capped;
	uint32_t nf;

	if (pool >= pl->npools)
		return -EINVAL;
	pp = &pl->pools[pool];
	nf = pp->nfds;
	for (uint32_t t = 0; t < map->ntargets; t++)
		share[t] = 0;
	if (nf == 0)
		return 0;
	fdw = calloc(nf, sizeof(*fdw));
	fds = calloc(nf, sizeof(*fds));
	capped = calloc(nf, sizeof(*capped));
	if (!fdw || !fds || !capped) {
		free(fdw);
		free(fds);
		free(capped);
		return -ENOMEM;
	}
	for (uint32_t r = 0; r < pp->nruns; r++) {
		fdw[pp->runs[r].fd] += (double)pp->runs[r].weight * pp->runs[r].n;
		total += (double)pp->runs[r].weight * pp->runs[r].n;
	}
	/*
	 * Water-fill: a failure domain holds at most one replica of each PG,
	 * i.e. at most 1/R of the pool's replicas; what a capped domain cannot
	 * take goes to the others in proportion to weight.
	 */
	if (nf <= pp->replicas) {
		for (uint32_t f = 0; f < nf; f++)
			fds[f] = 1.0 / nf;
	} else {
		double cap = 1.0 / pp->replicas, left = 1.0, wleft = total;
		bool again = true;

		while (again) {
			again = false;
			for (uint32_t f = 0; f < nf; f++) {
				if (capped[f])
					continue;
				fds[f] = left * fdw[f] / wleft;
				if (fds[f] > cap) {
					capped[f] = true;
					fds[f] = cap;
					left -= cap;
					wleft -= fdw[f];
					again = true;
					break;
				}
			}
		}
	}
	for (uint32_t r = 0; r < pp->nruns; r++) {
		const struct wf_pl_run *run = &pp->runs[r];

		for (uint32_t i = 0; i < run->n; i++)
			share[pp->target[run->first + i]] =
				fds[run->fd] * run->weight / fdw[run->fd];
	}
	free(fdw);
	free(fds);
	free(capped);
	return 0;
}

void wf_pg_counts(const struct wf_pg_table *t, uint32_t pool, uint32_t ntargets,
		  uint32_t *replicas, uint32_t *primaries)
{
	const struct wf_pg_pool_table *pt = &t->pools[pool];

	for (uint32_t i = 0; i < ntargets; i++) {
		if (replicas)
			replicas[i] = 0;
		if (primaries)
			primaries[i] = 0;
	}
	for (uint32_t pg = 0; pg < pt->pg_num; pg++) {
		const uint32_t *a = &pt->acting[(size_t)pg * pt->stride];

		for (unsigned i = 0; i < pt->n[pg]; i++) {
			if (a[i] >= ntargets)
				continue;
			if (replicas)
				replicas[a[i]]++;
			if (primaries && i == 0)
				primaries[a[i]]++;
		}
	}
}

void wf_load_stats(const double *load, const double *share, uint32_t n,
		   double *max_over_mean, double *cov)
{
	double total = 0, sum = 0, sq = 0, mx = 0;
	uint32_t k = 0;

	for (uint32_t i = 0; i < n; i++)
		total += load[i];
	for (uint32_t i = 0; i < n; i++) {
		double r;

		if (share[i] <= 0)
			continue;
		r = total > 0 ? load[i] / (share[i] * total) : 0;
		sum += r;
		sq += r * r;
		if (r > mx)
			mx = r;
		k++;
	}
	if (k == 0) {
		*max_over_mean = 0;
		*cov = 0;
		return;
	}
	*max_over_mean = mx;
	sum /= k;
	*cov = sum > 0 ? sqrt(fmax(sq / k - sum * sum, 0)) / sum : 0;
}

/* The ingest's idempotency key in compiled code: MD5(prefix || line) for every line of an
 * Arrow string array, with the GIL released.
 *
 * Why: in Python each line costs a bytes object, a concatenation and a hashlib call (about
 * 1.7 us a line, a sixth of the loader's time, bench/README.md "Where the loader's time
 * goes"); here it is the hash alone (0.5-0.7 us a line), and the COPY writer thread runs
 * meanwhile. MD5 (RFC 1321) is written out here rather than linked from OpenSSL so
 * that building needs nothing but a C compiler; logalyzer.core.md5lines falls back to hashlib
 * where the module was not built, and the tests check both give the same digests.
 *
 * Eight lines at a time where the CPU has AVX2 (x86-64; chosen when the module loads): MD5 is
 * a chain of dependent 32-bit steps, so one line keeps one core's ALUs a quarter busy, while
 * eight independent lines fill the eight 32-bit lanes of an AVX2 register (md5_lanes below:
 * 0.14 us a line against 0.59 for the scalar code on the ingest's lines, bench/README.md
 * "Eight lines at a time"). Elsewhere (other CPUs, other architectures) the scalar code runs.
 *
 * md5_lines(prefix: bytes, offsets: buffer of int32, data: buffer, first: int, n: int,
 *           lanes: int = -1) -> bytes
 *   offsets and data are an Arrow string array's buffers; the array's line i (0 <= i < n) is
 *   data[offsets[first + i] : offsets[first + i + 1]]. Returns 16 * n bytes. lanes: 0 the
 *   scalar code, 1 the AVX2 code (ValueError where the CPU lacks it), -1 the best there is.
 *
 * has_lanes() -> bool: whether this CPU runs the AVX2 code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_arrow_text.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

static uint32_t K[64];
static const uint8_t S[64] = {
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
};

typedef struct {
    uint32_t h[4];
    uint64_t length;   /* bytes hashed so far */
    uint8_t block[64]; /* the part of a block not yet hashed */
    size_t used;
} md5_ctx;

static inline uint32_t rotl(uint32_t x, unsigned s) { return (x << s) | (x >> (32 - s)); }

static void md5_block(uint32_t h[4], const uint8_t *p) {
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) % 16;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) % 16;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) % 16;
        }
        f += a + K[i] + m[g];
        a = d;
        d = c;
        c = b;
        b += rotl(f, S[i]);
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

static void md5_init(md5_ctx *ctx) {
    ctx->h[0] = 0x67452301u;
    ctx->h[1] = 0xefcdab89u;
    ctx->h[2] = 0x98badcfeu;
    ctx->h[3] = 0x10325476u;
    ctx->length = 0;
    ctx->used = 0;
}

static void md5_update(md5_ctx *ctx, const uint8_t *p, size_t len) {
    ctx->length += len;
    if (ctx->used) {
        size_t take = 64 - ctx->used < len ? 64 - ctx->used : len;
        memcpy(ctx->block + ctx->used, p, take);
        ctx->used += take;
        p += take;
        len -= take;
        if (ctx->used < 64) return;
        md5_block(ctx->h, ctx->block);
        ctx->used = 0;
    }
    for (; len >= 64; p += 64, len -= 64) md5_block(ctx->h, p);
    memcpy(ctx->block, p, len);
    ctx->used = len;
}

static void md5_final(md5_ctx *ctx, uint8_t out[16]) {
    uint64_t bits = ctx->length * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (ctx->used < 56 ? 56 : 120) - ctx->used;
    for (int i = 0; i < 8; i++) pad[padlen + i] = (uint8_t)(bits >> (8 * i));
    md5_update(ctx, pad, padlen + 8);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(ctx->h[i] >> (8 * j));
}

static void md5_scalar(const Py_buffer *prefix, const uint8_t *bytes, const int32_t *off,
                       Py_ssize_t n, uint8_t *out) {
    md5_ctx base, ctx;
    md5_init(&base);
    md5_update(&base, (const uint8_t *)prefix->buf, (size_t)prefix->len);
    for (Py_ssize_t i = 0; i < n; i++) {
        ctx = base;
        md5_update(&ctx, bytes + off[i], (size_t)(off[i + 1] - off[i]));
        md5_final(&ctx, out + 16 * i);
    }
}

/* ---------------------------------------------------------------- eight lines at a time */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_LANES 1

/* One lane's line: the message is prefix || line || 0x80 || zeros || bit length (LE). */
typedef struct {
    const uint8_t *line;
    size_t len;        /* bytes of the line (after the prefix) */
    size_t total;      /* bytes of prefix and line */
    size_t blocks;     /* 64-byte blocks of the padded message */
    size_t next;       /* the block to hash next */
    Py_ssize_t index;  /* the line's index in the output; -1: the lane is idle */
} lane_t;

/* Block k of a lane's padded message, written into buf unless it lies wholly inside the line,
 * where the line's own bytes are read in place. */
static const uint8_t *message_block(const uint8_t *prefix, size_t plen, const lane_t *ln,
                                    size_t k, uint8_t buf[64]) {
    size_t start = 64 * k, end = start + 64;
    if (start >= plen && end <= plen + ln->len) return ln->line + (start - plen);
    memset(buf, 0, 64);
    if (start < plen) memcpy(buf, prefix + start, (plen < end ? plen : end) - start);
    size_t lo = start > plen ? start : plen;
    size_t hi = end < plen + ln->len ? end : plen + ln->len;
    if (lo < hi) memcpy(buf + (lo - start), ln->line + (lo - plen), hi - lo);
    if (ln->total >= start && ln->total < end) buf[ln->total - start] = 0x80;
    if (k == ln->blocks - 1) {
        uint64_t bits = (uint64_t)ln->total * 8;
        for (int i = 0; i < 8; i++) buf[56 + i] = (uint8_t)(bits >> (8 * i));
    }
    return buf;
}

/* Give the lane line i (or make it idle past the last line). */
static void lane_take(lane_t *ln, const uint8_t *bytes, const int32_t *off, size_t plen,
                      Py_ssize_t i, Py_ssize_t n) {
    if (i >= n) {
        ln->index = -1;
        return;
    }
    ln->line = bytes + off[i];
    ln->len = (size_t)(off[i + 1] - off[i]);
    ln->total = plen + ln->len;
    ln->blocks = (ln->total + 8) / 64 + 1;
    ln->next = 0;
    ln->index = i;
}

#define V __m256i
#define ADD(x, y) _mm256_add_epi32(x, y)
#define ROTL8(x, s) _mm256_or_si256(_mm256_slli_epi32(x, s), _mm256_srli_epi32(x, 32 - (s)))
#define F8(x, y, z) _mm256_xor_si256(z, _mm256_and_si256(x, _mm256_xor_si256(y, z)))
#define G8(x, y, z) _mm256_xor_si256(y, _mm256_and_si256(z, _mm256_xor_si256(x, y)))
#define H8(x, y, z) _mm256_xor_si256(_mm256_xor_si256(x, y), z)
#define I8(x, y, z) _mm256_xor_si256(y, _mm256_or_si256(x, _mm256_xor_si256(z, ones)))
/* a = b + rotl(a + f(b, c, d) + m[g] + K[i], s): RFC 1321's step, eight lanes at once */
#define STEP8(f, a, b, c, d, g, i, s) \
    a = ADD(b, ROTL8(ADD(ADD(a, f(b, c, d)), ADD(m[g], _mm256_set1_epi32((int)K[i]))), s));
#define ROUND8(f, i, g0, g1, g2, g3, s0, s1, s2, s3) \
    STEP8(f, a, b, c, d, g0, i, s0)                  \
    STEP8(f, d, a, b, c, g1, i + 1, s1)              \
    STEP8(f, c, d, a, b, g2, i + 2, s2)              \
    STEP8(f, b, c, d, a, g3, i + 3, s3)

__attribute__((target("avx2"))) static void md5_lanes(const uint8_t *prefix, size_t plen,
                                                       const uint8_t *bytes, const int32_t *off,
                                                       Py_ssize_t n, uint8_t *out) {
    static const uint32_t iv[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
    lane_t lane[8];
    uint8_t buf[8][64] = {{0}}; /* an idle lane hashes zeros, and nobody reads its result */
    const uint8_t *blk[8];
    uint32_t h[4][8]; /* each lane's chaining value, one row per word */
    Py_ssize_t taken = 0;
    int busy = 0;
    for (int l = 0; l < 8; l++) {
        lane_take(&lane[l], bytes, off, plen, taken++, n);
        busy += lane[l].index >= 0;
        for (int w = 0; w < 4; w++) h[w][l] = iv[w];
    }
    const V ones = _mm256_set1_epi32(-1);
    while (busy) {
        for (int l = 0; l < 8; l++)
            blk[l] = lane[l].index < 0 ? buf[l]
                                       : message_block(prefix, plen, &lane[l], lane[l].next, buf[l]);
        V m[16];
        for (int w = 0; w < 16; w++) {
            uint32_t x[8];
            for (int l = 0; l < 8; l++) memcpy(&x[l], blk[l] + 4 * w, 4); /* little-endian */
            m[w] = _mm256_loadu_si256((const V *)x);
        }
        V a0 = _mm256_loadu_si256((const V *)h[0]), b0 = _mm256_loadu_si256((const V *)h[1]);
        V c0 = _mm256_loadu_si256((const V *)h[2]), d0 = _mm256_loadu_si256((const V *)h[3]);
        V a = a0, b = b0, c = c0, d = d0;
        ROUND8(F8, 0, 0, 1, 2, 3, 7, 12, 17, 22)
        ROUND8(F8, 4, 4, 5, 6, 7, 7, 12, 17, 22)
        ROUND8(F8, 8, 8, 9, 10, 11, 7, 12, 17, 22)
        ROUND8(F8, 12, 12, 13, 14, 15, 7, 12, 17, 22)
        ROUND8(G8, 16, 1, 6, 11, 0, 5, 9, 14, 20)
        ROUND8(G8, 20, 5, 10, 15, 4, 5, 9, 14, 20)
        ROUND8(G8, 24, 9, 14, 3, 8, 5, 9, 14, 20)
        ROUND8(G8, 28, 13, 2, 7, 12, 5, 9, 14, 20)
        ROUND8(H8, 32, 5, 8, 11, 14, 4, 11, 16, 23)
        ROUND8(H8, 36, 1, 4, 7, 10, 4, 11, 16, 23)
        ROUND8(H8, 40, 13, 0, 3, 6, 4, 11, 16, 23)
        ROUND8(H8, 44, 9, 12, 15, 2, 4, 11, 16, 23)
        ROUND8(I8, 48, 0, 7, 14, 5, 6, 10, 15, 21)
        ROUND8(I8, 52, 12, 3, 10, 1, 6, 10, 15, 21)
        ROUND8(I8, 56, 8, 15, 6, 13, 6, 10, 15, 21)
        ROUND8(I8, 60, 4, 11, 2, 9, 6, 10, 15, 21)
        _mm256_storeu_si256((V *)h[0], ADD(a, a0));
        _mm256_storeu_si256((V *)h[1], ADD(b, b0));
        _mm256_storeu_si256((V *)h[2], ADD(c, c0));
        _mm256_storeu_si256((V *)h[3], ADD(d, d0));
        for (int l = 0; l < 8; l++) {
            lane_t *ln = &lane[l];
            if (ln->index < 0 || ++ln->next < ln->blocks) continue;
            for (int w = 0; w < 4; w++) { /* the digest: the four words, little-endian */
                memcpy(out + 16 * ln->index + 4 * w, &h[w][l], 4);
                h[w][l] = iv[w];
            }
            lane_take(ln, bytes, off, plen, taken++, n);
            busy -= ln->index < 0;
        }
    }
}
#endif

static int LANES; /* whether this CPU runs md5_lanes: set when the module loads */

static int lanes_ok(void) {
#ifdef HAVE_LANES
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

static PyObject *md5_lines(PyObject *self, PyObject *args) {
    Py_buffer prefix, offsets, data;
    Py_ssize_t first, n;
    int lanes = -1;
    if (!PyArg_ParseTuple(args, "y*y*y*nn|i", &prefix, &offsets, &data, &first, &n, &lanes))
        return NULL;
    PyObject *result = NULL;
    if (lanes < 0) lanes = LANES;
    if (lanes && !LANES) {
        PyErr_SetString(PyExc_ValueError, "md5_lines: this CPU has no AVX2 lanes");
        goto done;
    }
    const int32_t *off = line_offsets(&offsets, &data, first, n);
    if (off == NULL) goto done;
    result = PyBytes_FromStringAndSize(NULL, 16 * n);
    if (result == NULL) goto done;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    const uint8_t *bytes = (const uint8_t *)data.buf;
    Py_BEGIN_ALLOW_THREADS
#ifdef HAVE_LANES
    if (lanes) md5_lanes((const uint8_t *)prefix.buf, (size_t)prefix.len, bytes, off, n, out);
    else
#endif
        md5_scalar(&prefix, bytes, off, n, out);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *has_lanes(PyObject *self, PyObject *unused) { return PyBool_FromLong(LANES); }

static PyMethodDef methods[] = {
    {"md5_lines", md5_lines, METH_VARARGS, "MD5(prefix || line) of each line, 16 bytes each."},
    {"has_lanes", has_lanes, METH_NOARGS, "Whether this CPU runs the eight-lane (AVX2) code."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_md5lines", NULL, -1, methods};

PyMODINIT_FUNC PyInit__md5lines(void) {
    for (int i = 0; i < 64; i++) K[i] = (uint32_t)floor(fabs(sin((double)(i + 1))) * 4294967296.0);
    LANES = lanes_ok();
    return PyModule_Create(&module);
}

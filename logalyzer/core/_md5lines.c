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
 * md5_lines(prefix: bytes, offsets: buffer of int32, data: buffer, first: int, n: int) -> bytes
 *   offsets and data are an Arrow string array's buffers; the array's line i (0 <= i < n) is
 *   data[offsets[first + i] : offsets[first + i + 1]]. Returns 16 * n bytes.
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

static PyObject *md5_lines(PyObject *self, PyObject *args) {
    Py_buffer prefix, offsets, data;
    Py_ssize_t first, n;
    if (!PyArg_ParseTuple(args, "y*y*y*nn", &prefix, &offsets, &data, &first, &n)) return NULL;
    PyObject *result = NULL;
    const int32_t *off = line_offsets(&offsets, &data, first, n);
    if (off == NULL) goto done;
    result = PyBytes_FromStringAndSize(NULL, 16 * n);
    if (result == NULL) goto done;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    const uint8_t *bytes = (const uint8_t *)data.buf;
    Py_BEGIN_ALLOW_THREADS
    md5_ctx base, ctx;
    md5_init(&base);
    md5_update(&base, (const uint8_t *)prefix.buf, (size_t)prefix.len);
    for (Py_ssize_t i = 0; i < n; i++) {
        ctx = base;
        md5_update(&ctx, bytes + off[i], (size_t)(off[i + 1] - off[i]));
        md5_final(&ctx, out + 16 * i);
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"md5_lines", md5_lines, METH_VARARGS, "MD5(prefix || line) of each line, 16 bytes each."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_md5lines", NULL, -1, methods};

PyMODINIT_FUNC PyInit__md5lines(void) {
    for (int i = 0; i < 64; i++) K[i] = (uint32_t)floor(fabs(sin((double)(i + 1))) * 4294967296.0);
    return PyModule_Create(&module);
}

/* PostgreSQL's binary COPY stream of an Arrow table, written in one pass over its buffers.
 *
 * Why: the numpy/Arrow encoder in logalyzer/store/pgbinary.py builds a field array per column
 * and joins them (about 1.8 us a line, a fifth of a loader's time, bench/README.md "Where the
 * loader's time goes"); here each row's fields are copied straight into the output, with the
 * GIL released so the loader's other thread runs meanwhile. pgbinary.py keeps the numpy path
 * for machines where this module was not built, and the tests check both give the same bytes.
 *
 * encode(n: int, columns: list[tuple]) -> bytes
 *   Each column is (kind, offset, validity, values, data): an Arrow array's buffers and offset
 *   (validity None = no nulls; data only for text). Row i of a column is its element
 *   offset + i. Returns the whole stream: signature, header, rows, trailer.
 *
 * The format: per row a 16-bit field count, then per field a 32-bit length (-1 = NULL) and the
 * value in network byte order; timestamps count microseconds from 2000-01-01; jsonb is a
 * version byte (1) before the JSON text.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { TEXT, JSONB, UUID, INT64, INT32, FLOAT64, BOOL, TIMESTAMP, NKINDS };
static const int WIDTH[NKINDS] = {0, 0, 16, 8, 4, 8, 1, 8};

static const char SIGNATURE[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
static const int64_t PG_EPOCH_US = 946684800000000LL; /* 2000-01-01 in Unix microseconds */

typedef struct {
    int kind;
    Py_ssize_t offset;
    Py_buffer validity, values, data; /* .buf NULL when not given */
} column;

static inline int is_valid(const column *c, Py_ssize_t i) {
    if (c->validity.buf == NULL) return 1;
    Py_ssize_t bit = c->offset + i;
    return (((const uint8_t *)c->validity.buf)[bit >> 3] >> (bit & 7)) & 1;
}

static inline uint8_t *put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
    return p + 4;
}

static inline uint8_t *put64(uint8_t *p, uint64_t v) {
    p = put32(p, (uint32_t)(v >> 32));
    return put32(p, (uint32_t)v);
}

/* Checks a column's buffers against n rows (before the GIL is released); NULL or a message. */
static const char *check(const column *c, Py_ssize_t n) {
    if (c->kind < 0 || c->kind >= NKINDS) return "unknown column kind";
    if (c->offset < 0) return "negative offset";
    Py_ssize_t end = c->offset + n;
    if (c->validity.buf != NULL && c->validity.len < (end + 7) / 8) return "validity too short";
    if (c->kind == BOOL) return c->values.len < (end + 7) / 8 ? "values too short" : NULL;
    if (c->kind != TEXT && c->kind != JSONB)
        return c->values.len < end * WIDTH[c->kind] ? "values too short" : NULL;
    if (c->values.len < (end + 1) * (Py_ssize_t)sizeof(int32_t)) return "offsets too short";
    const int32_t *off = (const int32_t *)c->values.buf;
    Py_ssize_t data_len = c->data.buf != NULL ? c->data.len : 0;
    for (Py_ssize_t i = c->offset; i < end; i++)
        if (off[i] < 0 || off[i + 1] < off[i] || off[i + 1] > data_len)
            return "text offsets out of order or outside the data";
    return NULL;
}

/* Bytes the column takes in the stream, lengths included. */
static Py_ssize_t column_size(const column *c, Py_ssize_t n) {
    Py_ssize_t size = 4 * n;
    const int32_t *off = (const int32_t *)c->values.buf + c->offset;
    int extra = c->kind == JSONB;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!is_valid(c, i)) continue;
        size += WIDTH[c->kind] ? WIDTH[c->kind] : off[i + 1] - off[i] + extra;
    }
    return size;
}

static uint8_t *put_field(uint8_t *p, const column *c, Py_ssize_t i) {
    if (!is_valid(c, i)) return put32(p, 0xFFFFFFFFu);
    Py_ssize_t j = c->offset + i;
    const uint8_t *v = (const uint8_t *)c->values.buf;
    switch (c->kind) {
    case TEXT:
    case JSONB: {
        const int32_t *off = (const int32_t *)v;
        uint32_t len = (uint32_t)(off[j + 1] - off[j]);
        p = put32(p, len + (c->kind == JSONB));
        if (c->kind == JSONB) *p++ = 1;
        if (len) memcpy(p, (const uint8_t *)c->data.buf + off[j], len);
        return p + len;
    }
    case UUID:
        p = put32(p, 16);
        memcpy(p, v + 16 * j, 16);
        return p + 16;
    case INT64:
    case FLOAT64: {
        uint64_t x;
        memcpy(&x, v + 8 * j, 8);
        return put64(put32(p, 8), x);
    }
    case TIMESTAMP: {
        int64_t us;
        memcpy(&us, v + 8 * j, 8);
        return put64(put32(p, 8), (uint64_t)(us - PG_EPOCH_US));
    }
    case INT32: {
        uint32_t x;
        memcpy(&x, v + 4 * j, 4);
        return put32(put32(p, 4), x);
    }
    default: /* BOOL */
        p = put32(p, 1);
        *p = (v[j >> 3] >> (j & 7)) & 1;
        return p + 1;
    }
}

static int get_buffer(PyObject *obj, Py_buffer *view) {
    if (obj == Py_None) {
        view->buf = NULL, view->len = 0, view->obj = NULL;
        return 0;
    }
    return PyObject_GetBuffer(obj, view, PyBUF_SIMPLE);
}

static void release(column *cols, Py_ssize_t k) {
    for (Py_ssize_t c = 0; c < k; c++) {
        if (cols[c].validity.obj) PyBuffer_Release(&cols[c].validity);
        if (cols[c].values.obj) PyBuffer_Release(&cols[c].values);
        if (cols[c].data.obj) PyBuffer_Release(&cols[c].data);
    }
    PyMem_Free(cols);
}

static PyObject *encode(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    PyObject *specs;
    if (!PyArg_ParseTuple(args, "nO!", &n, &PyList_Type, &specs)) return NULL;
    Py_ssize_t k = PyList_GET_SIZE(specs);
    if (n < 0 || k > 0x7FFF) {
        PyErr_SetString(PyExc_ValueError, "bad row or column count");
        return NULL;
    }
    column *cols = PyMem_Calloc(k ? k : 1, sizeof(column));
    if (cols == NULL) return PyErr_NoMemory();
    PyObject *result = NULL;
    Py_ssize_t got = 0;
    for (; got < k; got++) {
        column *c = &cols[got];
        PyObject *validity, *values, *data;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(specs, got), "inOOO", &c->kind, &c->offset,
                              &validity, &values, &data))
            goto done;
        if (get_buffer(validity, &c->validity) || get_buffer(values, &c->values) ||
            get_buffer(data, &c->data))
            goto done;
        const char *err = check(c, n);
        if (err != NULL) {
            PyErr_Format(PyExc_ValueError, "column %zd: %s", got, err);
            goto done;
        }
    }
    Py_ssize_t size = sizeof SIGNATURE + 2 * n + 2;
    for (Py_ssize_t c = 0; c < k; c++) size += column_size(&cols[c], n);
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) goto done;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    memcpy(p, SIGNATURE, sizeof SIGNATURE);
    p += sizeof SIGNATURE;
    for (Py_ssize_t i = 0; i < n; i++) {
        p[0] = (uint8_t)(k >> 8), p[1] = (uint8_t)k;
        p += 2;
        for (Py_ssize_t c = 0; c < k; c++) p = put_field(p, &cols[c], i);
    }
    p[0] = p[1] = 0xFF;
    Py_END_ALLOW_THREADS
done:
    release(cols, got < k ? got + 1 : k);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS, "An Arrow table's columns as one binary COPY stream."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pgcopy", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pgcopy(void) { return PyModule_Create(&module); }

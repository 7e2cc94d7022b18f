/* Shared by the core's C extensions (_headers.c, _md5lines.c): the lines of an Arrow string
 * array, given as its offsets and data buffers, checked before the GIL is released. */
#ifndef LOGALYZER_ARROW_TEXT_H
#define LOGALYZER_ARROW_TEXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* The offsets of lines first .. first + n (line i is data[off[i] : off[i + 1]]), or NULL with
 * ValueError set when the buffers do not hold them. */
static const int32_t *line_offsets(const Py_buffer *offsets, const Py_buffer *data,
                                   Py_ssize_t first, Py_ssize_t n) {
    if (first < 0 || n < 0 || (size_t)offsets->len < (size_t)(first + n + 1) * sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "offsets buffer too short for first + n lines");
        return NULL;
    }
    const int32_t *off = (const int32_t *)offsets->buf + first;
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (off[i] < 0 || off[i] > data->len || (i && off[i] < off[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "offsets out of order or outside the data");
            return NULL;
        }
    }
    return off;
}

#endif

/* The logcat headers (all but the kernel's) read in one pass in compiled code:
 *
 *   [YYYY-]MM-DD HH:MM:SS[.frac] [uid] pid tid L tag: message          (threadtime, year, uid)
 *   [YYYY-]MM-DD[T ]HH:MM:SS[.frac] zone [uid] pid tid L tag: message  (zone, iso)
 *   epoch[.frac] [uid] pid tid L tag: message                          (epoch)
 *   [YYYY-]MM-DD HH:MM:SS[.frac] pid-tid/package L/tag: message        (studio)
 *   [YYYY-]MM-DD HH:MM:SS[.frac] [zone] L/tag(pid): message            (time)
 *
 * Why: RE2 with a dozen capture groups costs about 3.3 us a line (the loader's largest step,
 * bench/README.md "Where the loader's time goes"), and nearly every line of a real box has one
 * of these headers (LOG_FORMAT.md section 2, variants 1-9). This scanner accepts exactly the
 * lines that logalyzer.core.parser's regular expressions (all but "kernel") accept *and*
 * whose "tag: message" split is plain; any other line is left to the regular expressions, so
 * leaving a line out is always safe (the property tests compare both ways on any text). No
 * two variants read one line differently, except a uid spelt like a zone (Z, UTC, GMT) after
 * whitespace, which is left to them too; "zone" and "iso" read the lines both accept alike.
 *
 * scan(offsets: buffer of int32, data: buffer, first: int, n: int) -> (ok, fields)
 *   offsets and data are an Arrow string array's buffers (line i is
 *   data[offsets[first + i] : offsets[first + i + 1]]). ok is n bytes, 1 where the line was
 *   read here. fields is a list of NFIELDS tuples (offsets, data, validity, null_count): Arrow
 *   string arrays over the lines read here, in order, in the order of _SCANNED in parser.py
 *   (yr, mo, dd, hms, frac, tz, epoch, uid, pid, tid, lvl, tag, msg); validity is None
 *   without nulls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_arrow_text.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { YR, MO, DD, HMS, FRAC, TZ, EPOCH, UID, PID, TID, LVL, TAG, MSG, NFIELDS };

typedef struct {
    int32_t start[NFIELDS], len[NFIELDS]; /* len -1: the group took no part (null) */
} spans;

static inline int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static inline int is_alpha_(uint8_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z' ? 1 : c == '_'; }
/* RE2's \s: [\t\n\f\r ] (no \v). */
static inline int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'; }

static inline int all_digits(const uint8_t *p, int32_t at, int32_t count) {
    for (int32_t k = 0; k < count; k++)
        if (!is_digit(p[at + k])) return 0;
    return 1;
}

/* The tag's end after Arrow's utf8_rtrim_whitespace, or -1 where a byte this scanner does not
 * decide (a control byte, a non-ASCII byte: Unicode whitespace) ends it: left to Arrow. */
static int32_t tag_end(const uint8_t *p, int32_t start, int32_t end) {
    while (end > start && p[end - 1] == ' ') end--;
    if (end > start && (p[end - 1] < 0x21 || p[end - 1] > 0x7e)) return -1;
    return end;
}

/* The length of the zone word (Z, UTC, GMT) at p[i], or 0: a uid spelt like one is also a
 * zone, so the lines where it could be either are left to the regular expressions. */
static int32_t zone_word(const uint8_t *p, int32_t i, int32_t len) {
    if (i < len && p[i] == 'Z') return 1;
    if (len - i >= 3 && (!memcmp(p + i, "UTC", 3) || !memcmp(p + i, "GMT", 3))) return 3;
    return 0;
}

/* The columns after the time: \s+[uid\s+]pid\s+tid\s+L\s+ from p[i]; returns where the rest
 * starts, or -1. A uid is [A-Za-z_][\w.]* or \d+, and not Z, UTC or GMT (a zone: left to RE2). */
static int32_t read_ids(const uint8_t *p, int32_t i, int32_t len, spans *s, int uid) {
    s->len[UID] = -1;
    for (int f = uid ? UID : PID; f <= TID; f++) {
        if (i >= len || !is_space(p[i])) return -1;
        while (i < len && is_space(p[i])) i++;
        int32_t j = i;
        if (f == UID && i < len && is_alpha_(p[i]))
            while (j < len && (is_alpha_(p[j]) || is_digit(p[j]) || p[j] == '.')) j++;
        else
            while (j < len && is_digit(p[j])) j++;
        if (j == i) return -1;
        if (f == UID && zone_word(p, i, len) == j - i) return -1;
        s->start[f] = i, s->len[f] = j - i;
        i = j;
    }
    if (i >= len || !is_space(p[i])) return -1;
    while (i < len && is_space(p[i])) i++;
    if (i >= len || p[i] == 0 || !strchr("VDIWEFAS", p[i])) return -1;
    s->start[LVL] = i, s->len[LVL] = 1;
    i++;
    if (i >= len || !is_space(p[i])) return -1; /* \s+(?P<rest>.*)$ */
    while (i < len && is_space(p[i])) i++;
    return i;
}

/* HH:MM:SS[[.,]\d{1,9}] at p[i]: fills HMS and FRAC; returns where it ends, or -1. The
 * fraction takes every digit (RE2 cannot end it earlier: what follows a time never starts with
 * a digit), so more than nine is no match. */
static int32_t read_time(const uint8_t *p, int32_t i, int32_t len, spans *s) {
    if (len - i < 8 || !all_digits(p, i, 2) || p[i + 2] != ':' || !all_digits(p, i + 3, 2) ||
        p[i + 5] != ':' || !all_digits(p, i + 6, 2))
        return -1;
    s->start[HMS] = i, s->len[HMS] = 8;
    i += 8;
    if (i + 1 < len && (p[i] == '.' || p[i] == ',') && is_digit(p[i + 1])) {
        int32_t j = i + 1;
        while (j < len && is_digit(p[j])) j++;
        if (j - i - 1 > 9) return -1;
        s->start[FRAC] = i + 1, s->len[FRAC] = j - i - 1;
        i = j;
    }
    return i;
}

/* Z|UTC|GMT|[+-]\d\d:?\d\d at p[i] (without the words if !words): fills TZ; returns where
 * it ends, or -1. */
static int32_t read_zone(const uint8_t *p, int32_t i, int32_t len, spans *s, int words) {
    int32_t n = words ? zone_word(p, i, len) : 0;
    if (n == 0 && len - i >= 5 && (p[i] == '+' || p[i] == '-') && all_digits(p, i + 1, 2)) {
        int32_t j = i + 3 + (p[i + 3] == ':');
        if (j + 2 <= len && all_digits(p, j, 2)) n = j + 2 - i;
    }
    if (n == 0) return -1;
    s->start[TZ] = i, s->len[TZ] = n;
    return i + n;
}

/* "tag: message" (or "tag:") from p[i] to the end: fills TAG and MSG; returns 1, or 0 where
 * the split is not plain (left to the regular expressions and the parser's slow path). */
static int read_rest(const uint8_t *p, int32_t i, int32_t len, spans *s) {
    const uint8_t *rest = p + i;
    int32_t rest_len = len - i;
    if (memchr(rest, '\n', (size_t)rest_len)) return 0; /* '.' stops at a newline */
    const uint8_t *colon = NULL;
    for (const uint8_t *q = rest; (q = memchr(q, ':', (size_t)(p + len - q))) != NULL; q++)
        if (q + 1 < p + len && q[1] == ' ') {
            colon = q;
            break;
        }
    int32_t end;
    if (colon != NULL) { /* tag: message, split on the first ": " */
        end = tag_end(p, i, (int32_t)(colon - p));
        s->start[MSG] = (int32_t)(colon - p) + 2, s->len[MSG] = len - s->start[MSG];
    } else if (rest_len > 0 && p[len - 1] == ':') { /* "tag:" with an empty message */
        end = tag_end(p, i, len - 1);
        s->start[MSG] = len, s->len[MSG] = 0;
    } else {
        return 0; /* no tag: not a logcat line after all (the parser's slow path says so) */
    }
    if (end < 0) return 0;
    s->start[TAG] = i, s->len[TAG] = end - i;
    return 1;
}

/* [uid] pid tid L rest, from p[i] (the regular expressions' optional uid: at most one of the
 * two readings can succeed, see read_ids). */
static int read_tail(const uint8_t *p, int32_t i, int32_t len, spans *s) {
    int32_t j = read_ids(p, i, len, s, 0);
    if (j < 0) j = read_ids(p, i, len, s, 1);
    return j >= 0 && read_rest(p, j, len, s);
}

static void clear(spans *s) {
    for (int f = 0; f < NFIELDS; f++) s->start[f] = 0, s->len[f] = -1;
}

/* \s*\d{9,}(\.\d+)? then the tail: the "epoch" variant. */
static int read_epoch(const uint8_t *p, int32_t len, spans *s) {
    int32_t i = 0;
    clear(s);
    while (i < len && is_space(p[i])) i++;
    int32_t j = i;
    while (j < len && is_digit(p[j])) j++;
    if (j - i < 9) return 0;
    if (j + 1 < len && p[j] == '.' && is_digit(p[j + 1])) {
        j++;
        while (j < len && is_digit(p[j])) j++;
    }
    s->start[EPOCH] = i, s->len[EPOCH] = j - i;
    return read_tail(p, j, len, s);
}

/* Clears s and fills [YYYY-]MM-DD (the month at p[md]); returns where the date ends. */
static int32_t begin(const uint8_t *p, int32_t md, spans *s) {
    clear(s);
    if (md) s->start[YR] = 0, s->len[YR] = 4;
    s->start[MO] = md, s->len[MO] = 2, s->start[DD] = md + 3, s->len[DD] = 2;
    return md + 5;
}

static int32_t skip_space(const uint8_t *p, int32_t i, int32_t len) {
    while (i < len && is_space(p[i])) i++;
    return i;
}

/* threadtime, year, uid: date, one space, time, whitespace, the ids. */
static int read_plain(const uint8_t *p, int32_t len, spans *s, int32_t md) {
    int32_t sep = begin(p, md, s);
    if (p[sep] != ' ') return 0;
    int32_t t = read_time(p, sep + 1, len, s);
    return t >= 0 && t < len && is_space(p[t]) && read_tail(p, t, len, s);
}

/* zone: date[T ]\s*time\s*zone; iso: YYYY-MM-DDTtime[\s*zone] (the same fields where both
 * read a line). */
static int read_zoned(const uint8_t *p, int32_t len, spans *s, int32_t md) {
    int32_t sep = begin(p, md, s);
    if (p[sep] != ' ' && p[sep] != 'T') return 0;
    int32_t at = skip_space(p, sep + 1, len), t = read_time(p, at, len, s);
    if (t < 0) return 0;
    int32_t z = skip_space(p, t, len);
    if (z > t && zone_word(p, z, len)) return 0; /* also a uid after whitespace */
    int32_t after = read_zone(p, z, len, s, 1);
    if (after < 0) { /* no zone: iso alone, "T" right before the time and a year */
        if (!(p[sep] == 'T' && at == sep + 1 && md)) return 0;
        after = t;
    }
    return read_tail(p, after, len, s);
}

/* date\s+time\s+ (studio, time): returns where what follows begins, or -1. */
static int32_t spaced_time(const uint8_t *p, int32_t len, spans *s, int32_t md) {
    int32_t sep = begin(p, md, s);
    if (!is_space(p[sep])) return -1;
    int32_t i = read_time(p, skip_space(p, sep, len), len, s);
    if (i < 0 || i >= len || !is_space(p[i])) return -1;
    return skip_space(p, i, len);
}

/* "L/" at p[i] (studio, time): fills LVL; returns 1, or 0. */
static int level_slash(const uint8_t *p, int32_t i, int32_t len, spans *s) {
    if (len - i < 2 || p[i] == 0 || !strchr("VDIWEFAS", p[i]) || p[i + 1] != '/') return 0;
    s->start[LVL] = i, s->len[LVL] = 1;
    return 1;
}

/* studio (Android Studio's export): date\s+time\s+pid-tid/package\s+L/rest. */
static int read_studio(const uint8_t *p, int32_t len, spans *s, int32_t md) {
    int32_t i = spaced_time(p, len, s, md);
    if (i < 0) return 0;
    for (int f = PID; f <= TID; f++) {
        int32_t j = i;
        while (j < len && is_digit(p[j])) j++;
        if (j == i || j >= len || p[j] != (f == PID ? '-' : '/')) return 0;
        s->start[f] = i, s->len[f] = j - i;
        i = j + 1;
    }
    while (i < len && !is_space(p[i])) i++; /* \S*: the package */
    if (i >= len) return 0;
    i = skip_space(p, i, len);
    return level_slash(p, i, len, s) && read_rest(p, i + 2, len, s);
}

/* time (logcat -v time): date\s+time[\s+zone]\s+L/tag\s*(\s*pid): message, the tag the
 * shortest text before a "(pid)" that a ": message" (or ":" at the end) follows. */
static int read_time_variant(const uint8_t *p, int32_t len, spans *s, int32_t md) {
    int32_t i = spaced_time(p, len, s, md);
    if (i < 0) return 0;
    int32_t z = read_zone(p, i, len, s, 0);
    if (z >= 0) {
        if (z >= len || !is_space(p[z])) return 0;
        i = skip_space(p, z, len);
    }
    if (!level_slash(p, i, len, s)) return 0;
    int32_t tag = i + 2;
    if (memchr(p + tag, '\n', (size_t)(len - tag))) return 0; /* '.' stops at a newline */
    for (int32_t k = tag; k < len; k++) {
        if (!is_space(p[k]) && p[k] != '(') continue;
        int32_t j = skip_space(p, k, len);
        if (j >= len || p[j] != '(') continue;
        j = skip_space(p, j + 1, len);
        int32_t d = j;
        while (j < len && is_digit(p[j])) j++;
        if (j == d || j + 1 >= len || p[j] != ')' || p[j + 1] != ':') continue;
        if (j + 2 == len) /* ":" at the end: no message (the group takes no part) */
            s->start[MSG] = len, s->len[MSG] = 0;
        else if (p[j + 2] == ' ')
            s->start[MSG] = j + 3, s->len[MSG] = len - j - 3;
        else
            continue;
        s->start[PID] = d, s->len[PID] = j - d;
        s->start[TAG] = tag, s->len[TAG] = k - tag;
        return 1;
    }
    return 0;
}

/* Reads line p[0:len]; fills s (positions relative to p) and returns 1, or returns 0. */
static int read_line(const uint8_t *p, int32_t len, spans *s) {
    if (len >= 1 && (is_space(p[0]) || (len >= 9 && all_digits(p, 0, 9))))
        return read_epoch(p, len, s);
    int32_t md = len >= 5 && all_digits(p, 0, 4) && p[4] == '-' ? 5 : 0;
    if (len - md < 6 || !all_digits(p, md, 2) || p[md + 2] != '-' || !all_digits(p, md + 3, 2))
        return 0;
    /* At most one of these reads a line (the module's comment): the first that does wins. */
    return read_plain(p, len, s, md) || read_zoned(p, len, s, md) ||
           read_studio(p, len, s, md) || read_time_variant(p, len, s, md);
}

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer offsets, data;
    Py_ssize_t first, n;
    if (!PyArg_ParseTuple(args, "y*y*nn", &offsets, &data, &first, &n)) return NULL;
    PyObject *result = NULL, *ok = NULL, *fields = NULL;
    spans *sp = NULL;
    const int32_t *off = line_offsets(&offsets, &data, first, n);
    if (off == NULL) goto done;
    ok = PyBytes_FromStringAndSize(NULL, n);
    sp = PyMem_Malloc((n ? n : 1) * sizeof(spans));
    if (ok == NULL || sp == NULL) {
        if (sp == NULL) PyErr_NoMemory();
        goto done;
    }
    uint8_t *okp = (uint8_t *)PyBytes_AS_STRING(ok);
    const uint8_t *bytes = (const uint8_t *)data.buf;
    Py_ssize_t m = 0, total[NFIELDS] = {0}, nulls[NFIELDS] = {0};
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        okp[i] = (uint8_t)read_line(bytes + off[i], off[i + 1] - off[i], &sp[m]);
        if (!okp[i]) continue;
        for (int f = 0; f < NFIELDS; f++) {
            if (sp[m].len[f] < 0) nulls[f]++;
            else total[f] += sp[m].len[f];
        }
        for (int f = 0; f < NFIELDS; f++) sp[m].start[f] += off[i]; /* into the data */
        m++;
    }
    Py_END_ALLOW_THREADS
    fields = PyList_New(NFIELDS);
    if (fields == NULL) goto done;
    for (int f = 0; f < NFIELDS; f++) {
        PyObject *o = PyBytes_FromStringAndSize(NULL, (m + 1) * sizeof(int32_t));
        PyObject *d = PyBytes_FromStringAndSize(NULL, total[f]);
        PyObject *v = nulls[f] ? PyBytes_FromStringAndSize(NULL, (m + 7) / 8) : Py_NewRef(Py_None);
        if (o == NULL || d == NULL || v == NULL) {
            Py_XDECREF(o), Py_XDECREF(d), Py_XDECREF(v);
            goto done;
        }
        int32_t *op = (int32_t *)PyBytes_AS_STRING(o);
        uint8_t *dp = (uint8_t *)PyBytes_AS_STRING(d);
        uint8_t *vp = v != Py_None ? (uint8_t *)PyBytes_AS_STRING(v) : NULL;
        Py_BEGIN_ALLOW_THREADS
        if (vp) memset(vp, 0, (size_t)(m + 7) / 8);
        int32_t at = 0;
        for (Py_ssize_t k = 0; k < m; k++) {
            op[k] = at;
            int32_t len = sp[k].len[f];
            if (len < 0) continue;
            if (vp) vp[k >> 3] |= (uint8_t)(1u << (k & 7));
            memcpy(dp + at, bytes + sp[k].start[f], (size_t)len);
            at += len;
        }
        op[m] = at;
        Py_END_ALLOW_THREADS
        PyList_SET_ITEM(fields, f, Py_BuildValue("NNNn", o, d, v, nulls[f]));
        if (PyList_GET_ITEM(fields, f) == NULL) goto done;
    }
    result = Py_BuildValue("OO", ok, fields);
done:
    Py_XDECREF(ok);
    Py_XDECREF(fields);
    PyMem_Free(sp);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "The common logcat header of each line, read where plain."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_headers", NULL, -1, methods};

PyMODINIT_FUNC PyInit__headers(void) { return PyModule_Create(&module); }

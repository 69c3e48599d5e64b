/* The common part of Perl Storable in C: an optional accelerator of pyramid_kvs.storable.
 *
 * thaw(data, max_depth) reads blobs made of plain values: strings, numbers, undef,
 * booleans, arrays, hashes, references to arrays and hashes, and back-references to
 * them.  freeze(obj, netorder, max_depth) writes the plain Python data that the
 * pure-Python writer writes with its fast loop: exact dict, list, tuple, str, bytes,
 * int, float, bool and None.  Both produce exactly what pyramid_kvs.storable's Python
 * code produces for the same input.
 *
 * Anything else - another opcode or type, a malformed or truncated blob, a limit
 * reached, a back-reference the Python reader would box - makes them return
 * NotImplemented, and pyramid_kvs.storable does the whole job in Python.  So this
 * file never reports an error itself: the Python code owns every error message, the
 * rare Perl types and the limits, and the C code only has to be exact and safe for
 * what it accepts.  Every read is checked against the end of the input before it
 * happens, every count against the remaining input before anything is allocated,
 * and the recursion is bounded by max_depth and by C_DEPTH_CAP.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum {
    SX_OBJECT = 0,
    SX_LSCALAR = 1,
    SX_ARRAY = 2,
    SX_HASH = 3,
    SX_REF = 4,
    SX_UNDEF = 5,
    SX_INTEGER = 6,
    SX_DOUBLE = 7,
    SX_BYTE = 8,
    SX_NETINT = 9,
    SX_SCALAR = 10,
    SX_SV_UNDEF = 14,
    SX_SV_YES = 15,
    SX_SV_NO = 16,
    SX_UTF8STR = 23,
    SX_LUTF8STR = 24,
    SX_FLAG_HASH = 25,
    SX_SVUNDEF_ELEM = 31,
    SX_BOOLEAN_TRUE = 34,
    SX_BOOLEAN_FALSE = 35,
};

#define SHV_K_UTF8 0x01
#define SHV_K_WASUTF8 0x02
#define SHV_K_ISSV 0x08
#define SHV_K_PLACEHOLDER 0x10

#define MAX_MINOR 12
#define WRITE_MINOR 11
/* Deeper data is left to Python, whatever max_depth says: the C stack is finite. */
#define C_DEPTH_CAP 1000

/* ------------------------------------------------------------------------ */
/* Reader                                                                   */

/* A session repeats the same few hash keys: each plain key decoded is kept, by its
   bytes in the input, in a small direct-mapped table. */
#define KEY_SLOTS 256

typedef struct {
    const unsigned char *raw; /* in the input, which outlives the table */
    Py_ssize_t len;
    PyObject *key;
} KeySlot;

typedef struct {
    const unsigned char *data;
    Py_ssize_t pos;
    Py_ssize_t end;
    int netorder;
    int ivsize;          /* 8 or 4: native integers */
    long max_depth;
    PyObject *seen;      /* list: the value of every tag, in order */
    char *is_ref;        /* is_ref[tag]: that tag is a reference */
    Py_ssize_t is_ref_size;
    PyObject *pending;   /* seen[tag] of a reference whose target is being read */
    KeySlot keys[KEY_SLOTS];
} Reader;

static uint32_t
get_u32(const Reader *r, Py_ssize_t at)
{
    const unsigned char *p = r->data + at;
    if (r->netorder) {
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    }
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

static uint64_t
get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Room for n more bytes? */
#define HAVE(r, n) ((r)->end - (r)->pos >= (Py_ssize_t)(n))

/* Append v (borrowed) to the tags; 0 on success. */
static int
remember(Reader *r, PyObject *v)
{
    return PyList_Append(r->seen, v);
}

/* Whether s is what Python's strict UTF-8 decoder accepts (no surrogates, no
   overlong forms, nothing above U+10FFFF): checked first, because Latin-1 byte
   strings are common in Perl data and a failed decode costs an exception. */
static int
valid_utf8(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int more;
        unsigned char low = 0x80, high = 0xBF; /* range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            if (c == 0xE0) {
                low = 0xA0;
            }
            else if (c == 0xED) {
                high = 0x9F;
            }
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            if (c == 0xF0) {
                low = 0x90;
            }
            else if (c == 0xF4) {
                high = 0x8F;
            }
        }
        else {
            return 0;
        }
        if (n - i <= more || s[i + 1] < low || s[i + 1] > high) {
            return 0;
        }
        for (int k = 2; k <= more; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) {
                return 0;
            }
        }
        i += more + 1;
    }
    return 1;
}

/* An unflagged string, as text="auto" reads it: str if valid UTF-8, else bytes. */
static PyObject *
auto_text(const unsigned char *s, Py_ssize_t n)
{
    if (valid_utf8(s, n)) {
        return PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    }
    return PyBytes_FromStringAndSize((const char *)s, n);
}

static PyObject *read_value(Reader *r, long depth);

/* The tag of a reference is known before its target is read; mark it. */
static int
mark_ref(Reader *r, Py_ssize_t tag)
{
    if (tag >= r->is_ref_size) {
        Py_ssize_t size = r->is_ref_size ? r->is_ref_size : 64;
        while (size <= tag) {
            size *= 2;
        }
        char *grown = PyMem_Realloc(r->is_ref, (size_t)size);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memset(grown + r->is_ref_size, 0, (size_t)(size - r->is_ref_size));
        r->is_ref = grown;
        r->is_ref_size = size;
    }
    r->is_ref[tag] = 1;
    return 0;
}

static int
is_ref(const Reader *r, Py_ssize_t tag)
{
    return tag < r->is_ref_size && r->is_ref[tag];
}

/* A string's bytes: n bytes at the cursor, or NULL when the input is too short. */
static const unsigned char *
take(Reader *r, Py_ssize_t n)
{
    if (n < 0 || !HAVE(r, n)) {
        return NULL;
    }
    const unsigned char *s = r->data + r->pos;
    r->pos += n;
    return s;
}

/* A container's item count, checked against the input left (each item takes at
   least item_size bytes) before anything is allocated, and against max_depth. */
static int
read_count(Reader *r, long depth, int item_size, int32_t *count)
{
    if (!HAVE(r, 4)) {
        return -1;
    }
    int32_t n = (int32_t)get_u32(r, r->pos);
    r->pos += 4;
    if (n < 0 || (int64_t)n * item_size > (int64_t)(r->end - r->pos) ||
        (n > 0 && depth + 1 > r->max_depth)) {
        return -1;
    }
    *count = n;
    return 0;
}

static PyObject *
read_array(Reader *r, long depth)
{
    int32_t n;
    if (read_count(r, depth, 1, &n) < 0) {
        return NULL;
    }
    PyObject *list = PyList_New(n);
    if (list == NULL || remember(r, list) < 0) {
        Py_XDECREF(list);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = read_value(r, depth + 1);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* The key after a hash value; *skip is set for a restricted hash's placeholder. */
static PyObject *
read_key(Reader *r, int flagged, int *skip)
{
    int kflags = 0;
    *skip = 0;
    if (flagged) {
        if (!HAVE(r, 1)) {
            return NULL;
        }
        kflags = r->data[r->pos++];
        if (kflags & SHV_K_ISSV) {
            return NULL;
        }
    }
    if (!HAVE(r, 4)) {
        return NULL;
    }
    uint32_t n = get_u32(r, r->pos);
    r->pos += 4;
    if ((uint64_t)n > (uint64_t)(r->end - r->pos)) {
        return NULL;
    }
    const unsigned char *s = take(r, (Py_ssize_t)n);
    if (kflags & SHV_K_PLACEHOLDER) {
        *skip = 1;
        return NULL;
    }
    PyObject *key;
    if (kflags & SHV_K_UTF8) {
        key = PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)n, "surrogatepass");
    }
    else if (kflags & SHV_K_WASUTF8) {
        key = PyUnicode_DecodeLatin1((const char *)s, (Py_ssize_t)n, NULL);
    }
    else {
        uint32_t h = 2166136261u; /* FNV-1a */
        for (uint32_t k = 0; k < n; k++) {
            h = (h ^ s[k]) * 16777619u;
        }
        KeySlot *slot = &r->keys[h % KEY_SLOTS];
        if (slot->key != NULL && slot->len == (Py_ssize_t)n && memcmp(slot->raw, s, n) == 0) {
            Py_INCREF(slot->key);
            return slot->key;
        }
        key = auto_text(s, (Py_ssize_t)n);
        if (key != NULL) {
            Py_XSETREF(slot->key, Py_NewRef(key));
            slot->raw = s;
            slot->len = (Py_ssize_t)n;
        }
    }
    return key;
}

static PyObject *
read_hash(Reader *r, long depth, int flagged)
{
    if (flagged) {
        if (!HAVE(r, 1)) {
            return NULL;
        }
        r->pos++; /* hash flags: only "restricted" */
    }
    int32_t n;
    if (read_count(r, depth, flagged ? 6 : 5, &n) < 0) {
        return NULL;
    }
    PyObject *dict = PyDict_New();
    if (dict == NULL || remember(r, dict) < 0) {
        Py_XDECREF(dict);
        return NULL;
    }
    for (int32_t i = 0; i < n; i++) {
        PyObject *value = read_value(r, depth + 1);
        if (value == NULL) {
            Py_DECREF(dict);
            return NULL;
        }
        int skip;
        PyObject *key = read_key(r, flagged, &skip);
        if (key == NULL) {
            Py_DECREF(value);
            if (skip) {
                continue;
            }
            Py_DECREF(dict);
            return NULL;
        }
        int failed = PyDict_SetItem(dict, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (failed) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

/* SX_REF: accepted when it refers to an array or a hash, read here or earlier. */
static PyObject *
read_ref(Reader *r, long depth)
{
    if (!HAVE(r, 1) || depth + 1 > r->max_depth) {
        return NULL;
    }
    Py_ssize_t tag = PyList_GET_SIZE(r->seen);
    if (remember(r, r->pending) < 0 || mark_ref(r, tag) < 0) {
        return NULL;
    }
    int op = r->data[r->pos];
    PyObject *target;
    if (op == SX_ARRAY || op == SX_HASH || op == SX_FLAG_HASH) {
        target = read_value(r, depth + 1);
        if (target == NULL) {
            return NULL;
        }
    }
    else if (op == SX_OBJECT) {
        /* a second reference to a container: not to a reference, nor to a
           container still being read (Python gives those a PerlRef) */
        if (!HAVE(r, 5)) {
            return NULL;
        }
        Py_ssize_t target_tag = (Py_ssize_t)(((uint32_t)r->data[r->pos + 1] << 24) |
                                             ((uint32_t)r->data[r->pos + 2] << 16) |
                                             ((uint32_t)r->data[r->pos + 3] << 8) |
                                             r->data[r->pos + 4]);
        if (target_tag >= PyList_GET_SIZE(r->seen) || is_ref(r, target_tag)) {
            return NULL;
        }
        target = PyList_GET_ITEM(r->seen, target_tag);
        if (target == r->pending || (!PyDict_CheckExact(target) && !PyList_CheckExact(target))) {
            return NULL;
        }
        Py_INCREF(target);
        r->pos += 5;
    }
    else {
        return NULL;
    }
    if (PyList_GET_ITEM(r->seen, tag) != r->pending) {
        Py_DECREF(target); /* cannot happen: a back-reference to it was refused */
        return NULL;
    }
    Py_INCREF(target);
    PyList_SetItem(r->seen, tag, target); /* steals the new reference */
    return target;
}

static PyObject *
read_string(Reader *r, Py_ssize_t n, int utf8)
{
    const unsigned char *s = take(r, n);
    if (s == NULL) {
        return NULL;
    }
    PyObject *v = utf8 ? PyUnicode_DecodeUTF8((const char *)s, n, "surrogatepass")
                       : auto_text(s, n);
    if (v != NULL && remember(r, v) < 0) {
        Py_CLEAR(v);
    }
    return v;
}

static PyObject *
registered(Reader *r, PyObject *v)
{
    if (v != NULL && remember(r, v) < 0) {
        Py_CLEAR(v);
    }
    return v;
}

/* One SV at the cursor: a new reference, or NULL to leave the blob to Python. */
static PyObject *
read_value(Reader *r, long depth)
{
    if (!HAVE(r, 1) || depth > C_DEPTH_CAP) {
        return NULL;
    }
    int op = r->data[r->pos++];
    switch (op) {
    case SX_SCALAR:
    case SX_UTF8STR:
        if (!HAVE(r, 1)) {
            return NULL;
        }
        return read_string(r, r->data[r->pos++], op == SX_UTF8STR);
    case SX_LSCALAR:
    case SX_LUTF8STR: {
        if (!HAVE(r, 4)) {
            return NULL;
        }
        uint32_t n = get_u32(r, r->pos);
        r->pos += 4;
        if ((uint64_t)n > (uint64_t)(r->end - r->pos)) {
            return NULL;
        }
        return read_string(r, (Py_ssize_t)n, op == SX_LUTF8STR);
    }
    case SX_BYTE:
        if (!HAVE(r, 1)) {
            return NULL;
        }
        return registered(r, PyLong_FromLong((long)r->data[r->pos++] - 128));
    case SX_NETINT: {
        if (!HAVE(r, 4)) {
            return NULL;
        }
        const unsigned char *p = r->data + r->pos;
        uint32_t u = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
        r->pos += 4;
        return registered(r, PyLong_FromLong((long)(int32_t)u));
    }
    case SX_INTEGER: {
        if (r->netorder || !HAVE(r, r->ivsize)) {
            return NULL;
        }
        const unsigned char *p = r->data + r->pos;
        long long v;
        if (r->ivsize == 8) {
            v = (long long)(int64_t)get_le64(p);
        }
        else {
            v = (int32_t)get_u32(r, r->pos);
        }
        r->pos += r->ivsize;
        return registered(r, PyLong_FromLongLong(v));
    }
    case SX_DOUBLE: {
        if (r->netorder || !HAVE(r, 8)) {
            return NULL;
        }
        uint64_t bits = get_le64(r->data + r->pos);
        double x;
        memcpy(&x, &bits, sizeof x);
        r->pos += 8;
        return registered(r, PyFloat_FromDouble(x));
    }
    case SX_UNDEF:
    case SX_SV_UNDEF:
    case SX_SVUNDEF_ELEM:
        Py_INCREF(Py_None);
        return registered(r, Py_None);
    case SX_SV_YES:
    case SX_BOOLEAN_TRUE:
        Py_INCREF(Py_True);
        return registered(r, Py_True);
    case SX_SV_NO:
    case SX_BOOLEAN_FALSE:
        Py_INCREF(Py_False);
        return registered(r, Py_False);
    case SX_ARRAY:
        return read_array(r, depth);
    case SX_HASH:
    case SX_FLAG_HASH:
        return read_hash(r, depth, op == SX_FLAG_HASH);
    case SX_REF:
        return read_ref(r, depth);
    case SX_OBJECT: {
        if (!HAVE(r, 4)) {
            return NULL;
        }
        const unsigned char *p = r->data + r->pos;
        Py_ssize_t tag =
            (Py_ssize_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
        r->pos += 4;
        if (tag >= PyList_GET_SIZE(r->seen)) {
            return NULL;
        }
        PyObject *v = PyList_GET_ITEM(r->seen, tag);
        if (v == r->pending) {
            return NULL;
        }
        Py_INCREF(v);
        return v;
    }
    default:
        return NULL;
    }
}

/* The header: 0 and the cursor after it, or -1 for a kind of blob left to Python. */
static int
read_header(Reader *r)
{
    if (r->end >= 4 && memcmp(r->data, "pst0", 4) == 0) {
        r->pos = 4;
    }
    if (!HAVE(r, 2)) {
        return -1;
    }
    int flag = r->data[r->pos];
    int minor = r->data[r->pos + 1];
    r->pos += 2;
    if ((flag >> 1) != 2 || minor > MAX_MINOR) {
        return -1;
    }
    r->netorder = flag & 1;
    if (r->netorder) {
        return 0;
    }
    /* native order: little-endian with 4-byte ints and 8-byte doubles only */
    if (!HAVE(r, 1)) {
        return -1;
    }
    int n = r->data[r->pos++];
    int extra = minor >= 2 ? 4 : 3;
    if (!HAVE(r, n + extra)) {
        return -1;
    }
    const unsigned char *order = r->data + r->pos;
    if (n == 8 && memcmp(order, "12345678", 8) == 0) {
        r->ivsize = 8;
    }
    else if (n == 4 && memcmp(order, "1234", 4) == 0) {
        r->ivsize = 4;
    }
    else {
        return -1;
    }
    const unsigned char *sizes = order + n;
    if (sizes[0] != 4 || (extra == 4 && sizes[3] != 8)) {
        return -1;
    }
    r->pos += n + extra;
    return 0;
}

/* max_depth as a C long; 0 for a value left to Python (not an int, or huge) */
static int
depth_limit(PyObject *obj, long *limit)
{
    int overflow;
    if (!PyLong_CheckExact(obj)) {
        return 0;
    }
    *limit = PyLong_AsLongAndOverflow(obj, &overflow);
    if (overflow > 0) {
        *limit = C_DEPTH_CAP + 1; /* the cap applies first */
    }
    return overflow >= 0 && !PyErr_Occurred();
}

static PyObject *
thaw(PyObject *module, PyObject *args)
{
    Py_buffer view;
    PyObject *depth_arg;
    long max_depth;
    if (!PyArg_ParseTuple(args, "y*O:thaw", &view, &depth_arg)) {
        return NULL;
    }
    if (!depth_limit(depth_arg, &max_depth)) {
        PyErr_Clear();
        PyBuffer_Release(&view);
        Py_RETURN_NOTIMPLEMENTED;
    }
    Reader r = {0};
    r.data = view.buf;
    r.end = view.len;
    r.max_depth = max_depth;
    r.seen = PyList_New(0);
    r.pending = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type); /* a private marker */
    PyObject *value = NULL;
    if (r.seen != NULL && r.pending != NULL && read_header(&r) == 0) {
        value = read_value(&r, 0);
        if (value != NULL && r.pos != r.end) {
            Py_CLEAR(value); /* trailing bytes */
        }
    }
    Py_XDECREF(r.seen);
    Py_XDECREF(r.pending);
    PyMem_Free(r.is_ref);
    for (int i = 0; i < KEY_SLOTS; i++) {
        Py_XDECREF(r.keys[i].key);
    }
    PyBuffer_Release(&view);
    if (value == NULL) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    return value;
}

/* ------------------------------------------------------------------------ */
/* Writer                                                                   */

typedef struct {
    char *buf;
    Py_ssize_t len;
    Py_ssize_t cap;
    int netorder;
    long max_depth;
    Py_ssize_t tag;
    PyObject *tags; /* dict: id of a container -> its tag */
    PyObject *keep; /* list: the containers, alive while their ids are keys */
} Writer;

static int
reserve(Writer *w, Py_ssize_t n)
{
    if (w->cap - w->len >= n) {
        return 0;
    }
    Py_ssize_t cap = w->cap ? w->cap : 1024;
    while (cap - w->len < n) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *grown = PyMem_Realloc(w->buf, (size_t)cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->buf = grown;
    w->cap = cap;
    return 0;
}

static int
put_byte(Writer *w, int b)
{
    if (reserve(w, 1) < 0) {
        return -1;
    }
    w->buf[w->len++] = (char)b;
    return 0;
}

/* a 4-byte number in the blob's byte order */
static int
put_i32(Writer *w, uint32_t v)
{
    if (reserve(w, 4) < 0) {
        return -1;
    }
    unsigned char *p = (unsigned char *)w->buf + w->len;
    if (w->netorder) {
        p[0] = (unsigned char)(v >> 24);
        p[1] = (unsigned char)(v >> 16);
        p[2] = (unsigned char)(v >> 8);
        p[3] = (unsigned char)v;
    }
    else {
        p[0] = (unsigned char)v;
        p[1] = (unsigned char)(v >> 8);
        p[2] = (unsigned char)(v >> 16);
        p[3] = (unsigned char)(v >> 24);
    }
    w->len += 4;
    return 0;
}

static int
put_bytes(Writer *w, const char *s, Py_ssize_t n)
{
    if (reserve(w, n) < 0) {
        return -1;
    }
    memcpy(w->buf + w->len, s, (size_t)n);
    w->len += n;
    return 0;
}

/* <small> <len:u8> or <large> <len:i32>, then the bytes */
static int
put_len_prefixed(Writer *w, const char *s, Py_ssize_t n, int small, int large)
{
    if (n <= 255) {
        if (put_byte(w, small) < 0 || put_byte(w, (int)n) < 0) {
            return -1;
        }
    }
    else if (n <= 0x7FFFFFFF) {
        if (put_byte(w, large) < 0 || put_i32(w, (uint32_t)n) < 0) {
            return -1;
        }
    }
    else {
        return -1; /* Python refuses strings over 2 GiB */
    }
    return put_bytes(w, s, n);
}

static int
put_text(Writer *w, PyObject *text)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL) {
        return -1;
    }
    return put_len_prefixed(w, s, n, SX_SCALAR, SX_LSCALAR);
}

/* A number nfreeze writes as a decimal string, as Python's _perl_str_number does. */
static int
put_number_string(Writer *w, PyObject *number)
{
    if (PyFloat_CheckExact(number)) {
        double x = PyFloat_AS_DOUBLE(number);
        char small[32];
        if (isnan(x)) {
            return put_len_prefixed(w, "NaN", 3, SX_SCALAR, SX_LSCALAR);
        }
        if (isinf(x)) {
            return x > 0 ? put_len_prefixed(w, "Inf", 3, SX_SCALAR, SX_LSCALAR)
                         : put_len_prefixed(w, "-Inf", 4, SX_SCALAR, SX_LSCALAR);
        }
        if (x == floor(x) && fabs(x) < 1e15 && copysign(1.0, x) > 0) {
            int n = PyOS_snprintf(small, sizeof small, "%lld", (long long)x);
            return put_len_prefixed(w, small, n, SX_SCALAR, SX_LSCALAR);
        }
        PyObject *text = PyObject_Repr(number);
        if (text == NULL) {
            return -1;
        }
        int failed = put_text(w, text);
        Py_DECREF(text);
        return failed;
    }
    PyObject *text = PyObject_Str(number); /* an int; fails beyond the digit limit */
    if (text == NULL) {
        return -1;
    }
    int failed = put_text(w, text);
    Py_DECREF(text);
    return failed;
}

static int
put_str(Writer *w, PyObject *s)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) {
        return -1;
    }
#endif
    if (PyUnicode_IS_ASCII(s)) {
        return put_len_prefixed(w, (const char *)PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s),
                                SX_SCALAR, SX_LSCALAR);
    }
    PyObject *raw = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
    if (raw == NULL) {
        return -1;
    }
    int failed = put_len_prefixed(w, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), SX_UTF8STR,
                                  SX_LUTF8STR);
    Py_DECREF(raw);
    return failed;
}

static int
put_int(Writer *w, PyObject *obj)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (!overflow) {
        if (v >= -128 && v <= 127) {
            return put_byte(w, SX_BYTE) < 0 ? -1 : put_byte(w, (int)(v + 128));
        }
        if (w->netorder && v >= INT32_MIN && v <= INT32_MAX) {
            if (put_byte(w, SX_NETINT) < 0 || reserve(w, 4) < 0) {
                return -1;
            }
            uint32_t u = (uint32_t)(int32_t)v;
            unsigned char *p = (unsigned char *)w->buf + w->len;
            p[0] = (unsigned char)(u >> 24);
            p[1] = (unsigned char)(u >> 16);
            p[2] = (unsigned char)(u >> 8);
            p[3] = (unsigned char)u;
            w->len += 4;
            return 0;
        }
        if (!w->netorder) {
            if (put_byte(w, SX_INTEGER) < 0 || reserve(w, 8) < 0) {
                return -1;
            }
            uint64_t u = (uint64_t)v;
            for (int i = 0; i < 8; i++) {
                w->buf[w->len++] = (char)(unsigned char)(u >> (8 * i));
            }
            return 0;
        }
    }
    return put_number_string(w, obj);
}

static int
put_double(Writer *w, PyObject *obj)
{
    if (w->netorder) {
        return put_number_string(w, obj);
    }
    double x = PyFloat_AS_DOUBLE(obj);
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    if (put_byte(w, SX_DOUBLE) < 0 || reserve(w, 8) < 0) {
        return -1;
    }
    for (int i = 0; i < 8; i++) {
        w->buf[w->len++] = (char)(unsigned char)(bits >> (8 * i));
    }
    return 0;
}

static int write_container(Writer *w, PyObject *obj, long depth);

/* A scalar, or a container behind a reference; -1 for anything else. */
static int
write_item(Writer *w, PyObject *obj, long depth)
{
    if (PyDict_CheckExact(obj) || PyList_CheckExact(obj) || PyTuple_CheckExact(obj)) {
        w->tag++; /* the reference */
        if (put_byte(w, SX_REF) < 0) {
            return -1;
        }
        return write_container(w, obj, depth);
    }
    w->tag++;
    if (PyUnicode_CheckExact(obj)) {
        return put_str(w, obj);
    }
    if (PyLong_CheckExact(obj)) {
        return put_int(w, obj);
    }
    if (obj == Py_None) {
        return put_byte(w, SX_UNDEF);
    }
    if (PyFloat_CheckExact(obj)) {
        return put_double(w, obj);
    }
    if (PyBytes_CheckExact(obj)) {
        return put_len_prefixed(w, PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj), SX_SCALAR,
                                SX_LSCALAR);
    }
    if (obj == Py_True) {
        return put_byte(w, SX_SV_YES);
    }
    if (obj == Py_False) {
        return put_byte(w, SX_SV_NO);
    }
    return -1;
}

static int
write_key(Writer *w, PyObject *key, int flagged)
{
    if (PyBytes_CheckExact(key)) {
        if (PyBytes_GET_SIZE(key) > 0x7FFFFFFF || (flagged && put_byte(w, 0) < 0) ||
            put_i32(w, (uint32_t)PyBytes_GET_SIZE(key)) < 0) {
            return -1;
        }
        return put_bytes(w, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    }
    if (PyUnicode_IS_ASCII(key)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(key);
        if (n > 0x7FFFFFFF || (flagged && put_byte(w, 0) < 0) || put_i32(w, (uint32_t)n) < 0) {
            return -1;
        }
        return put_bytes(w, (const char *)PyUnicode_DATA(key), n);
    }
    PyObject *raw = PyUnicode_AsEncodedString(key, "utf-8", "surrogatepass");
    if (raw == NULL) {
        return -1;
    }
    int failed = PyBytes_GET_SIZE(raw) > 0x7FFFFFFF || put_byte(w, SHV_K_UTF8) < 0 ||
                 put_i32(w, (uint32_t)PyBytes_GET_SIZE(raw)) < 0 ||
                 put_bytes(w, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw)) < 0;
    Py_DECREF(raw);
    return failed ? -1 : 0;
}

static int
write_hash(Writer *w, PyObject *dict, long depth)
{
    Py_ssize_t i = 0;
    PyObject *key, *value;
    int flagged = 0;
    while (PyDict_Next(dict, &i, &key, &value)) {
        if (PyUnicode_CheckExact(key)) {
#if PY_VERSION_HEX < 0x030C0000
            if (PyUnicode_READY(key) < 0) {
                return -1;
            }
#endif
            flagged |= !PyUnicode_IS_ASCII(key);
        }
        else if (!PyBytes_CheckExact(key)) {
            return -1; /* numbers as keys, and what Python refuses */
        }
    }
    Py_ssize_t n = PyDict_GET_SIZE(dict);
    if (n > 0x7FFFFFFF) {
        return -1;
    }
    if (flagged) {
        if (put_byte(w, SX_FLAG_HASH) < 0 || put_byte(w, 0) < 0) {
            return -1;
        }
    }
    else if (put_byte(w, SX_HASH) < 0) {
        return -1;
    }
    if (put_i32(w, (uint32_t)n) < 0) {
        return -1;
    }
    i = 0;
    while (PyDict_Next(dict, &i, &key, &value)) {
        Py_INCREF(key);
        Py_INCREF(value);
        int failed = write_item(w, value, depth) < 0 || write_key(w, key, flagged) < 0;
        Py_DECREF(key);
        Py_DECREF(value);
        if (failed) {
            return -1;
        }
    }
    return PyDict_GET_SIZE(dict) == n ? 0 : -1;
}

static int
write_array(Writer *w, PyObject *seq, long depth)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > 0x7FFFFFFF || put_byte(w, SX_ARRAY) < 0 || put_i32(w, (uint32_t)n) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i >= PySequence_Fast_GET_SIZE(seq)) {
            return -1;
        }
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        Py_INCREF(item);
        int failed = write_item(w, item, depth);
        Py_DECREF(item);
        if (failed) {
            return -1;
        }
    }
    return 0;
}

/* A dict, list or tuple: a back-reference if written before, else tagged and written. */
static int
write_container(Writer *w, PyObject *obj, long depth)
{
    depth++;
    if (depth > w->max_depth || depth > C_DEPTH_CAP) {
        return -1;
    }
    PyObject *id = PyLong_FromVoidPtr(obj);
    if (id == NULL) {
        return -1;
    }
    PyObject *first = PyDict_GetItemWithError(w->tags, id);
    if (first != NULL) {
        Py_DECREF(id);
        Py_ssize_t tag = PyLong_AsSsize_t(first);
        if (tag < 0 || tag > 0xFFFFFFFF || put_byte(w, SX_OBJECT) < 0 || reserve(w, 4) < 0) {
            return -1;
        }
        unsigned char *p = (unsigned char *)w->buf + w->len;
        p[0] = (unsigned char)(tag >> 24);
        p[1] = (unsigned char)(tag >> 16);
        p[2] = (unsigned char)(tag >> 8);
        p[3] = (unsigned char)tag;
        w->len += 4;
        return 0;
    }
    PyObject *tag = PyErr_Occurred() ? NULL : PyLong_FromSsize_t(w->tag);
    int failed = tag == NULL || PyDict_SetItem(w->tags, id, tag) < 0 || PyList_Append(w->keep, obj) < 0;
    Py_DECREF(id);
    Py_XDECREF(tag);
    if (failed) {
        return -1;
    }
    w->tag++;
    if (PyDict_CheckExact(obj)) {
        return write_hash(w, obj, depth);
    }
    return write_array(w, obj, depth);
}

static const char NATIVE_HEADER[] = {4, WRITE_MINOR, 8, '1', '2', '3', '4', '5', '6', '7', '8', 4, 8, 8, 8};
static const char NET_HEADER[] = {5, WRITE_MINOR};

static PyObject *
freeze(PyObject *module, PyObject *args)
{
    PyObject *obj, *depth_arg;
    int netorder;
    long max_depth;
    if (!PyArg_ParseTuple(args, "OpO:freeze", &obj, &netorder, &depth_arg)) {
        return NULL;
    }
    if (!depth_limit(depth_arg, &max_depth)) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    Writer w = {0};
    w.netorder = netorder;
    w.max_depth = max_depth;
    w.tags = PyDict_New();
    w.keep = PyList_New(0);
    int failed = w.tags == NULL || w.keep == NULL;
    if (!failed) {
        failed = netorder ? put_bytes(&w, NET_HEADER, sizeof NET_HEADER)
                          : put_bytes(&w, NATIVE_HEADER, sizeof NATIVE_HEADER);
    }
    if (!failed) {
        if (PyDict_CheckExact(obj) || PyList_CheckExact(obj) || PyTuple_CheckExact(obj)) {
            failed = write_container(&w, obj, 0);
        }
        else {
            failed = write_item(&w, obj, 0);
        }
    }
    PyObject *result = failed ? NULL : PyBytes_FromStringAndSize(w.buf, w.len);
    PyMem_Free(w.buf);
    Py_XDECREF(w.tags);
    Py_XDECREF(w.keep);
    if (result == NULL) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    return result;
}

/* ------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"thaw", thaw, METH_VARARGS,
     "thaw(data, max_depth): the value, or NotImplemented to let Python read it"},
    {"freeze", freeze, METH_VARARGS,
     "freeze(obj, netorder, max_depth): the blob, or NotImplemented to let Python write it"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "pyramid_kvs._storable_speedups",
    "The common part of Perl Storable in C, for pyramid_kvs.storable.",
    -1,
    methods,
};

PyMODINIT_FUNC
PyInit__storable_speedups(void)
{
    return PyModule_Create(&module);
}

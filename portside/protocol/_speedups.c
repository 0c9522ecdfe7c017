/*
 * C twins of _pyspeedups.py: masking, frame encoding, the fast path of frame
 * parsing (RFC 6455 section 5), and ReaderBase, the receive buffer of the frame
 * reader, whose buffer_updated() runs the parsing loop without a Python call.
 * Both implementations must behave identically; tests/protocol/test_speedups.py
 * checks them side by side.
 *
 * Compile-time switches, for testing the fallbacks:
 *   PORTSIDE_NO_AVX2  never use AVX2, even when the CPU has it;
 *   PORTSIDE_NO_SIMD  use the portable 64-bit word loop only.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if !defined(PORTSIDE_NO_SIMD) && defined(__SSE2__)
#define PORTSIDE_SSE2 1
#include <emmintrin.h>
#endif

/* AVX2 is chosen at run time, so the module still loads on CPUs without it. */
#if !defined(PORTSIDE_NO_SIMD) && !defined(PORTSIDE_NO_AVX2) && \
    (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 5))
#define PORTSIDE_AVX2 1
#include <immintrin.h>
#endif

/* Payloads this large are unmasked with the GIL released. Releasing and taking
   it back costs some 400 instructions, and another thread that takes it in
   between may keep the event loop waiting: worth it only for work of some
   10 us and more (a 256 KiB unmask), not for a 64 KiB one (2 us). */
#define NOGIL_MIN ((Py_ssize_t)1 << 18)

/* Unmasked text payloads up to this size are decoded from the stack. */
#define STACK_TEXT_MAX 1024

/* Masking (RFC 6455 5.3). */

#ifdef PORTSIDE_AVX2
/* XOR whole 64-byte blocks; return how many bytes were done. */
__attribute__((target("avx2"))) static size_t
xor_avx2(uint8_t *dst, const uint8_t *src, size_t n, uint32_t key)
{
    const __m256i k = _mm256_set1_epi32((int)key);
    size_t i = 0;
    /* 128 bytes a turn: four loads, xors and stores for one loop overhead. */
    for (; i + 128 <= n; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 32), _mm256_xor_si256(b, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 64), _mm256_xor_si256(c, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 96), _mm256_xor_si256(d, k));
    }
    if (i + 64 <= n) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 32), _mm256_xor_si256(b, k));
        i += 64;
    }
    return i;
}
#endif

/*
 * RFC 6455 5.3: octet i of the result is octet i of the data XOR octet i % 4
 * of the key. Every block below is a multiple of 4 bytes, so the key never
 * needs rotating. dst and src must not overlap.
 */
static void
xor_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4])
{
    size_t i = 0;
    uint32_t k32;
    uint64_t k64;
    uint8_t k8[8];

    memcpy(&k32, key, 4); /* native order: byte j of k32 in memory is key[j] */
    memcpy(k8, key, 4);
    memcpy(k8 + 4, key, 4);
    memcpy(&k64, k8, 8);

#ifdef PORTSIDE_AVX2
    if (n >= 64 && __builtin_cpu_supports("avx2")) {
        i = xor_avx2(dst, src, n, k32);
    }
#endif
#ifdef PORTSIDE_SSE2
    {
        const __m128i k = _mm_set1_epi32((int)k32);
        for (; i + 32 <= n; i += 32) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
            _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
            _mm_storeu_si128((__m128i *)(dst + i + 16), _mm_xor_si128(b, k));
        }
        if (i + 16 <= n) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
            i += 16;
        }
    }
#endif
    /* memcpy makes unaligned word access safe; compilers emit plain moves. */
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

/* xor_mask, releasing the GIL for large payloads. The caller holds buffer
   exports on src (so it cannot move) and owns dst exclusively. */
static void
xor_mask_big(uint8_t *dst, const uint8_t *src, Py_ssize_t n, const uint8_t key[4])
{
    if (n >= NOGIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        xor_mask(dst, src, (size_t)n, key);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_mask(dst, src, (size_t)n, key);
    }
}

/* Argument conversion. */

static int
check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t expected)
{
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd arguments (%zd given)",
                     name, expected, nargs);
        return -1;
    }
    return 0;
}

/* Copy a 4-byte masking key out of a bytes-like object. */
static int
get_mask(PyObject *obj, uint8_t key[4])
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (view.len != 4) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        return -1;
    }
    memcpy(key, view.buf, 4);
    PyBuffer_Release(&view);
    return 0;
}

/* FIN, RSV1-3 and opcode, as one byte; the Python twin relies on bytes(). */
static int
get_first_byte(PyObject *obj)
{
    int overflow;
    long value = PyLong_AsLongAndOverflow(obj, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || value < 0 || value > 255) {
        PyErr_SetString(PyExc_ValueError, "bytes must be in range(0, 256)");
        return -1;
    }
    return (int)value;
}

/* A payload length: ValueError if negative, OverflowError from 2**64 up. */
static int
get_length(PyObject *obj, uint64_t *length)
{
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow < 0 || (!overflow && value < 0)) {
        PyErr_SetString(PyExc_ValueError, "length must be >= 0");
        return -1;
    }
    if (overflow) {
        unsigned long long big = PyLong_AsUnsignedLongLong(obj);
        if (big == (unsigned long long)-1 && PyErr_Occurred()) {
            return -1;
        }
        *length = (uint64_t)big;
    }
    else {
        *length = (uint64_t)value;
    }
    return 0;
}

/* Frame headers (RFC 6455 5.2). */

static Py_ssize_t
header_size(uint64_t length)
{
    return length < 126 ? 2 : length < 65536 ? 4 : 10;
}

/* Write the header without the masking key; return its size. */
static Py_ssize_t
write_header(uint8_t *dst, int first_byte, uint64_t length, int masked)
{
    /* RFC 6455 5.2: the MASK bit, then a 7-bit length, or 126 and a 16-bit
       length, or 127 and a 64-bit length, in network byte order. */
    uint8_t bit = masked ? 0x80 : 0;
    dst[0] = (uint8_t)first_byte;
    if (length < 126) {
        dst[1] = bit | (uint8_t)length;
        return 2;
    }
    if (length < 65536) {
        dst[1] = bit | 126;
        dst[2] = (uint8_t)(length >> 8);
        dst[3] = (uint8_t)length;
        return 4;
    }
    dst[1] = bit | 127;
    for (int j = 0; j < 8; j++) {
        dst[2 + j] = (uint8_t)(length >> (56 - 8 * j));
    }
    return 10;
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask($module, data, mask, /)\n--\n\n"
"Return data XOR-ed with the 4-byte mask (RFC 6455 section 5.3).");

static PyObject *
apply_mask(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    uint8_t key[4];
    Py_buffer data;
    PyObject *result;

    if (check_nargs("apply_mask", nargs, 2) < 0 || get_mask(args[1], key) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result != NULL) {
        xor_mask_big((uint8_t *)PyBytes_AS_STRING(result), data.buf, data.len, key);
    }
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(encode_header_doc,
"encode_header($module, first_byte, length, mask, /)\n--\n\n"
"Return a frame header (RFC 6455 section 5.2).");

static PyObject *
encode_header(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    int first_byte;
    uint64_t length;
    uint8_t key[4] = {0};
    int masked;
    PyObject *result;
    uint8_t *dst;

    if (check_nargs("encode_header", nargs, 3) < 0) {
        return NULL;
    }
    if ((first_byte = get_first_byte(args[0])) < 0 || get_length(args[1], &length) < 0) {
        return NULL;
    }
    masked = args[2] != Py_None;
    if (masked && get_mask(args[2], key) < 0) {
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, header_size(length) + (masked ? 4 : 0));
    if (result != NULL) {
        dst = (uint8_t *)PyBytes_AS_STRING(result);
        dst += write_header(dst, first_byte, length, masked);
        if (masked) {
            memcpy(dst, key, 4);
        }
    }
    return result;
}

PyDoc_STRVAR(encode_frame_doc,
"encode_frame($module, first_byte, payload, mask, /)\n--\n\n"
"Return a whole frame: header, then the payload, masked when mask is set.");

static PyObject *
encode_frame(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    int first_byte;
    uint8_t key[4];
    int masked;
    Py_buffer payload;
    Py_ssize_t size;
    PyObject *result;
    uint8_t *dst;

    if (check_nargs("encode_frame", nargs, 3) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &payload, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    masked = args[2] != Py_None;
    if ((first_byte = get_first_byte(args[0])) < 0 ||
        (masked && get_mask(args[2], key) < 0)) {
        PyBuffer_Release(&payload);
        return NULL;
    }
    size = header_size((uint64_t)payload.len) + (masked ? 4 : 0);
    /* ccoverage: unreachable: a payload within 14 bytes of the address space's size */
    if (payload.len > PY_SSIZE_T_MAX - size) {
        PyBuffer_Release(&payload);
        return PyErr_NoMemory();
    }
    /* One allocation; the payload is copied or masked straight into place. */
    result = PyBytes_FromStringAndSize(NULL, size + payload.len);
    if (result != NULL) {
        dst = (uint8_t *)PyBytes_AS_STRING(result);
        dst += write_header(dst, first_byte, (uint64_t)payload.len, masked);
        if (masked) {
            memcpy(dst, key, 4);
            xor_mask_big(dst + 4, payload.buf, payload.len, key);
        }
        else if (payload.len) {
            memcpy(dst, payload.buf, (size_t)payload.len);
        }
    }
    PyBuffer_Release(&payload);
    return result;
}

PyDoc_STRVAR(new_buffer_doc,
"new_buffer($module, size, /)\n--\n\n"
"Return a bytearray of size bytes, not zeroed: the caller only reads what it\n"
"wrote (the receive buffer of a frame larger than read_limit).");

static PyObject *
new_buffer(PyObject *Py_UNUSED(module), PyObject *arg)
{
    PyObject *buffer;
    Py_ssize_t size = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    /* Created empty, then resized: when the allocation fails,
       PyByteArray_FromStringAndSize(NULL, size) frees a half-built bytearray
       whose export count was never set, and CPython may then report
       "deallocated bytearray object has exported buffers". An empty bytearray
       is whole, and a failed resize leaves it so. Growing from empty allocates
       exactly size + 1 bytes, not zeroed. */
    buffer = PyByteArray_FromStringAndSize(NULL, 0);
    if (buffer != NULL && size > 0 && PyByteArray_Resize(buffer, size) < 0) {
        Py_CLEAR(buffer);
    }
    return buffer;
}

/* Frame parsing (RFC 6455 5.2). */

/* Append item to out and drop the reference to item. */
static int
append_steal(PyObject *out, PyObject *item)
{
    int rc;
    if (PyList_CheckExact(out)) {
        rc = PyList_Append(out, item);
    }
    else {
        /* The Python twin calls out.append(); so do we for anything else. */
        PyObject *res = PyObject_CallMethod(out, "append", "O", item);
        rc = res == NULL ? -1 : 0;
        Py_XDECREF(res);
    }
    Py_DECREF(item);
    return rc;
}

/* Decode a text payload; key is NULL when it is not masked. Return NULL
   without an exception set when it is not valid UTF-8 (RFC 6455 5.6, 8.1). */
static PyObject *
decode_text(const uint8_t *src, Py_ssize_t n, const uint8_t *key)
{
    uint8_t stack[STACK_TEXT_MAX];
    uint8_t *plain = NULL;
    PyObject *text;

    if (key == NULL) {
        text = PyUnicode_DecodeUTF8((const char *)src, n, NULL);
    }
    else {
        /* PyUnicode_DecodeUTF8 has its own ASCII fast path. */
        if (n <= STACK_TEXT_MAX) {
            plain = stack;
        }
        else if ((plain = PyMem_Malloc((size_t)n)) == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        xor_mask_big(plain, src, n, key);
        text = PyUnicode_DecodeUTF8((const char *)plain, n, NULL);
        if (plain != stack) {
            PyMem_Free(plain);
        }
    }
    if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
    }
    return text;
}

/* Check the window buf[pos:end] of a buffer of len bytes. */
static int
check_window(Py_ssize_t pos, Py_ssize_t end, Py_ssize_t len)
{
    if (pos < 0 || pos > end || end > len) {
        PyErr_Format(PyExc_ValueError,
                     "need 0 <= pos <= end <= len(buf), got pos=%zd, end=%zd, len(buf)=%zd",
                     pos, end, len);
        return -1;
    }
    return 0;
}

/*
 * The loop of parse_frames, for a window the caller checked: append the message
 * of each simple frame at the start of buf[pos:end] to out, where a simple frame
 * carries at most limit bytes. Return the position of the first byte not
 * consumed, or -1 with an exception set. Runs no Python code as long as out is
 * a list, so buf cannot change under it.
 */
static Py_ssize_t
parse_simple_frames(const uint8_t *buf, Py_ssize_t pos, Py_ssize_t end, int masked,
                    uint64_t limit, PyObject *out)
{
    /* RFC 6455 5.1: clients mask every frame, servers none. */
    const uint8_t mask_bit = masked ? 0x80 : 0;
    PyObject *item;

    while (end - pos >= 2) {
        uint8_t b0 = buf[pos], b1 = buf[pos + 1];
        Py_ssize_t start = pos + 2, n;
        uint64_t length;
        const uint8_t *key = NULL;

        /* RFC 6455 5.2: FIN set, RSV1-3 clear (no extension negotiated them
           for this frame), opcode 0x1 (text) or 0x2 (binary), MASK as expected.
           Anything else is left to the general parser. */
        if ((b0 != 0x81 && b0 != 0x82) || (b1 & 0x80) != mask_bit) {
            break;
        }
        length = b1 & 0x7F;
        if (length == 126) {
            /* RFC 6455 5.2: 126 means a 16-bit length follows. */
            if (end - start < 2) {
                break;
            }
            length = ((uint64_t)buf[start] << 8) | buf[start + 1];
            start += 2;
        }
        else if (length == 127) {
            /* RFC 6455 5.2: 127 means a 64-bit length follows. */
            if (end - start < 8) {
                break;
            }
            length = 0;
            for (int j = 0; j < 8; j++) {
                length = (length << 8) | buf[start + j];
            }
            start += 8;
            if (length >> 63) {
                /* RFC 6455 5.2: the most significant bit MUST be 0. */
                break;
            }
        }
        if (length > limit) {
            break;
        }
        if (masked) {
            /* RFC 6455 5.2: the 4-byte masking key precedes the payload. */
            if (end - start < 4) {
                break;
            }
            key = buf + start;
            start += 4;
        }
        if ((uint64_t)(end - start) < length) {
            break;
        }
        n = (Py_ssize_t)length;
        if (b0 == 0x81) {
            item = decode_text(buf + start, n, key);
            if (item == NULL) {
                if (PyErr_Occurred()) {
                    return -1;
                }
                /* Invalid UTF-8: the general parser fails the connection. */
                break;
            }
        }
        else if (key == NULL) {
            item = PyBytes_FromStringAndSize((const char *)buf + start, n);
            if (item == NULL) {
                return -1;
            }
        }
        else {
            item = PyBytes_FromStringAndSize(NULL, n);
            if (item == NULL) {
                return -1;
            }
            xor_mask_big((uint8_t *)PyBytes_AS_STRING(item), buf + start, n, key);
        }
        if (append_steal(out, item) < 0) {
            return -1;
        }
        pos = start + n;
    }
    return pos;
}

PyDoc_STRVAR(parse_frames_doc,
"parse_frames($module, buf, pos, end, masked, max_size, out, /)\n--\n\n"
"Consume the simple data frames at the start of buf[pos:end].\n\n"
"Append a str (text) or bytes (binary) to out for each one; return the\n"
"position of the first byte not consumed.");

static PyObject *
parse_frames(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t pos, end;
    int masked, overflow;
    long long max_size;

    if (check_nargs("parse_frames", nargs, 6) < 0) {
        return NULL;
    }
    pos = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    end = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if ((masked = PyObject_IsTrue(args[3])) < 0) {
        return NULL;
    }
    max_size = PyLong_AsLongLongAndOverflow(args[4], &overflow);
    if (max_size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (check_window(pos, end, view.len) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    /* A negative max_size leaves no payload small enough: every frame stops. */
    if (overflow > 0 || (!overflow && max_size >= 0)) {
        pos = parse_simple_frames(view.buf, pos, end, masked,
                                  overflow ? UINT64_MAX : (uint64_t)max_size, args[5]);
    }
    PyBuffer_Release(&view);
    return pos < 0 ? NULL : PyLong_FromSsize_t(pos);
}

/* Module state: what ReaderBase uses, created once. */

typedef struct {
    PyObject *str_continue;
    PyObject *str_continue_big;
    PyObject *empty_bytes;
    PyTypeObject *reader_type; /* ReaderBase */
} speedups_state;

/* ReaderBase: the receive buffer and the fast path of the frame reader. */

/* 3.12 names the member types Py_T_*, in Python.h; before, structmember.h has
   them as T_*. */
#if PY_VERSION_HEX < 0x030C0000
#include <structmember.h>
#define Py_T_INT T_INT
#define Py_T_BOOL T_BOOL
#define Py_T_LONGLONG T_LONGLONG
#define Py_T_PYSSIZET T_PYSSIZET
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif

/* Free-threaded builds lock the object for the duration of a method, as the
   member descriptors do for each access; other builds have the GIL. Critical
   sections, and free-threaded builds, are 3.13's. */
#if PY_VERSION_HEX < 0x030D0000
#define Py_BEGIN_CRITICAL_SECTION(op) {
#define Py_END_CRITICAL_SECTION() }
#endif

/*
 * The fields of the Python twin's __slots__, with the same names. Object fields
 * are NULL until set, and reading one then raises AttributeError, as reading an
 * unset slot does; every field is set by FrameReader.__init__.
 */
typedef struct {
    PyObject_HEAD
    PyObject *buf;       /* _buf: the receive buffer, shared by connections */
    PyObject *view;      /* _view: the part of _buf a read may fill */
    PyObject *tail;      /* _tail: the start of a frame cut by the last read */
    PyObject *big;       /* _big: the buffer of a frame larger than _view, or None */
    long long max_size;  /* max_size: the largest message accepted */
    Py_ssize_t base;     /* _base: bytes of _tail copied into _buf */
    Py_ssize_t big_fill; /* _big_fill: bytes of _big received */
    Py_ssize_t checked;  /* _checked: payload bytes of a cut text frame validated */
    int msg_opcode;      /* _msg_opcode: 0, or the opcode of a fragmented message */
    char masked;         /* _masked: whether frames received must be masked */
    char reading;        /* _reading: false once the reader stopped */
} ReaderObject;

/* The AttributeError of reading an unset slot, worded as CPython words it. */
static void
unset_attribute(ReaderObject *self, const char *name)
{
    PyErr_Format(PyExc_AttributeError, "'%.200s' object has no attribute '%s'",
                 Py_TYPE(self)->tp_name, name);
}

/* Replace the value of an object field; value is a borrowed reference. */
static void
set_field(PyObject **field, PyObject *value)
{
    Py_XSETREF(*field, Py_NewRef(value));
}

/* Return obj[start:]. */
static PyObject *
slice_from(PyObject *obj, Py_ssize_t start)
{
    PyObject *index, *slice, *result;

    if ((index = PyLong_FromSsize_t(start)) == NULL) {
        return NULL;
    }
    slice = PySlice_New(index, NULL, NULL);
    Py_DECREF(index);
    if (slice == NULL) {
        return NULL;
    }
    result = PyObject_GetItem(obj, slice);
    Py_DECREF(slice);
    return result;
}

static int
reader_traverse(ReaderObject *self, visitproc visit, void *arg)
{
    /* Instances of heap types reference their type. */
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->buf);
    Py_VISIT(self->view);
    Py_VISIT(self->tail);
    Py_VISIT(self->big);
    return 0;
}

static int
reader_clear(ReaderObject *self)
{
    Py_CLEAR(self->buf);
    Py_CLEAR(self->view);
    Py_CLEAR(self->tail);
    Py_CLEAR(self->big);
    return 0;
}

static void
reader_dealloc(ReaderObject *self)
{
    /* Py_TYPE(self) may be a Python subclass: its dealloc cleared its own
       slots and left the reference to the type for us to drop. */
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    reader_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Copy _tail to the start of _buf; return _view after it. */
static PyObject *
reader_resume_tail(ReaderObject *self, PyObject *tail)
{
    Py_buffer src, dst;
    PyObject *buf, *view, *result;
    int fits;

    if (PyObject_GetBuffer(tail, &src, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (self->buf == NULL) {
        PyBuffer_Release(&src);
        unset_attribute(self, "_buf");
        return NULL;
    }
    buf = Py_NewRef(self->buf);
    if (PyObject_GetBuffer(buf, &dst, PyBUF_WRITABLE) < 0) {
        Py_DECREF(buf);
        PyBuffer_Release(&src);
        return NULL;
    }
    fits = src.len <= dst.len;
    if (fits) {
        /* memmove: _tail may be a view of _buf. */
        memmove(dst.buf, src.buf, (size_t)src.len);
        self->base = src.len;
    }
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    Py_DECREF(buf);
    if (!fits) {
        /* The buffer is shared and exported: it cannot grow. */
        PyErr_SetString(PyExc_BufferError, "_tail is longer than _buf");
        return NULL;
    }
    if (self->view == NULL) {
        unset_attribute(self, "_view");
        return NULL;
    }
    view = Py_NewRef(self->view);
    result = slice_from(view, self->base);
    Py_DECREF(view);
    return result;
}

static PyObject *
reader_get_buffer_impl(ReaderObject *self)
{
    PyObject *obj, *view, *result;
    int nonempty;

    if (self->big == NULL) {
        unset_attribute(self, "_big");
        return NULL;
    }
    if (self->big != Py_None) {
        /* The rest of a frame larger than _view goes straight into _big. */
        obj = Py_NewRef(self->big);
        view = PyMemoryView_FromObject(obj);
        Py_DECREF(obj);
        if (view == NULL) {
            return NULL;
        }
        result = slice_from(view, self->big_fill);
        Py_DECREF(view);
        return result;
    }
    if (self->tail == NULL) {
        unset_attribute(self, "_tail");
        return NULL;
    }
    obj = Py_NewRef(self->tail);
    nonempty = PyBytes_CheckExact(obj) ? PyBytes_GET_SIZE(obj) != 0 : PyObject_IsTrue(obj);
    if (nonempty) {
        /* The read continues a cut frame (or fails: nonempty < 0). */
        result = nonempty < 0 ? NULL : reader_resume_tail(self, obj);
        Py_DECREF(obj);
        return result;
    }
    Py_DECREF(obj);
    /* The common case: a read into the shared buffer, nothing to allocate. */
    self->base = 0;
    if (self->view == NULL) {
        unset_attribute(self, "_view");
        return NULL;
    }
    return Py_NewRef(self->view);
}

PyDoc_STRVAR(reader_get_buffer_doc,
"get_buffer($self, sizehint=-1, /)\n--\n\n"
"Return a writable buffer for the next read (then call buffer_updated).");

static PyObject *
reader_get_buffer(ReaderObject *self, PyObject *const *Py_UNUSED(args), Py_ssize_t nargs)
{
    PyObject *result;

    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "get_buffer() takes at most 1 argument (%zd given)",
                     nargs);
        return NULL;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    result = reader_get_buffer_impl(self);
    Py_END_CRITICAL_SECTION();
    return result;
}

/* Return self.<name>(a, b, c), or self.<name>(a, b) when c is NULL. */
static PyObject *
call_method(PyObject *name, ReaderObject *self, PyObject *a, PyObject *b, PyObject *c)
{
    /* A free slot before self lets the callee prepend its own argument. */
    PyObject *stack[5] = {NULL, (PyObject *)self, a, b, c};
    size_t nargs = c == NULL ? 3 : 4;
    return PyObject_VectorcallMethod(name, stack + 1, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                     NULL);
}

/* Return self._continue(pos, end, events). */
static PyObject *
reader_continue_at(ReaderObject *self, speedups_state *st, PyObject *pos, PyObject *end,
                   PyObject *events)
{
    return call_method(st->str_continue, self, pos, end, events);
}

/*
 * The rest of buffer_updated when _base + nbytes does not fit a Py_ssize_t (only
 * a caller breaking the buffer protocol gets here): no window of a buffer can
 * end there, so either the fast path rejects it or _continue gets it as is.
 */
static PyObject *
reader_updated_huge(ReaderObject *self, speedups_state *st, PyObject *nbytes, PyObject *events)
{
    PyObject *base, *end, *zero, *result = NULL;

    if ((base = PyLong_FromSsize_t(self->base)) == NULL) {
        return NULL;
    }
    end = PyNumber_Add(base, nbytes);
    Py_DECREF(base);
    if (end == NULL) {
        return NULL;
    }
    set_field(&self->tail, st->empty_bytes);
    if (!self->msg_opcode && !self->checked) {
        if (self->buf == NULL) {
            unset_attribute(self, "_buf");
        }
        else {
            PyErr_Format(PyExc_ValueError,
                         "need 0 <= pos <= end <= len(buf), got pos=0, end=%S", end);
        }
    }
    else if ((zero = PyLong_FromLong(0)) != NULL) {
        result = reader_continue_at(self, st, zero, end, events);
        Py_DECREF(zero);
    }
    Py_DECREF(end);
    return result;
}

static PyObject *
reader_buffer_updated_impl(ReaderObject *self, speedups_state *st, PyObject *nbytes,
                           PyObject *events)
{
    Py_buffer view;
    PyObject *buf, *pos_obj, *end_obj, *result;
    Py_ssize_t n, end, pos = 0;

    if (!self->reading) {
        /* The reader stopped: drop whatever a read brought. */
        set_field(&self->tail, st->empty_bytes);
        set_field(&self->big, Py_None);
        return Py_NewRef(events);
    }
    if (self->big == NULL) {
        unset_attribute(self, "_big");
        return NULL;
    }
    if (self->big != Py_None) {
        return call_method(st->str_continue_big, self, nbytes, events, NULL);
    }
    /* end = _base + nbytes, with nbytes converted as int.__add__ would. */
    n = PyNumber_AsSsize_t(nbytes, NULL);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n == PY_SSIZE_T_MAX || n == PY_SSIZE_T_MIN ||
        (n > 0 && self->base > PY_SSIZE_T_MAX - n) ||
        (n < 0 && self->base < PY_SSIZE_T_MIN - n)) {
        return reader_updated_huge(self, st, nbytes, events);
    }
    end = self->base + n;
    set_field(&self->tail, st->empty_bytes);
    if (!self->msg_opcode && !self->checked) {
        /* Whole single-frame messages, no extension involved. */
        if (self->buf == NULL) {
            unset_attribute(self, "_buf");
            return NULL;
        }
        buf = Py_NewRef(self->buf);
        if (PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(buf);
            return NULL;
        }
        if (check_window(0, end, view.len) < 0) {
            pos = -1;
        }
        else if (self->max_size >= 0) {
            pos = parse_simple_frames(view.buf, 0, end, self->masked,
                                      (uint64_t)self->max_size, events);
        }
        PyBuffer_Release(&view);
        Py_DECREF(buf);
        if (pos < 0) {
            return NULL;
        }
        if (pos == end) {
            return Py_NewRef(events);
        }
    }
    if ((pos_obj = PyLong_FromSsize_t(pos)) == NULL) {
        return NULL;
    }
    if ((end_obj = PyLong_FromSsize_t(end)) == NULL) {
        Py_DECREF(pos_obj);
        return NULL;
    }
    result = reader_continue_at(self, st, pos_obj, end_obj, events);
    Py_DECREF(end_obj);
    Py_DECREF(pos_obj);
    return result;
}

PyDoc_STRVAR(reader_buffer_updated_doc,
"buffer_updated($self, nbytes, /)\n--\n\n"
"Process nbytes written into the last buffer from get_buffer.\n\n"
"Return the events: messages (str or bytes) and control events.");

/* buffer_updated(nbytes) of a ReaderBase, its arguments checked. */
static PyObject *
reader_buffer_updated_events(ReaderObject *self, speedups_state *st, PyObject *nbytes)
{
    PyObject *events, *result;

    if ((events = PyList_New(0)) == NULL) {
        return NULL;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    result = reader_buffer_updated_impl(self, st, nbytes, events);
    Py_END_CRITICAL_SECTION();
    Py_DECREF(events);
    return result;
}

static PyObject *
reader_buffer_updated(ReaderObject *self, PyTypeObject *defining_class, PyObject *const *args,
                      Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "buffer_updated() takes no keyword arguments");
        return NULL;
    }
    if (check_nargs("buffer_updated", nargs, 1) < 0) {
        return NULL;
    }
    return reader_buffer_updated_events(self, PyType_GetModuleState(defining_class), args[0]);
}

/*
 * reader.buffer_updated(nbytes) for the event-loop layer's accelerator, without the method
 * lookup and call (some 200 instructions a read): the pointer in the capsule
 * _buffer_updated, whose context is this module's state, the first argument.
 * The caller holds the module, and calls this only where the method of
 * reader's type is ReaderBase.buffer_updated.
 */
static PyObject *
buffer_updated_direct(void *state, PyObject *reader, PyObject *nbytes)
{
    speedups_state *st = state;

    if (!PyObject_TypeCheck(reader, st->reader_type)) {
        PyErr_Format(PyExc_TypeError, "expected a ReaderBase, not %.100s",
                     Py_TYPE(reader)->tp_name);
        return NULL;
    }
    return reader_buffer_updated_events((ReaderObject *)reader, st, nbytes);
}

#define BUFFER_UPDATED_CAPSULE "portside.protocol._speedups._buffer_updated"

/* The methods subclasses implement: these raise NotImplementedError. */

static PyObject *
reader_continue(PyObject *Py_UNUSED(self), PyObject *const *Py_UNUSED(args), Py_ssize_t nargs)
{
    if (check_nargs("_continue", nargs, 3) == 0) {
        PyErr_SetNone(PyExc_NotImplementedError);
    }
    return NULL;
}

static PyObject *
reader_continue_big(PyObject *Py_UNUSED(self), PyObject *const *Py_UNUSED(args),
                    Py_ssize_t nargs)
{
    if (check_nargs("_continue_big", nargs, 2) == 0) {
        PyErr_SetNone(PyExc_NotImplementedError);
    }
    return NULL;
}

static PyMethodDef reader_methods[] = {
    {"get_buffer", (PyCFunction)(void (*)(void))reader_get_buffer, METH_FASTCALL,
     reader_get_buffer_doc},
    {"buffer_updated", (PyCFunction)(void (*)(void))reader_buffer_updated,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS, reader_buffer_updated_doc},
    {"_continue", (PyCFunction)(void (*)(void))reader_continue, METH_FASTCALL,
     "Parse buf[pos:end] past the fast path (subclasses implement it)."},
    {"_continue_big", (PyCFunction)(void (*)(void))reader_continue_big, METH_FASTCALL,
     "Handle a read into _big (subclasses implement it)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef reader_members[] = {
    {"_buf", Py_T_OBJECT_EX, offsetof(ReaderObject, buf), 0,
     "The receive buffer, a bytearray that connections share."},
    {"_view", Py_T_OBJECT_EX, offsetof(ReaderObject, view), 0,
     "A memoryview of the part of _buf that a read may fill."},
    {"max_size", Py_T_LONGLONG, offsetof(ReaderObject, max_size), 0,
     "The largest message accepted, in bytes."},
    {"_masked", Py_T_BOOL, offsetof(ReaderObject, masked), 0,
     "Whether received frames must be masked (server side)."},
    {"_reading", Py_T_BOOL, offsetof(ReaderObject, reading), 0,
     "Whether received bytes are still parsed."},
    {"_base", Py_T_PYSSIZET, offsetof(ReaderObject, base), 0,
     "Bytes of _tail that get_buffer copied to the start of _buf."},
    {"_tail", Py_T_OBJECT_EX, offsetof(ReaderObject, tail), 0,
     "The start of a frame cut by the end of the last read."},
    {"_big", Py_T_OBJECT_EX, offsetof(ReaderObject, big), 0,
     "The buffer of a frame larger than _view, or None."},
    {"_big_fill", Py_T_PYSSIZET, offsetof(ReaderObject, big_fill), 0,
     "Bytes of _big received."},
    {"_msg_opcode", Py_T_INT, offsetof(ReaderObject, msg_opcode), 0,
     "0, or the opcode of the message in progress (1: text, 2: binary)."},
    {"_checked", Py_T_PYSSIZET, offsetof(ReaderObject, checked), 0,
     "Payload bytes of a cut text frame already validated."},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(reader_doc,
"The receive buffer and the fast path of portside.protocol.reader.FrameReader.\n\n"
"buffer_updated() parses whole single-frame messages itself and hands\n"
"everything else to the subclass: _continue(pos, end, events) for the rest\n"
"of _buf, _continue_big(nbytes, events) when the read went to _big.");

static PyType_Slot reader_slots[] = {
    {Py_tp_doc, (void *)reader_doc},
    {Py_tp_traverse, (void *)reader_traverse},
    {Py_tp_clear, (void *)reader_clear},
    {Py_tp_dealloc, (void *)reader_dealloc},
    {Py_tp_methods, reader_methods},
    {Py_tp_members, reader_members},
    {0, NULL},
};

static PyType_Spec reader_spec = {
    .name = "portside.protocol._speedups.ReaderBase",
    .basicsize = sizeof(ReaderObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = reader_slots,
};

/* The module. */

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL, apply_mask_doc},
    {"encode_header", (PyCFunction)(void (*)(void))encode_header, METH_FASTCALL,
     encode_header_doc},
    {"encode_frame", (PyCFunction)(void (*)(void))encode_frame, METH_FASTCALL,
     encode_frame_doc},
    {"new_buffer", (PyCFunction)new_buffer, METH_O, new_buffer_doc},
    {"parse_frames", (PyCFunction)(void (*)(void))parse_frames, METH_FASTCALL,
     parse_frames_doc},
    {NULL, NULL, 0, NULL},
};

static int
speedups_exec(PyObject *module)
{
    speedups_state *st = PyModule_GetState(module);
    PyObject *type, *capsule;
    int rc;

    if ((st->str_continue = PyUnicode_InternFromString("_continue")) == NULL ||
        (st->str_continue_big = PyUnicode_InternFromString("_continue_big")) == NULL ||
        (st->empty_bytes = PyBytes_FromStringAndSize(NULL, 0)) == NULL) {
        return -1;
    }
    if ((type = PyType_FromModuleAndSpec(module, &reader_spec, NULL)) == NULL) {
        /* CPython 3.11's fails on some allocations without an exception set
           (found by tests/protocol/test_speedups_nomemory.py): a SystemError
           would then hide the MemoryError. */
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        return -1;
    }
    st->reader_type = (PyTypeObject *)type;
    if (PyModule_AddType(module, st->reader_type) < 0) {
        return -1;
    }
    capsule = PyCapsule_New((void *)buffer_updated_direct, BUFFER_UPDATED_CAPSULE, NULL);
    if (capsule == NULL) {
        return -1;
    }
    rc = PyCapsule_SetContext(capsule, st);
    if (rc == 0) {
        rc = PyModule_AddObjectRef(module, "_buffer_updated", capsule);
    }
    Py_DECREF(capsule);
    return rc;
}

static int
speedups_traverse(PyObject *module, visitproc visit, void *arg)
{
    speedups_state *st = PyModule_GetState(module);
    Py_VISIT(st->str_continue);
    Py_VISIT(st->str_continue_big);
    Py_VISIT(st->empty_bytes);
    Py_VISIT(st->reader_type);
    return 0;
}

static int
speedups_clear(PyObject *module)
{
    speedups_state *st = PyModule_GetState(module);
    Py_CLEAR(st->str_continue);
    Py_CLEAR(st->str_continue_big);
    Py_CLEAR(st->empty_bytes);
    Py_CLEAR(st->reader_type);
    return 0;
}

static void
speedups_free(void *module)
{
    speedups_clear((PyObject *)module);
}

/* All state is per module (ReaderBase is a heap type), so the module suits
   subinterpreters and free threading. */
static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, (void *)speedups_exec},
#if PY_VERSION_HEX >= 0x030C0000
    /* 3.12: per-interpreter GILs, and the slot that allows them. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* 3.13: free-threaded builds, and the slot that says the GIL is not needed. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "portside.protocol._speedups",
    .m_doc = "C accelerator for portside.protocol.speedups.",
    .m_size = sizeof(speedups_state),
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
    .m_traverse = speedups_traverse,
    .m_clear = speedups_clear,
    .m_free = speedups_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}

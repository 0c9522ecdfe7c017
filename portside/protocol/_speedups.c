/*
 * C twins of the functions in _pyspeedups.py: masking, frame encoding and the
 * fast path of frame parsing (RFC 6455 section 5). Both implementations must
 * behave identically; tests/protocol/test_speedups.py checks them side by side.
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

/* Payloads this large are unmasked with the GIL released. */
#define NOGIL_MIN ((Py_ssize_t)1 << 16)

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
    for (; i + 64 <= n; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 32), _mm256_xor_si256(b, k));
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
    Py_ssize_t size = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    return PyByteArray_FromStringAndSize(NULL, size);
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
    uint64_t limit;
    PyObject *out, *item;
    const uint8_t *buf;
    uint8_t mask_bit;

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
    out = args[5];
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (pos < 0 || pos > end || end > view.len) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError,
                     "need 0 <= pos <= end <= len(buf), got pos=%zd, end=%zd, len(buf)=%zd",
                     pos, end, view.len);
        return NULL;
    }
    if (overflow < 0 || (!overflow && max_size < 0)) {
        /* No payload is small enough: every frame stops here. */
        PyBuffer_Release(&view);
        return PyLong_FromSsize_t(pos);
    }
    limit = overflow ? UINT64_MAX : (uint64_t)max_size;
    buf = view.buf;
    /* RFC 6455 5.1: clients mask every frame, servers none. */
    mask_bit = masked ? 0x80 : 0;

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
                    goto error;
                }
                /* Invalid UTF-8: the general parser fails the connection. */
                break;
            }
        }
        else if (key == NULL) {
            item = PyBytes_FromStringAndSize((const char *)buf + start, n);
            if (item == NULL) {
                goto error;
            }
        }
        else {
            item = PyBytes_FromStringAndSize(NULL, n);
            if (item == NULL) {
                goto error;
            }
            xor_mask_big((uint8_t *)PyBytes_AS_STRING(item), buf + start, n, key);
        }
        if (append_steal(out, item) < 0) {
            goto error;
        }
        pos = start + n;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(pos);

error:
    PyBuffer_Release(&view);
    return NULL;
}

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

/* The module keeps no state, so it suits subinterpreters and free threading. */
static PyModuleDef_Slot speedups_slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "portside.protocol._speedups",
    .m_doc = "C accelerator for portside.protocol.speedups.",
    .m_size = 0,
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}

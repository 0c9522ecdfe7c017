/*
 * send()'s fast path: a whole message written as one frame, as
 * Protocol.send_binary() or send_text() would frame it, without a Python frame.
 */

#include "_speedups.h"

/* Write a frame header without mask (RFC 6455 5.2) at out; return its length. */
static Py_ssize_t
write_header(unsigned char *out, unsigned char first, Py_ssize_t size)
{
    out[0] = first;
    if (size < 126) {
        out[1] = (unsigned char)size;
        return 2;
    }
    if (size < 65536) {
        out[1] = 126;
        out[2] = (unsigned char)(size >> 8);
        out[3] = (unsigned char)size;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) {
        out[2 + i] = (unsigned char)((unsigned long long)size >> (56 - 8 * i));
    }
    return 10;
}

static Py_ssize_t
header_size(Py_ssize_t size)
{
    return size < 126 ? 2 : size < 65536 ? 4 : 10;
}

/*
 * send() from a client: one frame masked with the protocol's next mask (RFC 6455
 * 5.3), as Protocol.send_binary() or send_text() would encode it. 1, or -1 on
 * error.
 */
static int
send_masked(ConnectionObject *conn, speedups_state *st, PyObject *protocol, unsigned char first,
            PyObject *message, const char *data, Py_ssize_t size)
{
    PyObject *payload, *mask, *opcode, *frame;
    PyObject *args[4];
    int rc;

    payload = first == 0x82 ? Py_NewRef(message) : PyBytes_FromStringAndSize(data, size);
    if (payload == NULL) {
        return -1;
    }
    if ((mask = call_method(st->str_next_mask, protocol, NULL, NULL, 0)) == NULL) {
        Py_DECREF(payload);
        return -1;
    }
    /* ccoverage: unreachable: 0x81 and 0x82 are CPython's preallocated small ints */
    if ((opcode = PyLong_FromLong(first)) == NULL) {
        Py_DECREF(payload);
        Py_DECREF(mask);
        return -1;
    }
    args[0] = NULL;
    args[1] = opcode;
    args[2] = payload;
    args[3] = mask;
    frame = PyObject_Vectorcall(st->encode_frame, args + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                NULL);
    Py_DECREF(opcode);
    Py_DECREF(payload);
    Py_DECREF(mask);
    if (frame == NULL) {
        return -1;
    }
    size = PyBytes_Check(frame) ? PyBytes_GET_SIZE(frame) : PyObject_Size(frame);
    rc = size < 0 ? -1 : write_frame(conn, st, frame);
    Py_DECREF(frame);
    if (rc < 0) {
        return -1;
    }
    count_sent(conn, size);
    return 1;
}

/*
 * Whether the transport's writelines() is asyncio.WriteTransport's, which joins
 * the buffers into one and calls write() (the selector loop's transports before
 * Python 3.12 have no other): joining them here saves its Python frame.
 */
static int
writelines_joins(speedups_state *st, PyObject *transport)
{
    return _PyType_Lookup(Py_TYPE(transport), st->str_writelines) == st->joining_writelines;
}

/*
 * send(): write a whole message from a server, as Protocol.send_binary() or
 * send_text() would frame it, when nothing else is involved. 1: written; 0:
 * not a case for the fast path; -1: error.
 */
int
send_fast(ConnectionObject *conn, speedups_state *st, PyObject *message)
{
    PyObject *protocol, *frame, *frames, *payload;
    const char *data;
    unsigned char header[10];
    Py_ssize_t size, hsize;
    unsigned char first;
    int ok, rc;

    /* First, as the Python send() calls it before framing: what it writes may
       change what follows. */
    if (run_write_barrier(conn) < 0) {
        return -1;
    }
    if (conn->fragmenting != Py_None || conn->transport == NULL || conn->protocol == NULL) {
        return 0;
    }
    if (PyBytes_CheckExact(message)) {
        data = PyBytes_AS_STRING(message);
        size = PyBytes_GET_SIZE(message);
        first = 0x82; /* FIN, binary */
    }
    else if (PyUnicode_CheckExact(message) && PyUnicode_IS_COMPACT_ASCII(message)) {
        /* ASCII is its own UTF-8. */
        data = (const char *)PyUnicode_DATA(message);
        size = PyUnicode_GET_LENGTH(message);
        first = 0x81; /* FIN, text */
    }
    else {
        return 0;
    }
    /* The conditions of Protocol.send_binary()'s fast path, read in its order. */
    protocol = Py_NewRef(conn->protocol);
    if (known_protocol(st, protocol) && PROTOCOL_SLOT(protocol, st->state_offset) &&
        PROTOCOL_SLOT(protocol, st->sending_offset) &&
        PROTOCOL_SLOT(protocol, st->deflate_offset) && PROTOCOL_SLOT(protocol, st->side_offset)) {
        ok = PROTOCOL_SLOT(protocol, st->state_offset) == st->open_state &&
             PROTOCOL_SLOT(protocol, st->deflate_offset) == Py_None;
        if (ok == 1) {
            ok = PyObject_IsTrue(PROTOCOL_SLOT(protocol, st->sending_offset));
            ok = ok < 0 ? -1 : !ok;
        }
        if (ok == 1 && PROTOCOL_SLOT(protocol, st->side_offset) == st->client_side) {
            ok = send_masked(conn, st, protocol, first, message, data, size);
            Py_DECREF(protocol);
            return ok;
        }
        if (ok == 1) {
            ok = PROTOCOL_SLOT(protocol, st->side_offset) == st->server_side;
        }
    }
    else {
        /* RFC 6455 5.3: a client masks its frames; here, that is the Python
           path's. */
        ok = attribute_is(protocol, st->str_state, st->open_state);
        if (ok == 1) {
            ok = attribute_truth(protocol, st->str_sending);
            ok = ok < 0 ? -1 : !ok;
        }
        if (ok == 1) {
            ok = attribute_is(protocol, st->str_deflate, Py_None);
        }
        if (ok == 1) {
            ok = attribute_is(protocol, st->str_side, st->server_side);
        }
    }
    Py_DECREF(protocol);
    if (ok <= 0) {
        return ok;
    }
    hsize = header_size(size);
    write_header(header, first, size);
    /* A large payload goes out as it is, behind its header: on the socket
       itself, or by writelines() unless that would join them anyway -- through
       connection._write_all(), which counts the bytes, and _writelines(), the
       one place that checks what writelines() may not tell (CPython gh-127655:
       see portside/asyncio/connection.py). */
    if (size >= st->copy_threshold) {
        if ((rc = write_header_and_payload(conn, st, header, hsize, data, size,
                                           first == 0x82 ? message : NULL)) != 0) {
            if (rc == 1) {
                count_sent(conn, hsize + size);
            }
            return rc;
        }
        if (!writelines_joins(st, conn->transport)) {
            payload = first == 0x81 ? PyBytes_FromStringAndSize(data, size) : Py_NewRef(message);
            frame = PyBytes_FromStringAndSize((const char *)header, hsize);
            frames = PyList_New(2);
            if (payload == NULL || frame == NULL || frames == NULL) {
                Py_XDECREF(payload);
                Py_XDECREF(frame);
                Py_XDECREF(frames);
                return -1;
            }
            PyList_SET_ITEM(frames, 0, frame);
            PyList_SET_ITEM(frames, 1, payload);
            rc = call_method_void(st->str_write_all, (PyObject *)conn, frames, NULL, 1);
            Py_DECREF(frames);
            if (rc < 0) {
                return -1;
            }
            count_sent(conn, 0); /* the message; _write_all() counted its bytes */
            return 1;
        }
    }
    /* Header and payload in one buffer, one write. */
    if ((frame = PyBytes_FromStringAndSize(NULL, hsize + size)) == NULL) {
        return -1;
    }
    memcpy(PyBytes_AS_STRING(frame), header, (size_t)hsize);
    memcpy(PyBytes_AS_STRING(frame) + hsize, data, (size_t)size);
    rc = write_frame(conn, st, frame);
    Py_DECREF(frame);
    if (rc < 0) {
        return -1;
    }
    count_sent(conn, hsize + size);
    return 1;
}

/*
 * Writing on the socket itself, when the transport's write() would send at once,
 * and _hook_transport(), which turns that on for the transports that allow it.
 */

#include "_speedups.h"

#ifdef PORTSIDE_SELECTOR_IO
/*
 * Whether write() would send this frame at once: the transport not closing,
 * nothing buffered; on the selector transport, no write_eof() and no sendfile
 * either. 1, 0, or -1 on error.
 */
static int
can_send_now(ConnectionObject *conn, speedups_state *st, PyObject *transport)
{
    if (conn->direct_io == DIRECT_WRITE) {
        return uvloop_can_send_now(st, transport);
    }
    return selector_can_send_now(st, transport);
}
#endif

/* transport.write(frame), on the socket itself when write() would send it at
   once. 0, or -1 on error. */
int
write_frame(ConnectionObject *conn, speedups_state *st, PyObject *frame)
{
    PyObject *transport = conn->transport, *rest = NULL;
    int rc;

#ifdef PORTSIDE_SELECTOR_IO
    if (conn->direct_io && transport == conn->hooked) {
        const char *data = PyBytes_AS_STRING(frame);
        Py_ssize_t size = PyBytes_GET_SIZE(frame), sent;

        if ((rc = can_send_now(conn, st, transport)) < 0) {
            return -1;
        }
        if (rc) {
            sent = send(conn->fd, data, (size_t)size, MSG_NOSIGNAL);
            if (sent == size) {
                return 0;
            }
            /* Whatever is left -- all of it after an error, which write()
               then meets and handles -- goes through write(), which buffers
               it and waits for the socket as it would have. */
            if (sent > 0 && (rest = PyBytes_FromStringAndSize(data + sent, size - sent)) == NULL) {
                return -1;
            }
        }
    }
#endif
    rc = call_method_void(st->str_write, transport, rest != NULL ? rest : frame, NULL, 1);
    Py_XDECREF(rest);
    return rc;
}

/*
 * The frame header and the payload (of owner, a bytes message, if not NULL), as
 * write() of the two joined would send them, without joining them first: 1
 * written (in full, or the rest handed to write()), 0 not a case for it, -1
 * error.
 */
int
write_header_and_payload(ConnectionObject *conn, speedups_state *st, const unsigned char *header,
                         Py_ssize_t hsize, const char *data, Py_ssize_t size, PyObject *owner)
{
#ifdef PORTSIDE_SELECTOR_IO
    PyObject *transport = conn->transport, *rest;
    struct iovec parts[2];
    struct msghdr message;
    Py_ssize_t sent, total = hsize + size;
    int rc;

    if (!conn->direct_io || transport != conn->hooked) {
        return 0;
    }
    if ((rc = can_send_now(conn, st, transport)) <= 0) {
        return rc;
    }
    parts[0].iov_base = (void *)header;
    parts[0].iov_len = (size_t)hsize;
    parts[1].iov_base = (void *)data;
    parts[1].iov_len = (size_t)size;
    memset(&message, 0, sizeof(message));
    message.msg_iov = parts;
    message.msg_iovlen = 2;
    sent = sendmsg(conn->fd, &message, MSG_NOSIGNAL);
    if (sent == total) {
        return 1;
    }
    /* The rest -- all of it after an error, which write() then meets and
       handles -- goes through write(), which buffers it. */
    if (sent < 0) {
        sent = 0;
    }
    if (sent >= hsize && owner != NULL) {
        /* Part of the payload of a bytes message: a view of the rest, which
           write() copies into its buffer or keeps, and no copy of ours. */
        PyObject *view = PyMemoryView_FromObject(owner);
        rest = view == NULL ? NULL : PySequence_GetSlice(view, sent - hsize, size);
        Py_XDECREF(view);
        if (rest == NULL) {
            return -1;
        }
    }
    else if ((rest = PyBytes_FromStringAndSize(NULL, total - sent)) == NULL) {
        return -1;
    }
    else if (sent < hsize) {
        memcpy(PyBytes_AS_STRING(rest), header + sent, (size_t)(hsize - sent));
        memcpy(PyBytes_AS_STRING(rest) + (hsize - sent), data, (size_t)size);
    }
    else {
        memcpy(PyBytes_AS_STRING(rest), data + (sent - hsize), (size_t)(total - sent));
    }
    rc = call_method_void(st->str_write, transport, rest, NULL, 1);
    Py_DECREF(rest);
    return rc < 0 ? -1 : 1;
#else
    return 0;
#endif
}

PyObject *
connection_hook_transport(ConnectionObject *self, PyTypeObject *defining_class,
                          PyObject *const *Py_UNUSED(args), Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *st = PyType_GetModuleState(defining_class);
    PyObject *transport = self->transport;

    if (no_arguments("_hook_transport", nargs, kwnames) < 0) {
        return NULL;
    }
#ifdef PORTSIDE_SELECTOR_IO
    if (self->direct_io || transport == NULL) {
        Py_RETURN_FALSE;
    }
    if (uvloop_transport(transport)) {
        return hook_uvloop_transport(self, st, transport);
    }
    return hook_selector_transport(self, st, transport);
#else
    Py_RETURN_FALSE;
#endif
}

PyObject *
connection_unhook_transport(ConnectionObject *self, PyTypeObject *defining_class,
                            PyObject *const *Py_UNUSED(args), Py_ssize_t nargs,
                            PyObject *kwnames)
{
    speedups_state *st = PyType_GetModuleState(defining_class);
    PyObject *transport;
    int rc;

    if (no_arguments("_unhook_transport", nargs, kwnames) < 0) {
        return NULL;
    }
    if (!self->direct_io) {
        Py_RETURN_NONE;
    }
    transport = self->hooked;
    self->hooked = NULL;
    if (self->direct_io == DIRECT_WRITE) {
        /* Nothing of the connection's on the transport. */
        self->direct_io = 0;
        Py_DECREF(transport);
        Py_RETURN_NONE;
    }
    self->direct_io = 0;
    rc = unhook_selector_transport(st, transport);
    Py_DECREF(transport);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

/* _write_frame(frame): write_frame() for Python callers, after the write
   barrier; broadcast() writes with it. */
PyObject *
connection_write_frame(ConnectionObject *self, PyTypeObject *defining_class,
                       PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *st = PyType_GetModuleState(defining_class);

    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "_write_frame() takes exactly one argument");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0])) {
        PyErr_Format(PyExc_TypeError, "_write_frame() takes bytes, not %.200s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    if (run_write_barrier(self) < 0) {
        return NULL;
    }
    if (self->transport == NULL) {
        unset_attribute((PyObject *)self, "transport");
        return NULL;
    }
    if (write_frame(self, st, args[0]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

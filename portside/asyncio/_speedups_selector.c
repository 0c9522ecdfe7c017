/*
 * The selector loop's socket transport.
 *
 * On asyncio's own loop, a read and a write go through the Python code of
 * asyncio.selector_events._SelectorSocketTransport: _read_ready__get_buffer()
 * calls get_buffer(), socket.recv_into() and buffer_updated(); write() tries
 * socket.send() when nothing is buffered. The connection does the same steps
 * itself on the socket's file descriptor, with the same outcome for every
 * case, and leaves the rest (EOF, errors, buffering, flow control) to the
 * transport's own methods. _hook_transport() turns this on when the transport
 * is exactly that class and looks as expected; other loops (uvloop) and
 * transports (TLS) are left alone.
 */

#include "_speedups.h"

/* transport._fatal_error(exc, message) for the exception being raised. NULL if
   that is SystemExit or KeyboardInterrupt, which go on up as they would from
   the transport's method; else None. */
static PyObject *
fatal_error(speedups_state *st, PyObject *transport, const char *message)
{
    PyObject *value, *text, *result;

    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return NULL;
    }
    value = take_exception();
    if ((text = PyUnicode_FromString(message)) == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    result = call_method(st->str_fatal_error, transport, value, text, 2);
    Py_DECREF(value);
    Py_DECREF(text);
    return result;
}

/*
 * transport.<name>, an attribute the selector transport keeps in its instance
 * dict (the transport's __dict__, dict): read there, some 110 instructions
 * against getattr's 190 (type lookup, descriptor checks). _hook_transport()
 * checked that the class defines none of these names, so the instance dict
 * decides; if one was deleted, getattr says what it is now. A new reference,
 * or NULL on error.
 */
static PyObject *
instance_attribute(PyObject *dict, PyObject *transport, PyObject *name)
{
    PyObject *value = PyDict_GetItemWithError(dict, name);
    if (value != NULL) {
        return Py_NewRef(value);
    }
    return PyErr_Occurred() ? NULL : PyObject_GetAttr(transport, name);
}

/* The truth of instance_attribute(): 1, 0, or -1 on error. */
static int
instance_truth(PyObject *dict, PyObject *transport, PyObject *name)
{
    return take_truth(instance_attribute(dict, transport, name));
}

/*
 * Whether the selector transport's write() would send at once: not closing, no
 * write_eof(), nothing buffered, no sendfile. 1, 0, or -1 on error.
 */
int
selector_can_send_now(speedups_state *st, PyObject *transport)
{
    PyObject *value, *dict;
    int rc;

    if ((dict = PyObject_GenericGetDict(transport, NULL)) == NULL) {
        return -1;
    }
    if ((rc = instance_truth(dict, transport, st->str_conn_lost)) != 0 ||
        (rc = instance_truth(dict, transport, st->str_eof)) != 0 ||
        (rc = instance_truth(dict, transport, st->str_buffer)) != 0) {
        Py_DECREF(dict);
        return rc < 0 ? -1 : 0;
    }
    value = instance_attribute(dict, transport, st->str_empty_waiter);
    rc = value == NULL ? -1 : value == Py_None;
    Py_XDECREF(value);
    Py_DECREF(dict);
    return rc;
}

#define GET_BUFFER_FAILED "Fatal error: protocol.get_buffer() call failed."
#define READ_FAILED "Fatal read error on socket transport"

/*
 * The error the transport's read meets with a buffer from get_buffer() that
 * cannot be written into, and which of the two messages above it logs:
 * len(buffer) failing, or 0, is get_buffer()'s failure; else the buffer goes
 * to socket.recv_into(), which refuses it with a TypeError, a read error.
 */
static const char *
unwritable_buffer(PyObject *buffer)
{
    Py_ssize_t size;

    PyErr_Clear();
    if ((size = PyObject_Size(buffer)) < 0) {
        return GET_BUFFER_FAILED;
    }
    if (size == 0) {
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
        return GET_BUFFER_FAILED;
    }
    PyErr_Format(PyExc_TypeError,
                 "recv_into() argument 'buffer' must be read-write bytes-like object, not %.200s",
                 Py_TYPE(buffer)->tp_name);
    return READ_FAILED;
}

PyObject *
connection_read_ready(ConnectionObject *self, PyTypeObject *defining_class,
                      PyObject *const *Py_UNUSED(args), Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *st = PyType_GetModuleState(defining_class);
    PyObject *transport, *dict, *buffer, *nbytes, *result;
    const char *failed = GET_BUFFER_FAILED;
    Py_buffer view;
    Py_ssize_t received;
    int lost, error;

    if (no_arguments("_read_ready", nargs, kwnames) < 0) {
        return NULL;
    }
    if (self->direct_io != DIRECT_READ_WRITE) {
        /* Unhooked meanwhile: the transport's own way. */
        if (self->transport == NULL) {
            unset_attribute((PyObject *)self, "transport");
            return NULL;
        }
        return call_method(st->str_get_buffer_cb, self->transport, NULL, NULL, 0);
    }
    /* The transport hooked, which calls this: self.transport unless replaced. */
    transport = Py_NewRef(self->hooked);
    /* The steps and the outcomes of _read_ready__get_buffer(). */
    if ((dict = PyObject_GenericGetDict(transport, NULL)) == NULL) {
        Py_DECREF(transport);
        return NULL;
    }
    lost = instance_truth(dict, transport, st->str_conn_lost);
    Py_DECREF(dict);
    if (lost != 0) {
        Py_DECREF(transport);
        return lost < 0 ? NULL : Py_NewRef(Py_None);
    }
    buffer = call_method(st->str_get_buffer, (PyObject *)self, st->minus_one, NULL, 1);
    if (buffer != NULL && PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE) < 0) {
        failed = unwritable_buffer(buffer);
        Py_CLEAR(buffer);
    }
    if (buffer != NULL && view.len == 0) {
        PyBuffer_Release(&view);
        Py_CLEAR(buffer);
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
    }
    if (buffer == NULL) {
        result = fatal_error(st, transport, failed);
        Py_DECREF(transport);
        return result;
    }
#ifdef PORTSIDE_SELECTOR_IO
    received = recv(self->fd, view.buf, (size_t)view.len, 0);
    error = errno;
#else
    received = -1;
    error = EAGAIN;
#endif
    PyBuffer_Release(&view);
    Py_DECREF(buffer);
    if (received < 0) {
        if (error == EAGAIN || error == EWOULDBLOCK || error == EINTR) {
            /* BlockingIOError, InterruptedError: the selector calls again. */
            result = Py_NewRef(Py_None);
        }
        else {
            errno = error;
            PyErr_SetFromErrno(PyExc_OSError);
            result = fatal_error(st, transport, READ_FAILED);
        }
    }
    else if (received == 0) {
        result = call_method(st->str_on_eof, transport, NULL, NULL, 0);
    }
    else if ((nbytes = PyLong_FromSsize_t(received)) == NULL) {
        result = NULL;
    }
    else {
        if (_PyType_Lookup(Py_TYPE(self), st->str_buffer_updated) == st->buffer_updated) {
            Py_BEGIN_CRITICAL_SECTION(self);
            result = connection_buffer_updated_impl(self, st, nbytes);
            Py_END_CRITICAL_SECTION();
        }
        else {
            result = call_method(st->str_buffer_updated, (PyObject *)self, nbytes, NULL, 1);
        }
        Py_DECREF(nbytes);
        if (result == NULL) {
            result = fatal_error(st, transport,
                                 "Fatal error: protocol.buffer_updated() call failed.");
        }
    }
    Py_DECREF(transport);
    return result;
}

/*
 * _hook_transport() of a transport of exactly asyncio's selector class: the
 * connection becomes its _read_ready_cb, and reads and writes on its socket.
 * True if hooked, False if the transport is not as expected; NULL on error.
 */
PyObject *
hook_selector_transport(ConnectionObject *self, speedups_state *st, PyObject *transport)
{
    PyObject *current = NULL, *own = NULL, *fd = NULL, *hook;
    int same, overflow;
    long number;

    if (st->selector_transport == NULL ||
        (PyObject *)Py_TYPE(transport) != st->selector_transport) {
        Py_RETURN_FALSE;
    }
    /* Every attribute used later, or nothing is done (another Python's). The
       first four, state that can_send_now() and _read_ready() read from the
       instance dict, must not be defined by the class (see instance_truth()). */
    {
        PyObject *names[] = {st->str_conn_lost, st->str_eof, st->str_empty_waiter,
                             st->str_buffer, st->str_on_eof, st->str_fatal_error};
        const size_t state_names = 4;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if ((same = has_attribute(transport, names[i])) <= 0) {
                return same < 0 ? NULL : Py_NewRef(Py_False);
            }
            if (i < state_names && _PyType_Lookup(Py_TYPE(transport), names[i]) != NULL) {
                Py_RETURN_FALSE;
            }
        }
    }
    /* Reading into get_buffer(): _read_ready_cb is _read_ready__get_buffer; the
       socket's descriptor in _sock_fd. Without them, the transport is another
       Python's too, and left alone. */
    if ((same = optional_attribute(transport, st->str_read_ready_cb, &current)) > 0 &&
        (same = optional_attribute(transport, st->str_get_buffer_cb, &own)) > 0 &&
        (same = PyObject_RichCompareBool(current, own, Py_EQ)) > 0) {
        same = optional_attribute(transport, st->str_sock_fd, &fd);
    }
    Py_XDECREF(current);
    Py_XDECREF(own);
    if (same <= 0) {
        return same < 0 ? NULL : Py_NewRef(Py_False);
    }
    /* An int's value, without error; -1 with overflow set if it does not fit. */
    number = PyLong_Check(fd) ? PyLong_AsLongAndOverflow(fd, &overflow) : -1;
    Py_DECREF(fd);
    if (number < 0 || number > INT_MAX) {
        Py_RETURN_FALSE;
    }
    if ((hook = PyObject_GetAttr((PyObject *)self, st->str_read_ready)) == NULL) {
        return NULL;
    }
    same = PyObject_SetAttr(transport, st->str_read_ready_cb, hook);
    Py_DECREF(hook);
    if (same < 0) {
        return NULL;
    }
    self->fd = (int)number;
    self->hooked = Py_NewRef(transport);
    self->direct_io = DIRECT_READ_WRITE;
    Py_RETURN_TRUE;
}

/*
 * _unhook_transport()'s part: the transport reads with its own method again,
 * and lets go of its reference to the connection, which would keep both alive
 * until the garbage collector came. 0, or -1 on error.
 */
int
unhook_selector_transport(speedups_state *st, PyObject *transport)
{
    PyObject *own;
    int rc;

    if ((own = PyObject_GetAttr(transport, st->str_get_buffer_cb)) == NULL) {
        return -1;
    }
    rc = PyObject_SetAttr(transport, st->str_read_ready_cb, own);
    Py_DECREF(own);
    return rc;
}

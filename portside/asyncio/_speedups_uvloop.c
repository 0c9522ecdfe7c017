/*
 * uvloop's socket transports: the connection writes on their socket itself
 * when write() would send at once. Reading stays libuv's.
 */

#include "_speedups.h"

/*
 * uvloop's socket transports (plain TCP or Unix, not TLS): write() sends at
 * once what the socket takes when the transport is not closing and holds
 * nothing, as the connection can do itself; reading stays libuv's. Told by the
 * type's name, so that uvloop is not imported for it.
 */
int
uvloop_transport(PyObject *transport)
{
    const char *name = Py_TYPE(transport)->tp_name;
    return strcmp(name, "uvloop.loop.TCPTransport") == 0 ||
           strcmp(name, "uvloop.loop.UnixTransport") == 0;
}

/* The file descriptor of transport.get_extra_info("socket"): 0 and *fd set,
   1 if there is none, -1 on error. */
static int
extra_info_fd(speedups_state *st, PyObject *transport, int *fd)
{
    PyObject *sock;
    Py_ssize_t value;
    int rc;

    sock = call_method(st->str_get_extra_info, transport, st->str_socket, NULL, 1);
    if (sock == NULL) {
        return -1;
    }
    if (sock == Py_None) {
        Py_DECREF(sock);
        return 1;
    }
    rc = call_method_size(st->str_fileno, sock, &value);
    Py_DECREF(sock);
    if (rc < 0) {
        return -1;
    }
    if (value < 0 || value > INT_MAX) {
        return 1;
    }
    *fd = (int)value;
    return 0;
}

/*
 * Whether write() would send at once: the transport not closing, nothing
 * buffered. Public methods only: write() after write_eof() sends too (uvloop
 * keeps that flag to itself); portside never calls it. 1, 0, or -1 on error.
 */
int
uvloop_can_send_now(speedups_state *st, PyObject *transport)
{
    PyObject *value;
    Py_ssize_t size;
    int rc;

    if ((value = call_method(st->str_is_closing, transport, NULL, NULL, 0)) == NULL) {
        return -1;
    }
    rc = PyObject_IsTrue(value);
    Py_DECREF(value);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    if (call_method_size(st->str_write_buffer_size, transport, &size) < 0) {
        return -1;
    }
    return size == 0;
}

/* _hook_transport() of a uvloop transport: the connection writes on its socket.
   True if hooked, False if it has none; NULL on error. */
PyObject *
hook_uvloop_transport(ConnectionObject *self, speedups_state *st, PyObject *transport)
{
    int fd, rc;

    if ((rc = extra_info_fd(st, transport, &fd)) != 0) {
        return rc < 0 ? NULL : Py_NewRef(Py_False);
    }
    self->fd = fd;
    self->hooked = Py_NewRef(transport);
    self->direct_io = DIRECT_WRITE;
    Py_RETURN_TRUE;
}

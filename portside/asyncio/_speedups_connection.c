/*
 * ConnectionBase, the C twin of _pyspeedups.py's: its fields (the twin's
 * __slots__), its method table, and its lifetime. The methods live with their
 * concern: buffer_updated() in _speedups_receive.c, recv(), send() and
 * __anext__() in _speedups_operation.c, the socket's in _speedups_direct_io.c
 * and _speedups_selector.c.
 */

#include "_speedups.h"

/* The methods subclasses implement: these raise NotImplementedError. */

static PyObject *
not_implemented(const char *name, Py_ssize_t nargs, Py_ssize_t expected)
{
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd arguments (%zd given)", name,
                     expected, nargs);
    }
    else {
        PyErr_SetNone(PyExc_NotImplementedError);
    }
    return NULL;
}

static PyObject *
connection_receive_handshake(PyObject *Py_UNUSED(self), PyObject *const *Py_UNUSED(args),
                             Py_ssize_t nargs)
{
    return not_implemented("_receive_handshake", nargs, 1);
}

static PyObject *
connection_enqueue(PyObject *Py_UNUSED(self), PyObject *const *Py_UNUSED(args),
                   Py_ssize_t nargs)
{
    return not_implemented("_enqueue", nargs, 1);
}

static PyObject *
connection_on_event(PyObject *Py_UNUSED(self), PyObject *const *Py_UNUSED(args),
                    Py_ssize_t nargs)
{
    return not_implemented("_on_event", nargs, 2);
}

static PyObject *
connection_write_all(PyObject *Py_UNUSED(self), PyObject *const *Py_UNUSED(args),
                     Py_ssize_t nargs)
{
    return not_implemented("_write_all", nargs, 1);
}

static int
connection_traverse(ConnectionObject *self, visitproc visit, void *arg)
{
    /* Instances of heap types reference their type. */
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->protocol);
    Py_VISIT(self->waiter);
    Py_VISIT(self->spare_waiter);
    Py_VISIT(self->hooked);
    Py_VISIT(self->loop);
    Py_VISIT(self->transport);
    Py_VISIT(self->messages);
    Py_VISIT(self->pending_error);
    Py_VISIT(self->fragmenting);
    Py_VISIT(self->write_barrier);
    return 0;
}

static int
connection_clear(ConnectionObject *self)
{
    PyObject *spare;

    Py_CLEAR(self->protocol);
    Py_CLEAR(self->waiter);
    self->direct_io = 0;
    Py_CLEAR(self->hooked);
    if ((spare = self->spare_waiter) != NULL) {
        self->spare_waiter = NULL;
        drop_waiter(spare);
    }
    Py_CLEAR(self->loop);
    Py_CLEAR(self->transport);
    Py_CLEAR(self->messages);
    Py_CLEAR(self->pending_error);
    Py_CLEAR(self->fragmenting);
    Py_CLEAR(self->write_barrier);
    return 0;
}

static void
connection_dealloc(ConnectionObject *self)
{
    /* Py_TYPE(self) may be a Python subclass: its dealloc cleared its own
       attributes and left the reference to the type for us to drop. */
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    connection_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* The methods' docs, with the signatures help() shows. */

PyDoc_STRVAR(connection_buffer_updated_doc,
"buffer_updated($self, nbytes, /)\n--\n\n"
"Process nbytes received (asyncio.BufferedProtocol).");

PyDoc_STRVAR(connection_recv_doc,
"recv($self, /, decode=None)\n--\n\n"
"Return the next message: str for text, bytes for binary (awaitable);\n"
"decode=True: binary as str too, decode=False: text as bytes too.");

PyDoc_STRVAR(connection_send_doc,
"send($self, /, message, *, text=None)\n--\n\n"
"Send a message (awaitable): str as text, bytes-like as binary, an iterable\n"
"or async iterable of them as a fragmented message; text=True/False forces\n"
"the frame type.");

PyDoc_STRVAR(connection_read_ready_doc,
"_read_ready($self, /)\n--\n\n"
"Read from the socket: the selector transport's _read_ready_cb once hooked.");

PyDoc_STRVAR(connection_hook_transport_doc,
"_hook_transport($self, /)\n--\n\n"
"Write on the socket directly when write() would send at once, and on asyncio's\n"
"selector socket transport read too (into get_buffer()); return whether the\n"
"transport is one of those.");

PyDoc_STRVAR(connection_unhook_transport_doc,
"_unhook_transport($self, /)\n--\n\n"
"Undo _hook_transport(): the transport reads and writes as it did.");

PyDoc_STRVAR(connection_write_frame_doc,
"_write_frame($self, frame, /)\n--\n\n"
"Write an encoded frame (bytes) as transport.write(frame) would: on the socket\n"
"itself when write() would send it at once. broadcast() writes with it.");

static PyMethodDef connection_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))connection_recv,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS, connection_recv_doc},
    {"send", (PyCFunction)(void (*)(void))connection_send,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS, connection_send_doc},
    {"buffer_updated", (PyCFunction)(void (*)(void))connection_buffer_updated,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS, connection_buffer_updated_doc},
    {"_receive_handshake", (PyCFunction)(void (*)(void))connection_receive_handshake,
     METH_FASTCALL, "Process nbytes of the opening handshake (subclasses implement it)."},
    {"_enqueue", (PyCFunction)(void (*)(void))connection_enqueue, METH_FASTCALL,
     "Queue a message nobody waits for (subclasses implement it)."},
    {"_on_event", (PyCFunction)(void (*)(void))connection_on_event, METH_FASTCALL,
     "Act on an event other than a message (subclasses implement it)."},
    {"_write_all", (PyCFunction)(void (*)(void))connection_write_all, METH_FASTCALL,
     "Write frames to the transport (subclasses implement it)."},
    {"_read_ready", (PyCFunction)(void (*)(void))connection_read_ready,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS, connection_read_ready_doc},
    {"_hook_transport", (PyCFunction)(void (*)(void))connection_hook_transport,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS, connection_hook_transport_doc},
    {"_unhook_transport", (PyCFunction)(void (*)(void))connection_unhook_transport,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS, connection_unhook_transport_doc},
    {"_write_frame", (PyCFunction)(void (*)(void))connection_write_frame,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS, connection_write_frame_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef connection_members[] = {
    {"protocol", Py_T_OBJECT_EX, offsetof(ConnectionObject, protocol), 0,
     "The sans-I/O protocol."},
    {"_waiter", Py_T_OBJECT_EX, offsetof(ConnectionObject, waiter), 0,
     "The future of the coroutine blocked in recv(), or None."},
    {"_handshaking", Py_T_BOOL, offsetof(ConnectionObject, handshaking), 0,
     "Whether received bytes belong to the opening handshake."},
    {"loop", Py_T_OBJECT_EX, offsetof(ConnectionObject, loop), 0, "The event loop."},
    {"transport", Py_T_OBJECT_EX, offsetof(ConnectionObject, transport), 0,
     "The asyncio transport."},
    {"_messages", Py_T_OBJECT_EX, offsetof(ConnectionObject, messages), 0,
     "A deque of the messages nobody read yet, or None."},
    {"_pending_error", Py_T_OBJECT_EX, offsetof(ConnectionObject, pending_error), 0,
     "The ProtocolError to fail the connection on, or None."},
    {"_fragmenting", Py_T_OBJECT_EX, offsetof(ConnectionObject, fragmenting), 0,
     "A future while a fragmented message is being sent, or None."},
    {"_reading_paused", Py_T_BOOL, offsetof(ConnectionObject, reading_paused), 0,
     "Whether a full queue paused reading."},
    {"_write_paused", Py_T_BOOL, offsetof(ConnectionObject, write_paused), 0,
     "Whether the transport's write buffer is over the limit."},
    {"messages_received", Py_T_LONGLONG, offsetof(ConnectionObject, messages_received), 0,
     "Data messages received."},
    {"messages_sent", Py_T_LONGLONG, offsetof(ConnectionObject, messages_sent), 0,
     "Data messages sent."},
    {"bytes_received", Py_T_LONGLONG, offsetof(ConnectionObject, bytes_received), 0,
     "Bytes received after the opening handshake: frames, as on the wire."},
    {"bytes_sent", Py_T_LONGLONG, offsetof(ConnectionObject, bytes_sent), 0,
     "Bytes of frames written after the opening handshake, control frames included."},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *
connection_get_direct_io(ConnectionObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->direct_io);
}

int
call_write_barrier(ConnectionObject *conn)
{
    /* The barrier may replace itself: hold it for the call. */
    PyObject *barrier = Py_NewRef(conn->write_barrier);
    PyObject *result = PyObject_CallNoArgs(barrier);

    Py_DECREF(barrier);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* None when unset, so that the fast paths test one pointer: a slot of the twin,
   which __new__ sets to None. */
static PyObject *
connection_get_write_barrier(ConnectionObject *self, void *Py_UNUSED(closure))
{
    PyObject *barrier;

    /* Locked on free-threaded builds, as a member descriptor's access is. */
    Py_BEGIN_CRITICAL_SECTION(self);
    barrier = Py_NewRef(self->write_barrier != NULL ? self->write_barrier : Py_None);
    Py_END_CRITICAL_SECTION();
    return barrier;
}

static int
connection_set_write_barrier(ConnectionObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    PyObject *old;

    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "cannot delete _write_barrier: set it to None");
        return -1;
    }
    Py_BEGIN_CRITICAL_SECTION(self);
    old = self->write_barrier;
    self->write_barrier = value == Py_None ? NULL : Py_NewRef(value);
    Py_END_CRITICAL_SECTION();
    /* Released unlocked: its finalizer may run any code. */
    Py_XDECREF(old);
    return 0;
}

static PyGetSetDef connection_getset[] = {
    /* Not a slot of the Python twin, which has a class attribute: 0. */
    {"_direct_io", (getter)connection_get_direct_io, NULL,
     "0; 1 when reading and writing on the socket itself (asyncio's selector\n"
     "transport), 2 when writing only (uvloop's): see _hook_transport().",
     NULL},
    {"_write_barrier", (getter)connection_get_write_barrier,
     (setter)connection_set_write_barrier,
     "None, or a callable without arguments that every write to the transport\n"
     "calls first (send(), ping(), close(), _write_frame()...): the pub/sub hub\n"
     "writes what it deferred for the connection then. It must not raise; if it\n"
     "does, the write raises the exception and writes nothing.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(connection_doc,
"Hands received messages to the coroutine waiting for one.\n\n"
"Subclasses (portside.asyncio.connection.Connection) provide\n"
"_receive_handshake(nbytes), _enqueue(message), _on_event(event, alone) and\n"
"_write_all(frames).");

static PyType_Slot connection_slots[] = {
    {Py_tp_doc, (void *)connection_doc},
    {Py_tp_traverse, (void *)connection_traverse},
    {Py_tp_clear, (void *)connection_clear},
    {Py_tp_dealloc, (void *)connection_dealloc},
    {Py_tp_methods, connection_methods},
    {Py_tp_members, connection_members},
    {Py_tp_getset, connection_getset},
    {Py_am_anext, (void *)connection_anext},
    {0, NULL},
};

PyType_Spec connection_spec = {
    .name = "portside.asyncio._speedups.ConnectionBase",
    .basicsize = sizeof(ConnectionObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = connection_slots,
};

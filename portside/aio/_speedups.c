/*
 * C twin of _pyspeedups.py: ConnectionBase, the receive path of an asyncio
 * connection. It takes the events of the sans-I/O protocol and hands messages
 * to the coroutine waiting in recv(), the rest to the Python subclass. Both
 * implementations must behave identically; tests/aio/test_speedups.py checks
 * them side by side.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>

#if PY_VERSION_HEX < 0x030C0000
#include <structmember.h>
#define Py_T_BOOL T_BOOL
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif

/* Free-threaded builds lock the object for the duration of a method, as the
   member descriptors do for each access; other builds have the GIL. */
#if PY_VERSION_HEX < 0x030D0000
#define Py_BEGIN_CRITICAL_SECTION(op) {
#define Py_END_CRITICAL_SECTION() }
#endif

/* Module state: the names of what buffer_updated calls, interned once. */

typedef struct {
    PyObject *str_buffer_updated; /* protocol.buffer_updated(nbytes) */
    PyObject *str_data_to_send;   /* protocol.data_to_send() */
    PyObject *str_out;            /* protocol._out */
    PyObject *str_done;           /* waiter.done() */
    PyObject *str_set_result;     /* waiter.set_result(message) */
    PyObject *str_receive_handshake;
    PyObject *str_enqueue;
    PyObject *str_on_event;
    PyObject *str_write_all;
} speedups_state;

/* ConnectionBase. */

/*
 * The fields of the Python twin's __slots__, with the same names. Object fields
 * are NULL until set, and reading one then raises AttributeError, as reading an
 * unset slot does; Connection.__init__ sets them all.
 */
typedef struct {
    PyObject_HEAD
    PyObject *protocol; /* protocol: the sans-I/O protocol */
    PyObject *waiter;   /* _waiter: the future of the coroutine in recv(), or None */
    char handshaking;   /* _handshaking: received bytes belong to the handshake */
} ConnectionObject;

/* The AttributeError of reading an unset slot, worded as CPython words it. */
static void
unset_attribute(PyObject *obj, const char *name)
{
    PyErr_Format(PyExc_AttributeError, "'%.200s' object has no attribute '%s'",
                 Py_TYPE(obj)->tp_name, name);
}

/* Return obj.<name>(*args[:nargs]), nargs <= 2. */
static PyObject *
call_method(PyObject *name, PyObject *obj, PyObject *a, PyObject *b, size_t nargs)
{
    /* A free slot before obj lets the callee prepend its own argument. */
    PyObject *stack[4] = {NULL, obj, a, b};
    return PyObject_VectorcallMethod(name, stack + 1,
                                     (nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* The same, for a call made for its side effects only: 0, or -1 on error. */
static int
call_method_void(PyObject *name, PyObject *obj, PyObject *a, PyObject *b, size_t nargs)
{
    PyObject *result = call_method(name, obj, a, b, nargs);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* Hand a message to the waiting coroutine, else to self._enqueue(). */
static int
deliver_message(ConnectionObject *self, speedups_state *st, PyObject *message)
{
    PyObject *waiter, *done;
    int is_done;

    if (self->waiter == NULL) {
        unset_attribute((PyObject *)self, "_waiter");
        return -1;
    }
    if (self->waiter != Py_None) {
        /* Take the waiter's reference: it leaves self._waiter. */
        waiter = self->waiter;
        self->waiter = Py_NewRef(Py_None);
        done = call_method(st->str_done, waiter, NULL, NULL, 0);
        if (done == NULL) {
            Py_DECREF(waiter);
            return -1;
        }
        is_done = PyObject_IsTrue(done);
        Py_DECREF(done);
        if (is_done < 0) {
            Py_DECREF(waiter);
            return -1;
        }
        if (!is_done) {
            is_done = call_method_void(st->str_set_result, waiter, message, NULL, 1);
            Py_DECREF(waiter);
            return is_done;
        }
        /* recv() was cancelled: the message waits in the queue. */
        Py_DECREF(waiter);
    }
    return call_method_void(st->str_enqueue, (PyObject *)self, message, NULL, 1);
}

/* Hand one event to the waiter, _enqueue() or _on_event(). */
static int
handle_event(ConnectionObject *self, speedups_state *st, PyObject *event, PyObject *events)
{
    Py_ssize_t count;

    /* Exactly bytes or str, as the twin's event.__class__ checks. */
    if (PyBytes_CheckExact(event) || PyUnicode_CheckExact(event)) {
        return deliver_message(self, st, event);
    }
    /* Read when the event comes, as len(events) is: a callee may change it. */
    if ((count = PyObject_Size(events)) < 0) {
        return -1;
    }
    return call_method_void(st->str_on_event, (PyObject *)self, event,
                            count == 1 ? Py_True : Py_False, 2);
}

/* Hand every event to the waiter, _enqueue() or _on_event(), in order. */
static int
handle_events(ConnectionObject *self, speedups_state *st, PyObject *events)
{
    PyObject *iterator, *event;
    int rc = 0;

    if (PyList_CheckExact(events)) {
        /* As a list iterator does, read the size again after every event. */
        for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(events); i++) {
            event = Py_NewRef(PyList_GET_ITEM(events, i));
            rc = handle_event(self, st, event, events);
            Py_DECREF(event);
        }
        return rc;
    }
    if ((iterator = PyObject_GetIter(events)) == NULL) {
        return -1;
    }
    while (rc == 0 && (event = PyIter_Next(iterator)) != NULL) {
        rc = handle_event(self, st, event, events);
        Py_DECREF(event);
    }
    Py_DECREF(iterator);
    return PyErr_Occurred() ? -1 : 0;
}

/* Write the Pongs and Close replies that the protocol produced while receiving. */
static int
write_output(ConnectionObject *self, speedups_state *st, PyObject *protocol)
{
    PyObject *out, *frames;
    int pending;

    if ((out = PyObject_GetAttr(protocol, st->str_out)) == NULL) {
        return -1;
    }
    pending = PyObject_IsTrue(out);
    Py_DECREF(out);
    if (pending <= 0) {
        return pending;
    }
    if ((frames = call_method(st->str_data_to_send, protocol, NULL, NULL, 0)) == NULL) {
        return -1;
    }
    pending = call_method_void(st->str_write_all, (PyObject *)self, frames, NULL, 1);
    Py_DECREF(frames);
    return pending;
}

static PyObject *
connection_buffer_updated_impl(ConnectionObject *self, speedups_state *st, PyObject *nbytes)
{
    PyObject *protocol, *events;
    int rc;

    if (self->handshaking) {
        rc = call_method_void(st->str_receive_handshake, (PyObject *)self, nbytes, NULL, 1);
        return rc < 0 ? NULL : Py_NewRef(Py_None);
    }
    if (self->protocol == NULL) {
        unset_attribute((PyObject *)self, "protocol");
        return NULL;
    }
    /* Held for the whole call, like the twin's local variables: callbacks may
       replace self.protocol, the output is still that of this protocol. */
    protocol = Py_NewRef(self->protocol);
    events = call_method(st->str_buffer_updated, protocol, nbytes, NULL, 1);
    rc = events == NULL ? -1 : handle_events(self, st, events);
    if (rc == 0) {
        rc = write_output(self, st, protocol);
    }
    Py_XDECREF(events);
    Py_DECREF(protocol);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

PyDoc_STRVAR(connection_buffer_updated_doc,
"buffer_updated($self, nbytes, /)\n--\n\n"
"Process nbytes received (asyncio.BufferedProtocol).");

static PyObject *
connection_buffer_updated(ConnectionObject *self, PyTypeObject *defining_class,
                          PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *st;
    PyObject *result;

    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "buffer_updated() takes no keyword arguments");
        return NULL;
    }
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "buffer_updated() takes exactly 1 argument (%zd given)",
                     nargs);
        return NULL;
    }
    st = PyType_GetModuleState(defining_class);
    Py_BEGIN_CRITICAL_SECTION(self);
    result = connection_buffer_updated_impl(self, st, args[0]);
    Py_END_CRITICAL_SECTION();
    return result;
}

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
    return 0;
}

static int
connection_clear(ConnectionObject *self)
{
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->waiter);
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

static PyMethodDef connection_methods[] = {
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
    {NULL, NULL, 0, NULL},
};

static PyMemberDef connection_members[] = {
    {"protocol", Py_T_OBJECT_EX, offsetof(ConnectionObject, protocol), 0,
     "The sans-I/O protocol."},
    {"_waiter", Py_T_OBJECT_EX, offsetof(ConnectionObject, waiter), 0,
     "The future of the coroutine blocked in recv(), or None."},
    {"_handshaking", Py_T_BOOL, offsetof(ConnectionObject, handshaking), 0,
     "Whether received bytes belong to the opening handshake."},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(connection_doc,
"Hands received messages to the coroutine waiting for one.\n\n"
"Subclasses (portside.aio.connection.Connection) provide\n"
"_receive_handshake(nbytes), _enqueue(message), _on_event(event, alone) and\n"
"_write_all(frames).");

static PyType_Slot connection_slots[] = {
    {Py_tp_doc, (void *)connection_doc},
    {Py_tp_traverse, (void *)connection_traverse},
    {Py_tp_clear, (void *)connection_clear},
    {Py_tp_dealloc, (void *)connection_dealloc},
    {Py_tp_methods, connection_methods},
    {Py_tp_members, connection_members},
    {0, NULL},
};

static PyType_Spec connection_spec = {
    .name = "portside.aio._speedups.ConnectionBase",
    .basicsize = sizeof(ConnectionObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = connection_slots,
};

/* The module. */

/* Every string of the state, for exec, traverse and clear. */
#define STATE_STRINGS(st) \
    &(st)->str_buffer_updated, &(st)->str_data_to_send, &(st)->str_out, &(st)->str_done, \
    &(st)->str_set_result, &(st)->str_receive_handshake, &(st)->str_enqueue, \
    &(st)->str_on_event, &(st)->str_write_all

static const char *const state_names[] = {
    "buffer_updated", "data_to_send", "_out", "done", "set_result",
    "_receive_handshake", "_enqueue", "_on_event", "_write_all",
};

#define STATE_COUNT (sizeof(state_names) / sizeof(state_names[0]))

static int
speedups_exec(PyObject *module)
{
    speedups_state *st = PyModule_GetState(module);
    PyObject **strings[] = {STATE_STRINGS(st)};
    PyObject *type;
    int rc;

    Py_BUILD_ASSERT(sizeof(strings) / sizeof(strings[0]) == STATE_COUNT);
    for (size_t i = 0; i < STATE_COUNT; i++) {
        if ((*strings[i] = PyUnicode_InternFromString(state_names[i])) == NULL) {
            return -1;
        }
    }
    if ((type = PyType_FromModuleAndSpec(module, &connection_spec, NULL)) == NULL) {
        return -1;
    }
    rc = PyModule_AddType(module, (PyTypeObject *)type);
    Py_DECREF(type);
    return rc;
}

static int
speedups_traverse(PyObject *module, visitproc visit, void *arg)
{
    speedups_state *st = PyModule_GetState(module);
    PyObject **strings[] = {STATE_STRINGS(st)};
    for (size_t i = 0; i < STATE_COUNT; i++) {
        Py_VISIT(*strings[i]);
    }
    return 0;
}

static int
speedups_clear(PyObject *module)
{
    speedups_state *st = PyModule_GetState(module);
    PyObject **strings[] = {STATE_STRINGS(st)};
    for (size_t i = 0; i < STATE_COUNT; i++) {
        Py_CLEAR(*strings[i]);
    }
    return 0;
}

static void
speedups_free(void *module)
{
    speedups_clear((PyObject *)module);
}

/* All state is per module (ConnectionBase is a heap type), so the module suits
   subinterpreters and free threading. */
static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, (void *)speedups_exec},
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
    .m_name = "portside.aio._speedups",
    .m_doc = "C accelerator for portside.aio.speedups.",
    .m_size = sizeof(speedups_state),
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

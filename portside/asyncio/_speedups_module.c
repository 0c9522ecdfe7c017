/*
 * portside.asyncio._speedups, the C twin of _pyspeedups.py: ConnectionBase, the
 * receive path of an asyncio connection, with its Waiter and Operation. This
 * file holds the module: its state (interned names, and objects of portside and
 * asyncio that the fast paths compare with), found once when it loads. Both
 * implementations must behave identically; tests/asyncio/test_speedups.py checks
 * them side by side. _speedups.h lists the files and what each is about.
 */

#include "_speedups.h"

/* Every string of the state, for exec, traverse and clear. */
#define STATE_STRINGS(st) \
    &(st)->str_buffer_updated, &(st)->str_data_to_send, &(st)->str_out, &(st)->str_done, \
    &(st)->str_set_result, &(st)->str_receive_handshake, &(st)->str_enqueue, \
    &(st)->str_on_event, &(st)->str_write_all, &(st)->str_state, &(st)->str_sending, \
    &(st)->str_deflate, &(st)->str_side, &(st)->str_reading, &(st)->str_write, \
    &(st)->str_writelines, &(st)->str_popleft, &(st)->str_call_soon, &(st)->str_context, \
    &(st)->str_recv_in_python, &(st)->str_send_in_python, &(st)->str_drain, &(st)->str_requeue, &(st)->str_next_mask, \
    &(st)->str_throw, &(st)->str_close, &(st)->str_future_blocking, &(st)->str_get_loop, \
    &(st)->str_add_done_callback, &(st)->str_result, &(st)->str_conn_lost, &(st)->str_eof, \
    &(st)->str_empty_waiter, &(st)->str_buffer, &(st)->str_sock_fd, &(st)->str_read_ready_cb, \
    &(st)->str_get_buffer_cb, &(st)->str_on_eof, &(st)->str_fatal_error, &(st)->str_get_buffer, \
    &(st)->str_read_ready, &(st)->str_is_closing, &(st)->str_write_buffer_size, \
    &(st)->str_get_extra_info, &(st)->str_socket, &(st)->str_fileno

static const char *const state_names[] = {
    "buffer_updated", "data_to_send", "_out", "done", "set_result",
    "_receive_handshake", "_enqueue", "_on_event", "_write_all", "state", "_sending",
    "deflate", "side", "_reading", "write", "writelines", "popleft", "call_soon", "context",
    "_recv_in_python", "_send_in_python", "_drain", "_requeue", "_next_mask", "throw", "close",
    "_asyncio_future_blocking", "get_loop", "add_done_callback", "result",
    "_conn_lost", "_eof", "_empty_waiter", "_buffer", "_sock_fd", "_read_ready_cb",
    "_read_ready__get_buffer", "_read_ready__on_eof", "_fatal_error", "get_buffer",
    "_read_ready", "is_closing", "get_write_buffer_size", "get_extra_info", "socket",
    "fileno",
};

/* The object of portside that the fast paths compare with: a new reference. */
static PyObject *
import_from(const char *module_name, const char *name)
{
    PyObject *module = PyImport_ImportModule(module_name), *value;
    if (module == NULL) {
        return NULL;
    }
    value = PyObject_GetAttrString(module, name);
    Py_DECREF(module);
    return value;
}

/* asyncio.WriteTransport.writelines, the function: a new reference. */
static PyObject *
write_transport_writelines(void)
{
    PyObject *type = import_from("asyncio", "WriteTransport"), *function;
    if (type == NULL) {
        return NULL;
    }
    function = PyObject_GetAttrString(type, "writelines");
    Py_DECREF(type);
    return function;
}

/* The objects of the state, besides the strings. */
#define STATE_OBJECTS(st) \
    &(st)->open_state, &(st)->server_side, &(st)->closed_ok, &(st)->cancelled_error, \
    &(st)->invalid_state_error, &(st)->context_kwnames, (PyObject **)&(st)->operation_type, \
    (PyObject **)&(st)->waiter_type, &(st)->server_protocol, &(st)->client_protocol, \
    &(st)->client_side, &(st)->encode_frame, &(st)->joining_writelines, \
    &(st)->selector_transport, &(st)->minus_one, &(st)->buffer_updated, &(st)->task_type, \
    &(st)->resumed, &(st)->reader_module, &(st)->reader_method

#define OBJECT_COUNT 20

/*
 * The offset of a slot of a protocol class whose values the fast paths read
 * directly: 0 if the attribute is not a slot of a kind they know (then they
 * look it up as any attribute), -1 on error. *is_bool tells a C bool from an
 * object.
 */
static int
slot_offset(PyObject *type, const char *name, Py_ssize_t *offset, int *is_bool)
{
    PyObject *descriptor = PyObject_GetAttrString(type, name);
    PyMemberDef *member;

    *offset = 0;
    if (descriptor == NULL) {
        return -1;
    }
    if (Py_IS_TYPE(descriptor, &PyMemberDescr_Type)) {
        member = ((PyMemberDescrObject *)descriptor)->d_member;
        if (member->type == Py_T_OBJECT_EX || (is_bool != NULL && member->type == Py_T_BOOL)) {
            *offset = member->offset;
            if (is_bool != NULL) {
                *is_bool = member->type == Py_T_BOOL;
            }
        }
    }
    Py_DECREF(descriptor);
    return 0;
}

/* PyType_FromModuleAndSpec(), with a MemoryError where CPython 3.11's fails on
   an allocation without an exception set (found by
   tests/asyncio/test_speedups_nomemory.py): else a SystemError hides it. */
static PyObject *
new_type(PyObject *module, PyType_Spec *spec)
{
    PyObject *type = PyType_FromModuleAndSpec(module, spec, NULL);
    if (type == NULL && !PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    return type;
}

/* Find the slots of the protocol classes; leave the types NULL if one is missing. */
static int
protocol_slots(speedups_state *st)
{
    PyObject *server, *client;
    int reading_is_bool = 0, rc;

    if ((server = import_from("portside.protocol.server", "ServerProtocol")) == NULL) {
        return -1;
    }
    if ((client = import_from("portside.protocol.client", "ClientProtocol")) == NULL) {
        Py_DECREF(server);
        return -1;
    }
    rc = slot_offset(server, "state", &st->state_offset, NULL) < 0 ||
                 slot_offset(server, "_sending", &st->sending_offset, NULL) < 0 ||
                 slot_offset(server, "deflate", &st->deflate_offset, NULL) < 0 ||
                 slot_offset(server, "side", &st->side_offset, NULL) < 0 ||
                 slot_offset(server, "_reading", &st->reading_offset, &reading_is_bool) < 0 ||
                 slot_offset(server, "_out", &st->out_offset, NULL) < 0
             ? -1
             : 0;
    st->reading_is_bool = reading_is_bool;
    if (rc == 0 && st->state_offset && st->sending_offset && st->deflate_offset &&
        st->side_offset && st->reading_offset && st->out_offset) {
        /* Both classes inherit these slots from Protocol: the same offsets. */
        st->server_protocol = server;
        st->client_protocol = client;
        return 0;
    }
    Py_DECREF(server);
    Py_DECREF(client);
    return rc;
}

/*
 * st->task_type and st->resumed, the finished Future of resume_argument(), or
 * both NULL where asyncio has no C Task and Future. Its loop is a stand-in whose
 * get_debug() says False (bool() does), the one call a Future makes of its loop
 * when it has no callbacks: no event loop is needed or held. 0, or -1 on error.
 */
static int
resumed_future(speedups_state *st)
{
    PyObject *future_type, *namespace_type, *empty, *kwargs, *loop = NULL, *future = NULL, *done;

    if ((st->task_type = import_from("_asyncio", "Task")) == NULL ||
        (future_type = import_from("_asyncio", "Future")) == NULL) {
        PyErr_Clear();
        Py_CLEAR(st->task_type);
        return 0;
    }
    if ((namespace_type = import_from("types", "SimpleNamespace")) == NULL ||
        (empty = PyTuple_New(0)) == NULL) {
        Py_XDECREF(namespace_type);
        Py_DECREF(future_type);
        return -1;
    }
    if ((kwargs = Py_BuildValue("{sO}", "get_debug", (PyObject *)&PyBool_Type)) != NULL) {
        loop = PyObject_Call(namespace_type, empty, kwargs);
        Py_DECREF(kwargs);
    }
    if (loop != NULL && (kwargs = Py_BuildValue("{sO}", "loop", loop)) != NULL) {
        future = PyObject_Call(future_type, empty, kwargs);
        Py_DECREF(kwargs);
    }
    Py_XDECREF(loop);
    Py_DECREF(empty);
    Py_DECREF(namespace_type);
    Py_DECREF(future_type);
    if (future == NULL) {
        return -1;
    }
    if ((done = PyObject_CallMethod(future, "set_result", "O", Py_None)) == NULL) {
        Py_DECREF(future);
        return -1;
    }
    Py_DECREF(done);
    st->resumed = future;
    return 0;
}

/*
 * The direct call of ReaderBase.buffer_updated (reader_events()): its function
 * and the state it takes, from the capsule portside.protocol._speedups exports,
 * and the method descriptor that tells where it applies. Left NULL, and the
 * method called, if that module or its capsule is missing.
 */
static void
reader_api(speedups_state *st)
{
    PyObject *module, *capsule = NULL, *type = NULL, *method = NULL;
    void *function = NULL, *state = NULL;

    /* Each step needs the one before; whatever is missing (a build without the
       protocol accelerator) leaves the method call, which works regardless. */
    if ((module = PyImport_ImportModule("portside.protocol._speedups")) != NULL) {
        capsule = PyObject_GetAttrString(module, "_buffer_updated");
    }
    if (capsule != NULL) {
        function = PyCapsule_GetPointer(capsule, "portside.protocol._speedups._buffer_updated");
    }
    if (function != NULL) {
        state = PyCapsule_GetContext(capsule);
    }
    if (state != NULL) {
        type = PyObject_GetAttrString(module, "ReaderBase");
    }
    if (type != NULL && PyType_Check(type)) {
        method = PyDict_GetItemWithError(((PyTypeObject *)type)->tp_dict, st->str_buffer_updated);
        Py_XINCREF(method);
    }
    Py_XDECREF(capsule);
    Py_XDECREF(type);
    if (method == NULL) {
        Py_XDECREF(module);
        PyErr_Clear();
        return;
    }
    st->reader_module = module;
    st->reader_method = method;
    st->reader_buffer_updated = (PyObject * (*)(void *, PyObject *, PyObject *)) function;
    st->reader_state = state;
}

#define STATE_COUNT (sizeof(state_names) / sizeof(state_names[0]))

static int
speedups_exec(PyObject *module)
{
    speedups_state *st = PyModule_GetState(module);
    PyObject **strings[] = {STATE_STRINGS(st)};
    PyObject *type, *threshold;
    int rc;

    Py_BUILD_ASSERT(sizeof(strings) / sizeof(strings[0]) == STATE_COUNT);
    /* ccoverage: unreachable: a check of this source against itself, for its editors */
    if (!waiter_methods_in_order()) {
        PyErr_SetString(PyExc_SystemError, "Waiter's method indexes are out of date");
        return -1;
    }
    for (size_t i = 0; i < STATE_COUNT; i++) {
        if ((*strings[i] = PyUnicode_InternFromString(state_names[i])) == NULL) {
            return -1;
        }
    }
    if ((st->open_state = import_from("portside.protocol.state", "OPEN")) == NULL ||
        (st->server_side = import_from("portside.protocol.connection", "SERVER")) == NULL ||
        (st->client_side = import_from("portside.protocol.connection", "CLIENT")) == NULL ||
        (st->encode_frame = import_from("portside.protocol.speedups", "encode_frame")) == NULL ||
        (st->closed_ok = import_from("portside.exceptions", "ConnectionClosedOK")) == NULL ||
        (st->joining_writelines = write_transport_writelines()) == NULL ||
        (threshold = import_from("portside.protocol.connection", "_COPY_THRESHOLD")) == NULL) {
        return -1;
    }
    st->copy_threshold = PyLong_AsSsize_t(threshold);
    Py_DECREF(threshold);
    if (st->copy_threshold == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (protocol_slots(st) < 0 ||
        (st->cancelled_error = import_from("asyncio", "CancelledError")) == NULL ||
        (st->invalid_state_error = import_from("asyncio", "InvalidStateError")) == NULL ||
        (st->context_kwnames = PyTuple_Pack(1, st->str_context)) == NULL) {
        return -1;
    }
    st->waiter_type = (PyTypeObject *)new_type(module, &waiter_spec);
    if (st->waiter_type == NULL ||
        PyModule_AddObjectRef(module, "Waiter", (PyObject *)st->waiter_type) < 0) {
        return -1;
    }
    st->operation_type = (PyTypeObject *)new_type(module, &operation_spec);
    if (st->operation_type == NULL ||
        PyModule_AddObjectRef(module, "Operation", (PyObject *)st->operation_type) < 0) {
        return -1;
    }
    if ((type = new_type(module, &connection_spec)) == NULL) {
        return -1;
    }
    /* The descriptor that the type's buffer_updated is, unless overridden. */
    st->buffer_updated = PyDict_GetItemWithError(((PyTypeObject *)type)->tp_dict,
                                                 st->str_buffer_updated);
    /* ccoverage: unreachable: connection_methods has it; a lookup by str does not fail */
    if (st->buffer_updated == NULL) {
        Py_DECREF(type);
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError, "ConnectionBase has no buffer_updated");
        }
        return -1;
    }
    Py_INCREF(st->buffer_updated);
    /* ccoverage: unreachable: -1 is one of CPython's preallocated small ints */
    if ((st->minus_one = PyLong_FromLong(-1)) == NULL) {
        Py_DECREF(type);
        return -1;
    }
    if (resumed_future(st) < 0) {
        Py_DECREF(type);
        return -1;
    }
    reader_api(st);
    /* Without it (another platform, another Python), sockets are left to the
       transports. */
    st->selector_transport = import_from("asyncio.selector_events", "_SelectorSocketTransport");
    if (st->selector_transport == NULL) {
        PyErr_Clear();
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
    PyObject **objects[] = {STATE_OBJECTS(st)};
    for (size_t i = 0; i < STATE_COUNT; i++) {
        Py_VISIT(*strings[i]);
    }
    for (size_t i = 0; i < OBJECT_COUNT; i++) {
        Py_VISIT(*objects[i]);
    }
    return 0;
}

static int
speedups_clear(PyObject *module)
{
    speedups_state *st = PyModule_GetState(module);
    PyObject **strings[] = {STATE_STRINGS(st)};
    PyObject **objects[] = {STATE_OBJECTS(st)};
    for (size_t i = 0; i < STATE_COUNT; i++) {
        Py_CLEAR(*strings[i]);
    }
    for (size_t i = 0; i < OBJECT_COUNT; i++) {
        Py_CLEAR(*objects[i]);
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
    /* 3.12: per-interpreter GILs, and the slot that allows them. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* 3.13: free-threaded builds, and the slot that says the GIL is not needed. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "portside.asyncio._speedups",
    .m_doc = "C accelerator for portside.asyncio.speedups.",
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

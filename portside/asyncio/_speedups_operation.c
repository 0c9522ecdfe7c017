/*
 * Operation: what ConnectionBase's recv(), send() and __anext__() return in C.
 *
 * It behaves as the coroutine of Connection's Python method would -- nothing
 * happens until it is awaited or stepped; send(), throw() and close(); it is
 * registered as a collections.abc.Coroutine, so asyncio.create_task() takes
 * it -- and skips the Python frames on the common paths:
 *
 * - recv() with a message queued returns it at once;
 * - recv() with nothing queued waits on a Waiter of its own in _waiter;
 * - send() of bytes, or of an ASCII str, on an OPEN connection without
 *   extension writes the frame itself (masked, from a client): see
 *   _speedups_send.c.
 *
 * Anything else runs the Python implementation (Connection._recv_in_python or
 * _send_in_python) and passes every step through to that coroutine.
 */

#include "_speedups.h"

enum { OP_RECV, OP_SEND };
enum { OP_NEW, OP_STARTED, OP_DONE };

/* A start function's answer besides PySendResult's: go on with op->inner. */
#define OP_CONTINUE 2

typedef struct {
    PyObject_HEAD
    PyObject *connection; /* the ConnectionObject */
    PyObject *message;    /* send(): the message */
    PyObject *inner;      /* once started: the Waiter or the Python coroutine it awaits */
    PyObject *waiter;     /* recv(), waiting: the Waiter it put in connection._waiter */
    char kind;            /* OP_RECV or OP_SEND */
    char iterating;       /* recv() for __anext__: a normal closure ends the iteration */
    char state;           /* OP_NEW, OP_STARTED or OP_DONE */
    char running;         /* inside a step, as a coroutine's cr_running */
} OperationObject;

static PyObject *
new_operation(ConnectionObject *conn, speedups_state *st, char kind, PyObject *message,
              char iterating)
{
    OperationObject *op = PyObject_GC_New(OperationObject, st->operation_type);
    if (op == NULL) {
        return NULL;
    }
    op->connection = Py_NewRef(conn);
    op->message = Py_XNewRef(message);
    op->inner = NULL;
    op->waiter = NULL;
    op->kind = kind;
    op->iterating = iterating;
    op->state = OP_NEW;
    op->running = 0;
    PyObject_GC_Track(op);
    return (PyObject *)op;
}

static int
send_start(OperationObject *op, speedups_state *st, PyObject **result)
{
    ConnectionObject *conn = (ConnectionObject *)op->connection;
    int rc = send_fast(conn, st, op->message);

    if (rc < 0) {
        return PYGEN_ERROR;
    }
    if (rc == 0) {
        op->inner = call_method(st->str_send_in_python, (PyObject *)conn, op->message, NULL, 1);
    }
    else if (conn->write_paused) {
        /* As the Python send(): wait for the transport's buffer to drain. */
        op->inner = call_method(st->str_drain, (PyObject *)conn, NULL, NULL, 0);
    }
    else {
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    return op->inner == NULL ? PYGEN_ERROR : OP_CONTINUE;
}


/* The Python recv(decode, _iterating=...): Connection._recv_in_python, for what
   the C path leaves to it. _iterating is keyword-only there. */
static PyObject *
recv_in_python(ConnectionObject *conn, speedups_state *st, PyObject *decode, int iterating)
{
    PyObject *method, *args, *kwargs = NULL, *result;

    if ((method = PyObject_GetAttr((PyObject *)conn, st->str_recv_in_python)) == NULL) {
        return NULL;
    }
    args = decode == NULL ? PyTuple_New(0) : PyTuple_Pack(1, decode);
    if (args != NULL && iterating && (kwargs = Py_BuildValue("{sO}", "_iterating", Py_True)) == NULL) {
        Py_CLEAR(args);
    }
    result = args == NULL ? NULL : PyObject_Call(method, args, kwargs);
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_DECREF(method);
    return result;
}

static int
recv_start(OperationObject *op, speedups_state *st, PyObject **result)
{
    ConnectionObject *conn = (ConnectionObject *)op->connection;
    PyObject *messages = conn->messages, *waiter;
    Py_ssize_t queued;
    int reading;

    if (messages != NULL && messages != Py_None) {
        if ((queued = PyObject_Length(messages)) < 0) {
            return PYGEN_ERROR;
        }
        if (queued > 0 && !conn->reading_paused) {
            *result = call_method(st->str_popleft, messages, NULL, NULL, 0);
            return *result == NULL ? PYGEN_ERROR : PYGEN_RETURN;
        }
        if (queued > 0) {
            goto python; /* resuming reading is the Python path's */
        }
    }
    /* Another waiter, an error to fail on, the end of the stream: all the
       Python path's. */
    if (conn->waiter != Py_None || conn->pending_error != Py_None || conn->loop == NULL ||
        conn->protocol == NULL) {
        goto python;
    }
    if (known_protocol(st, conn->protocol) && st->reading_is_bool) {
        reading = *((char *)conn->protocol + st->reading_offset) != 0;
    }
    else if ((reading = attribute_truth(conn->protocol, st->str_reading)) < 0) {
        return PYGEN_ERROR;
    }
    if (!reading) {
        goto python;
    }
    if ((waiter = take_waiter(conn, st)) == NULL) {
        return PYGEN_ERROR;
    }
    Py_SETREF(conn->waiter, Py_NewRef(waiter));
    op->waiter = waiter;
    /* Awaited as a Future is: the waiter yields itself until it is done. */
    op->inner = Py_NewRef(waiter);
    return OP_CONTINUE;

python:
    op->inner = recv_in_python(conn, st, NULL, op->iterating);
    return op->inner == NULL ? PYGEN_ERROR : OP_CONTINUE;
}

/* Leave the connection as the Python recv()'s finally clause does. */
static void
forget_waiter(OperationObject *op)
{
    ConnectionObject *conn = (ConnectionObject *)op->connection;
    PyObject *waiter;
    if (op->waiter != NULL) {
        if (conn->waiter == op->waiter) {
            Py_SETREF(conn->waiter, Py_NewRef(Py_None));
        }
        waiter = op->waiter;
        op->waiter = NULL;
        release_waiter(conn, waiter);
    }
}

/*
 * recv() is abandoned (cancelled, closed) while its waiter holds a message that
 * came before the task could resume: put the message back, first in line, for
 * the next recv(), as the Python recv() does. An error doing so is reported as
 * unraisable: the exception on its way out of the operation goes on.
 */
static void
requeue_message(OperationObject *op, speedups_state *st)
{
    WaiterObject *w = (WaiterObject *)op->waiter;
    PyObject *type, *value, *traceback;

    if (w == NULL || w->state != WAITER_FINISHED || w->result == NULL) {
        return;
    }
    PyErr_Fetch(&type, &value, &traceback);
    if (call_method_void(st->str_requeue, op->connection, w->result, NULL, 1) < 0) {
        PyErr_WriteUnraisable(op->connection);
    }
    PyErr_Restore(type, value, traceback);
}

/* The operation ended with status: clean up, and end an iteration on a normal closure. */
static PySendResult
op_finish(OperationObject *op, speedups_state *st, PySendResult status)
{
    PyObject *value, *stop;
    int waited = op->waiter != NULL;

    forget_waiter(op);
    Py_CLEAR(op->inner);
    op->state = OP_DONE;
    if (status == PYGEN_ERROR && waited && op->iterating &&
        PyErr_ExceptionMatches(st->closed_ok)) {
        /* raise StopAsyncIteration from None, as the Python recv() does. */
        value = take_exception();
        if ((stop = PyObject_CallNoArgs(PyExc_StopAsyncIteration)) == NULL) {
            Py_XDECREF(value);
            return PYGEN_ERROR;
        }
        PyException_SetContext(stop, value);
        PyException_SetCause(stop, NULL);
        PyErr_Restore(Py_NewRef(PyExc_StopAsyncIteration), stop, NULL);
    }
    return status;
}

/* One step of the operation, as PyIter_Send() takes one of a coroutine. */
static PySendResult
op_send(OperationObject *op, PyObject *arg, PyObject **result)
{
    speedups_state *st = PyType_GetModuleState(Py_TYPE(op));
    int status;

    *result = NULL;
    if (op->running) {
        PyErr_SetString(PyExc_ValueError, "coroutine already executing");
        return PYGEN_ERROR;
    }
    if (op->state == OP_DONE) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
        return PYGEN_ERROR;
    }
    op->running = 1;
    if (op->state == OP_NEW) {
        if (arg != Py_None) {
            op->running = 0;
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started coroutine");
            return PYGEN_ERROR;
        }
        op->state = OP_STARTED;
        status = op->kind == OP_SEND ? send_start(op, st, result) : recv_start(op, st, result);
        if (status != OP_CONTINUE) {
            op->running = 0;
            return op_finish(op, st, (PySendResult)status);
        }
    }
    status = PyIter_Send(op->inner, arg, result);
    op->running = 0;
    if (status == PYGEN_NEXT) {
        return PYGEN_NEXT;
    }
    return op_finish(op, st, (PySendResult)status);
}

static PySendResult
operation_am_send(PyObject *op, PyObject *arg, PyObject **result)
{
    return op_send((OperationObject *)op, arg, result);
}

static PyObject *
operation_iternext(PyObject *op)
{
    PyObject *result;
    PySendResult status = op_send((OperationObject *)op, Py_None, &result);
    return step_result(status, result, 0);
}

static PyObject *
operation_send(PyObject *op, PyObject *arg)
{
    PyObject *result;
    PySendResult status = op_send((OperationObject *)op, arg, &result);
    return step_result(status, result, 1);
}

/* The exception that throw(type[, value[, traceback]]) raises, as generators
   make it: 1 to 3 arguments. */
static PyObject *
exception_to_throw(PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *type, *value, *traceback, *exc;

    type = args[0];
    value = nargs > 1 ? args[1] : Py_None;
    traceback = nargs > 2 ? args[2] : Py_None;
    if (traceback != Py_None && !PyTraceBack_Check(traceback)) {
        PyErr_SetString(PyExc_TypeError, "throw() third argument must be a traceback object");
        return NULL;
    }
    if (PyExceptionInstance_Check(type)) {
        if (value != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "instance exception may not have a separate value");
            return NULL;
        }
        exc = Py_NewRef(type);
    }
    else if (PyExceptionClass_Check(type)) {
        if (PyObject_TypeCheck(value, (PyTypeObject *)type)) {
            exc = Py_NewRef(value);
        }
        else if (value == Py_None) {
            exc = PyObject_CallNoArgs(type);
        }
        else {
            exc = PyObject_CallOneArg(type, value);
        }
        if (exc == NULL) {
            return NULL;
        }
        if (!PyExceptionInstance_Check(exc)) {
            PyErr_Format(PyExc_TypeError, "calling %R should have returned an instance of "
                         "BaseException, not %.200s", type, Py_TYPE(exc)->tp_name);
            Py_DECREF(exc);
            return NULL;
        }
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "exceptions must be classes or instances deriving from BaseException, "
                     "not %.200s", Py_TYPE(type)->tp_name);
        return NULL;
    }
    /* ccoverage: unreachable: it fails on what is not a traceback, refused above */
    if (traceback != Py_None && PyException_SetTraceback(exc, traceback) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    return exc;
}

/* Raise exc (a reference taken), its traceback kept. */
static void
raise_exception(PyObject *exc)
{
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
}

static PyObject *
operation_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    OperationObject *op = (OperationObject *)self;
    speedups_state *st = PyType_GetModuleState(Py_TYPE(op));
    PyObject *exc, *result, *type, *value, *traceback;
    PySendResult status;

    /* Counted first, as a coroutine's throw() counts them. */
    if (nargs < 1 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "throw expected at %s %d argument%s, got %zd",
                     nargs < 1 ? "least" : "most", nargs < 1 ? 1 : 3, nargs < 1 ? "" : "s",
                     nargs);
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    /* 3.12 deprecates throw(type, value, traceback) for coroutines. */
    if (nargs > 1 && PyErr_WarnEx(PyExc_DeprecationWarning,
                                  "the (type, exc, tb) signature of throw() is deprecated, "
                                  "use the single-arg signature instead.",
                                  1) < 0) {
        return NULL;
    }
#endif
    if ((exc = exception_to_throw(args, nargs)) == NULL) {
        return NULL;
    }
    if (op->running) {
        Py_DECREF(exc);
        PyErr_SetString(PyExc_ValueError, "coroutine already executing");
        return NULL;
    }
    if (op->state != OP_STARTED) {
        /* Not started, or over: the exception comes straight out, and a coroutine
           not started is over. */
        op->state = OP_DONE;
        raise_exception(exc);
        return NULL;
    }
    if (op->waiter != NULL) {
        /* Thrown at the await of the waiter, which lets it through, as a
           Future does. */
        raise_exception(exc);
        requeue_message(op, st);
        op_finish(op, st, PYGEN_ERROR);
        return NULL;
    }
    op->running = 1;
    result = call_method(st->str_throw, op->inner, exc, NULL, 1);
    op->running = 0;
    Py_DECREF(exc);
    if (result != NULL) {
        return result; /* the inner coroutine caught it and awaits something else */
    }
    status = PYGEN_ERROR;
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        /* It caught it and returned. */
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        result = value == NULL ? NULL : PyObject_GetAttrString(value, "value");
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(traceback);
        status = result == NULL ? PYGEN_ERROR : PYGEN_RETURN;
    }
    if (op_finish(op, st, status) == PYGEN_RETURN) {
        set_stop_iteration(result);
        Py_DECREF(result);
    }
    return NULL;
}

static PyObject *
operation_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    OperationObject *op = (OperationObject *)self;
    speedups_state *st = PyType_GetModuleState(Py_TYPE(op));
    PyObject *result = Py_NewRef(Py_None);

    if (op->running) {
        PyErr_SetString(PyExc_ValueError, "coroutine already executing");
        Py_DECREF(result);
        return NULL;
    }
    if (op->state == OP_STARTED && op->waiter == NULL && op->inner != NULL) {
        Py_DECREF(result);
        /* A Python coroutine: close it, as closing a coroutine closes the one
           it awaits. recv()'s future is left pending, as the Python recv()
           leaves it. */
        op->running = 1;
        result = call_method(st->str_close, op->inner, NULL, NULL, 0);
        op->running = 0;
    }
    if (op->state == OP_STARTED && op->waiter != NULL) {
        requeue_message(op, st);
    }
    forget_waiter(op);
    Py_CLEAR(op->inner);
    op->state = OP_DONE;
    if (result == NULL) {
        return NULL;
    }
    Py_DECREF(result);
    Py_RETURN_NONE;
}

static PyObject *
operation_get_name(OperationObject *op, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(op->kind == OP_SEND ? "send" : "recv");
}

static PyObject *
operation_get_qualname(OperationObject *op, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(op->kind == OP_SEND ? "Connection.send" : "Connection.recv");
}

static PyObject *
operation_get_running(OperationObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(op->running);
}

static PyObject *
operation_repr(OperationObject *op)
{
    return PyUnicode_FromFormat("<portside operation Connection.%s at %p>",
                                op->kind == OP_SEND ? "send" : "recv", op);
}

/* Warn about an operation never awaited, as Python does about a coroutine. */
static void
operation_finalize(PyObject *self)
{
    OperationObject *op = (OperationObject *)self;
    PyObject *type, *value, *traceback;

    if (op->state != OP_NEW) {
        return;
    }
    PyErr_Fetch(&type, &value, &traceback);
    if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1, "coroutine 'Connection.%s' was never awaited",
                         op->kind == OP_SEND ? "send" : "recv") < 0) {
        PyErr_WriteUnraisable(self);
    }
    PyErr_Restore(type, value, traceback);
}

static int
operation_traverse(OperationObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(op->connection);
    Py_VISIT(op->message);
    Py_VISIT(op->inner);
    Py_VISIT(op->waiter);
    return 0;
}

static int
operation_clear(OperationObject *op)
{
    Py_CLEAR(op->connection);
    Py_CLEAR(op->message);
    Py_CLEAR(op->inner);
    Py_CLEAR(op->waiter);
    return 0;
}

static void
operation_dealloc(OperationObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)op) < 0) {
        return; /* resurrected by the warning machinery */
    }
    PyObject_GC_UnTrack(op);
    operation_clear(op);
    tp->tp_free((PyObject *)op);
    Py_DECREF(tp);
}

static PyMethodDef operation_methods[] = {
    {"send", (PyCFunction)operation_send, METH_O,
     "send(value) -> the next value awaited, or raise StopIteration."},
    {"throw", (PyCFunction)(void (*)(void))operation_throw, METH_FASTCALL,
     "throw(type[, value[, traceback]]) -> raise an exception in the operation."},
    {"close", (PyCFunction)operation_close, METH_NOARGS, "close() -> abandon the operation."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef operation_getset[] = {
    {"__name__", (getter)operation_get_name, NULL, NULL, NULL},
    {"__qualname__", (getter)operation_get_qualname, NULL, NULL, NULL},
    {"cr_running", (getter)operation_get_running, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(operation_doc,
"What recv() and send() return with the C accelerator: a coroutine written in C.");

static PyType_Slot operation_slots[] = {
    {Py_tp_doc, (void *)operation_doc},
    {Py_tp_repr, (void *)operation_repr},
    {Py_tp_traverse, (void *)operation_traverse},
    {Py_tp_clear, (void *)operation_clear},
    {Py_tp_dealloc, (void *)operation_dealloc},
    {Py_tp_finalize, (void *)operation_finalize},
    {Py_tp_iternext, (void *)operation_iternext},
    {Py_tp_methods, operation_methods},
    {Py_tp_getset, operation_getset},
    {Py_am_await, (void *)await_self},
    {Py_am_send, (void *)operation_am_send},
    {0, NULL},
};

PyType_Spec operation_spec = {
    .name = "portside.asyncio._speedups.Operation",
    .basicsize = sizeof(OperationObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = operation_slots,
};

/* ConnectionBase's recv(), send() and __anext__(). */

PyObject *
connection_recv(ConnectionObject *self, PyTypeObject *defining_class, PyObject *const *args,
                Py_ssize_t nargs, PyObject *kwnames)
{
    /* recv(decode=None, *, _iterating=False): _iterating is __anext__'s. A
       decode other than None runs the Python recv(). */
    speedups_state *st = PyType_GetModuleState(defining_class);
    PyObject *decode = NULL, *iterating = NULL;
    Py_ssize_t i, nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    int flag = 0;

    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "recv() takes at most 1 positional argument (%zd given)",
                     nargs);
        return NULL;
    }
    decode = nargs > 0 ? args[0] : NULL;
    for (i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        PyObject **slot = NULL;
        if (PyUnicode_Check(name)) {
            if (PyUnicode_CompareWithASCIIString(name, "decode") == 0) {
                slot = &decode;
            }
            else if (PyUnicode_CompareWithASCIIString(name, "_iterating") == 0) {
                slot = &iterating;
            }
        }
        if (slot == NULL) {
            PyErr_Format(PyExc_TypeError, "recv() got an unexpected keyword argument '%S'", name);
            return NULL;
        }
        if (*slot != NULL) {
            PyErr_Format(PyExc_TypeError, "recv() got multiple values for argument '%S'", name);
            return NULL;
        }
        *slot = args[nargs + i];
    }
    if (iterating != NULL && (flag = PyObject_IsTrue(iterating)) < 0) {
        return NULL;
    }
    if (decode != NULL && decode != Py_None) {
        return recv_in_python(self, st, decode, flag);
    }
    return new_operation(self, st, OP_RECV, NULL, (char)flag);
}

PyObject *
connection_send(ConnectionObject *self, PyTypeObject *defining_class, PyObject *const *args,
                Py_ssize_t nargs, PyObject *kwnames)
{
    /* send(message, *, text=None): a text other than None runs the Python
       _send_as(), which send(text=...) calls. */
    speedups_state *st = PyType_GetModuleState(defining_class);
    PyObject *message = nargs > 0 ? args[0] : NULL, *text = NULL;
    Py_ssize_t i, nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);

    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "send() takes 1 positional argument (%zd given)", nargs);
        return NULL;
    }
    for (i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        PyObject **slot = NULL;
        if (PyUnicode_Check(name)) {
            if (PyUnicode_CompareWithASCIIString(name, "message") == 0) {
                slot = &message;
            }
            else if (PyUnicode_CompareWithASCIIString(name, "text") == 0) {
                slot = &text;
            }
        }
        if (slot == NULL) {
            PyErr_Format(PyExc_TypeError, "send() got an unexpected keyword argument '%S'", name);
            return NULL;
        }
        if (*slot != NULL) {
            PyErr_Format(PyExc_TypeError, "send() got multiple values for argument '%S'", name);
            return NULL;
        }
        *slot = args[nargs + i];
    }
    if (message == NULL) {
        PyErr_SetString(PyExc_TypeError, "send() missing required argument: 'message'");
        return NULL;
    }
    if (text != NULL && text != Py_None) {
        return PyObject_CallMethod((PyObject *)self, "_send_as", "OO", message, text);
    }
    return new_operation(self, st, OP_SEND, message, 0);
}

PyObject *
connection_anext(PyObject *self)
{
    PyObject *module = PyType_GetModuleByDef(Py_TYPE(self), &speedups_module);
    /* ccoverage: unreachable: the slot of ConnectionBase, called on its instances only */
    if (module == NULL) {
        return NULL;
    }
    /* recv() ends the iteration itself on a normal closure: one operation per message. */
    return new_operation((ConnectionObject *)self, PyModule_GetState(module), OP_RECV, NULL, 1);
}

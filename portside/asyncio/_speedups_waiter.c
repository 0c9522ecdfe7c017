/*
 * Waiter: the future a C recv() waits on, in connection._waiter.
 *
 * It is what asyncio calls a Future-compatible object (asyncio.isfuture() is
 * true of it; a Task waits on it through add_done_callback()), with one
 * difference from asyncio.Future: when buffer_updated() hands it a message, it
 * runs the waiting task's wakeup there and then, instead of scheduling it with
 * loop.call_soon() for the next turn of the loop. The task resumes exactly as it
 * would have, one loop iteration sooner and without the scheduling (which costs
 * more than the rest of the delivery on asyncio's own loop). When that cannot be
 * done (a task is running already, as when bytes that came with the handshake
 * are fed from one), and for everything else -- set_result(), set_exception(),
 * cancel(), callbacks added when done -- callbacks are scheduled as a Future
 * schedules them.
 */

#include "_speedups.h"

static PyObject *
new_waiter(speedups_state *st, PyObject *loop)
{
    WaiterObject *w = PyObject_GC_New(WaiterObject, st->waiter_type);
    if (w == NULL) {
        return NULL;
    }
    w->loop = Py_NewRef(loop);
    w->result = NULL;
    w->exception = NULL;
    w->callback = NULL;
    w->context = NULL;
    w->more = NULL;
    w->cancel_message = NULL;
    w->methods[0] = w->methods[1] = w->methods[2] = NULL;
    w->state = WAITER_PENDING;
    w->blocking = 0;
    PyObject_GC_Track(w);
    return (PyObject *)w;
}

/* loop.call_soon(callback, waiter, context=context): 0, or -1 on error. */
static int
schedule_callback(speedups_state *st, WaiterObject *w, PyObject *callback, PyObject *context)
{
    /* A free slot first, then self and the arguments, then the keyword's value. */
    PyObject *call[5] = {NULL, w->loop, callback, (PyObject *)w, context};
    PyObject *result = PyObject_VectorcallMethod(
        st->str_call_soon, call + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, st->context_kwnames);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* Schedule every done callback, as a Future does when it finishes. */
int
schedule_callbacks(speedups_state *st, WaiterObject *w)
{
    PyObject *callback = w->callback, *context = w->context, *more = w->more;
    int rc = 0;

    w->callback = w->context = w->more = NULL;
    if (callback != NULL) {
        rc = schedule_callback(st, w, callback, context);
        Py_DECREF(callback);
        Py_DECREF(context);
    }
    if (more != NULL) {
        for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(more); i++) {
            PyObject *pair = PyList_GET_ITEM(more, i);
            rc = schedule_callback(st, w, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
        }
        Py_DECREF(more);
    }
    return rc;
}

/*
 * What to call a done callback of w with: w, or, when the callback is the
 * wakeup of an asyncio Task (C) and w finished with a result, st->resumed, a
 * finished asyncio.Future. Both mean "resume the coroutine with no value" to
 * the wakeup, which reads a Future's outcome in C but must ask any other
 * object for its result() by name: some 600 instructions per message.
 */
static PyObject *
resume_argument(speedups_state *st, WaiterObject *w, PyObject *callback)
{
    PyObject *task;

    if (st->resumed == NULL || w->state != WAITER_FINISHED || w->exception != NULL ||
        !PyCFunction_Check(callback)) {
        return (PyObject *)w;
    }
    task = PyCFunction_GET_SELF(callback);
    if (task == NULL || (PyObject *)Py_TYPE(task) != st->task_type ||
        strcmp(((PyCFunctionObject *)callback)->m_ml->ml_name, "task_wakeup") != 0) {
        return (PyObject *)w;
    }
    return st->resumed;
}

/*
 * Run the done callbacks of a waiter that buffer_updated() finished: the waiting
 * task's wakeup at once, when it is the only callback. 0, or -1 on error.
 */
int
waiter_wake(speedups_state *st, WaiterObject *w)
{
    PyObject *callback, *context, *result;

    if (w->callback == NULL || w->more != NULL) {
        return schedule_callbacks(st, w);
    }
    callback = w->callback;
    context = w->context;
    w->callback = w->context = NULL;
    result = NULL;
    if (PyContext_Enter(context) == 0) {
        result = PyObject_CallOneArg(callback, resume_argument(st, w, callback));
        /* ccoverage: unreachable: Python code enters and exits contexts in pairs */
        if (PyContext_Exit(context) < 0) {
            Py_CLEAR(result);
        }
    }
    if (result == NULL && PyErr_ExceptionMatches(PyExc_RuntimeError)) {
        /* A task's step lets only two kinds of exception out: BaseExceptions
           that are not Exceptions (KeyboardInterrupt, SystemExit), which must go
           on up as they would from the loop, and this RuntimeError, raised
           before the task ran: "Cannot enter into task ... while another task
           ... is being executed" (as when bytes that came with the handshake are
           fed from a task), or a context already entered. The next turn of the
           loop will do. */
        PyErr_Clear();
        result = schedule_callback(st, w, callback, context) < 0 ? NULL : Py_NewRef(Py_None);
    }
    Py_DECREF(callback);
    Py_DECREF(context);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

static PyObject *
invalid_state(speedups_state *st, const char *message)
{
    PyErr_SetString(st->invalid_state_error, message);
    return NULL;
}

/* Raise the CancelledError of a cancelled waiter. */
static PyObject *
raise_cancelled(speedups_state *st, WaiterObject *w)
{
    PyObject *exc = w->cancel_message == NULL
                        ? PyObject_CallNoArgs(st->cancelled_error)
                        : PyObject_CallOneArg(st->cancelled_error, w->cancel_message);
    if (exc != NULL) {
        PyErr_SetObject(st->cancelled_error, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* The result, or NULL with the exception raised: result()'s and an await's. */
static PyObject *
waiter_outcome(speedups_state *st, WaiterObject *w)
{
    if (w->state == WAITER_CANCELLED) {
        return raise_cancelled(st, w);
    }
    if (w->state == WAITER_PENDING) {
        return invalid_state(st, "Result is not set.");
    }
    if (w->exception != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(w->exception), w->exception);
        return NULL;
    }
    return Py_NewRef(w->result);
}

static PyObject *
waiter_result(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return waiter_outcome(PyType_GetModuleState(Py_TYPE(self)), (WaiterObject *)self);
}

static PyObject *
waiter_exception(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    WaiterObject *w = (WaiterObject *)self;
    speedups_state *st = PyType_GetModuleState(Py_TYPE(self));
    if (w->state == WAITER_CANCELLED) {
        return raise_cancelled(st, w);
    }
    if (w->state == WAITER_PENDING) {
        return invalid_state(st, "Exception is not set.");
    }
    return Py_NewRef(w->exception != NULL ? w->exception : Py_None);
}

static PyObject *
waiter_done(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(((WaiterObject *)self)->state != WAITER_PENDING);
}

static PyObject *
waiter_cancelled(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(((WaiterObject *)self)->state == WAITER_CANCELLED);
}

static PyObject *
waiter_get_loop(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(((WaiterObject *)self)->loop);
}

static PyObject *
waiter_set_result(PyObject *self, PyObject *result)
{
    WaiterObject *w = (WaiterObject *)self;
    speedups_state *st = PyType_GetModuleState(Py_TYPE(self));
    if (w->state != WAITER_PENDING) {
        return invalid_state(st, "invalid state");
    }
    w->result = Py_NewRef(result);
    w->state = WAITER_FINISHED;
    return schedule_callbacks(st, w) < 0 ? NULL : Py_NewRef(Py_None);
}

/* Why a Future takes no StopIteration: it would end the coroutine awaiting it. */
#define STOP_ITERATION_MESSAGE \
    "StopIteration interacts badly with generators and cannot be raised into a Future"

static PyObject *
waiter_set_exception(PyObject *self, PyObject *exception)
{
    WaiterObject *w = (WaiterObject *)self;
    speedups_state *st = PyType_GetModuleState(Py_TYPE(self));
    PyObject *exc;

    if (w->state != WAITER_PENDING) {
        return invalid_state(st, "invalid state");
    }
    if (PyExceptionClass_Check(exception)) {
        exc = PyObject_CallNoArgs(exception);
        if (exc == NULL) {
            return NULL;
        }
    }
    else {
        exc = Py_NewRef(exception);
    }
    if (!PyExceptionInstance_Check(exc)) {
        Py_DECREF(exc);
        PyErr_SetString(PyExc_TypeError, "invalid exception object");
        return NULL;
    }
    if (PyErr_GivenExceptionMatches(exc, PyExc_StopIteration)) {
#if PY_VERSION_HEX >= 0x030D0000
        /* 3.13 (gh-112182): a Future keeps a RuntimeError caused by it. */
        PyObject *error = PyObject_CallFunction(PyExc_RuntimeError, "s", STOP_ITERATION_MESSAGE);
        if (error == NULL) {
            Py_DECREF(exc);
            return NULL;
        }
        PyException_SetCause(error, Py_NewRef(exc));
        PyException_SetContext(error, exc);
        exc = error;
#else
        /* Before 3.13, set_exception() refuses it. */
        Py_DECREF(exc);
        PyErr_SetString(PyExc_TypeError, STOP_ITERATION_MESSAGE);
        return NULL;
#endif
    }
    w->exception = exc;
    w->state = WAITER_FINISHED;
    return schedule_callbacks(st, w) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
waiter_cancel(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    WaiterObject *w = (WaiterObject *)self;
    speedups_state *st = PyType_GetModuleState(Py_TYPE(self));
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *message = Py_None;

    /* cancel(msg=None) */
    if (nargs + nkw > 1 ||
        (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "msg"))) {
        PyErr_SetString(PyExc_TypeError, "cancel() takes one optional argument: msg");
        return NULL;
    }
    if (nargs + nkw == 1) {
        message = args[0];
    }
    if (w->state != WAITER_PENDING) {
        Py_RETURN_FALSE;
    }
    w->state = WAITER_CANCELLED;
    w->cancel_message = message == Py_None ? NULL : Py_NewRef(message);
    return schedule_callbacks(st, w) < 0 ? NULL : Py_NewRef(Py_True);
}

static PyObject *
waiter_add_done_callback(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    WaiterObject *w = (WaiterObject *)self;
    speedups_state *st = PyType_GetModuleState(Py_TYPE(self));
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *callback, *context = Py_None, *pair;
    int rc;

    /* add_done_callback(fn, /, *, context=None) */
    if (nargs != 1 || nkw > 1 ||
        (nkw == 1 && PyTuple_GET_ITEM(kwnames, 0) != st->str_context &&
         PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "context"))) {
        PyErr_SetString(PyExc_TypeError,
                        "add_done_callback() takes a callback and an optional context=");
        return NULL;
    }
    callback = args[0];
    if (nkw == 1) {
        context = args[1];
    }
    context = context == Py_None ? PyContext_CopyCurrent() : Py_NewRef(context);
    if (context == NULL) {
        return NULL;
    }
    if (w->state != WAITER_PENDING) {
        rc = schedule_callback(st, w, callback, context);
        Py_DECREF(context);
        return rc < 0 ? NULL : Py_NewRef(Py_None);
    }
    if (w->callback == NULL && w->more == NULL) {
        w->callback = Py_NewRef(callback);
        w->context = context;
        Py_RETURN_NONE;
    }
    if (w->more == NULL && (w->more = PyList_New(0)) == NULL) {
        Py_DECREF(context);
        return NULL;
    }
    pair = PyTuple_Pack(2, callback, context);
    Py_DECREF(context);
    if (pair == NULL) {
        return NULL;
    }
    rc = PyList_Append(w->more, pair);
    Py_DECREF(pair);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
waiter_remove_done_callback(PyObject *self, PyObject *callback)
{
    WaiterObject *w = (WaiterObject *)self;
    Py_ssize_t removed = 0;
    PyObject *kept;
    int equal;

    if (w->callback != NULL) {
        if ((equal = PyObject_RichCompareBool(w->callback, callback, Py_EQ)) < 0) {
            return NULL;
        }
        if (equal) {
            Py_CLEAR(w->callback);
            Py_CLEAR(w->context);
            removed++;
        }
    }
    if (w->more != NULL) {
        if ((kept = PyList_New(0)) == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(w->more); i++) {
            PyObject *pair = PyList_GET_ITEM(w->more, i);
            equal = PyObject_RichCompareBool(PyTuple_GET_ITEM(pair, 0), callback, Py_EQ);
            if (equal < 0 || (!equal && PyList_Append(kept, pair) < 0)) {
                Py_DECREF(kept);
                return NULL;
            }
            removed += equal;
        }
        Py_SETREF(w->more, kept);
    }
    return PyLong_FromSsize_t(removed);
}

/* Awaiting a waiter, as awaiting a Future: yield it until it is done. */
static PySendResult
waiter_am_send(PyObject *self, PyObject *Py_UNUSED(arg), PyObject **result)
{
    WaiterObject *w = (WaiterObject *)self;
    if (w->state == WAITER_PENDING) {
        if (!w->blocking) {
            w->blocking = 1;
            *result = Py_NewRef(self);
            return PYGEN_NEXT;
        }
        PyErr_SetString(PyExc_RuntimeError, "await wasn't used with future");
        *result = NULL;
        return PYGEN_ERROR;
    }
    *result = waiter_outcome(PyType_GetModuleState(Py_TYPE(self)), w);
    return *result == NULL ? PYGEN_ERROR : PYGEN_RETURN;
}

static PyObject *
waiter_iternext(PyObject *self)
{
    PyObject *result;
    PySendResult status = waiter_am_send(self, Py_None, &result);
    return step_result(status, result, 0);
}

static PyObject *
waiter_get_blocking(WaiterObject *w, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(w->blocking);
}

static int
waiter_set_blocking(WaiterObject *w, PyObject *value, void *Py_UNUSED(closure))
{
    int truth;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    if ((truth = PyObject_IsTrue(value)) < 0) {
        return -1;
    }
    w->blocking = (char)truth;
    return 0;
}

static PyObject *
waiter_get_loop_attribute(WaiterObject *w, void *Py_UNUSED(closure))
{
    return Py_NewRef(w->loop);
}

static PyObject *
waiter_repr(WaiterObject *w)
{
    static const char *const states[] = {"pending", "cancelled", "finished"};
    return PyUnicode_FromFormat("<portside Waiter %s>", states[(int)w->state]);
}

static int
waiter_traverse(WaiterObject *w, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(w));
    Py_VISIT(w->loop);
    Py_VISIT(w->result);
    Py_VISIT(w->exception);
    Py_VISIT(w->callback);
    Py_VISIT(w->context);
    Py_VISIT(w->more);
    Py_VISIT(w->cancel_message);
    Py_VISIT(w->methods[0]);
    Py_VISIT(w->methods[1]);
    Py_VISIT(w->methods[2]);
    return 0;
}

static int
waiter_clear(WaiterObject *w)
{
    Py_CLEAR(w->loop);
    Py_CLEAR(w->result);
    Py_CLEAR(w->exception);
    Py_CLEAR(w->callback);
    Py_CLEAR(w->context);
    Py_CLEAR(w->more);
    Py_CLEAR(w->cancel_message);
    Py_CLEAR(w->methods[0]);
    Py_CLEAR(w->methods[1]);
    Py_CLEAR(w->methods[2]);
    return 0;
}

static void
waiter_dealloc(WaiterObject *w)
{
    PyTypeObject *tp = Py_TYPE(w);
    PyObject_GC_UnTrack(w);
    waiter_clear(w);
    tp->tp_free((PyObject *)w);
    Py_DECREF(tp);
}

static PyMethodDef waiter_methods[] = {
    {"result", waiter_result, METH_NOARGS, "The message; raise if cancelled or failed."},
    {"exception", waiter_exception, METH_NOARGS, "The exception set, or None."},
    {"done", waiter_done, METH_NOARGS, "Whether the waiter is finished or cancelled."},
    {"cancelled", waiter_cancelled, METH_NOARGS, "Whether the waiter was cancelled."},
    {"get_loop", waiter_get_loop, METH_NOARGS, "The event loop."},
    {"set_result", waiter_set_result, METH_O, "Finish with a result."},
    {"set_exception", waiter_set_exception, METH_O, "Finish with an exception."},
    {"cancel", (PyCFunction)(void (*)(void))waiter_cancel, METH_FASTCALL | METH_KEYWORDS,
     "cancel(msg=None) -> whether it was pending."},
    {"add_done_callback", (PyCFunction)(void (*)(void))waiter_add_done_callback,
     METH_FASTCALL | METH_KEYWORDS, "add_done_callback(fn, *, context=None)"},
    {"remove_done_callback", waiter_remove_done_callback, METH_O,
     "remove_done_callback(fn) -> how many were removed."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef waiter_getset[] = {
    {"_asyncio_future_blocking", (getter)waiter_get_blocking, (setter)waiter_set_blocking,
     NULL, NULL},
    {"_loop", (getter)waiter_get_loop_attribute, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* Indexes in waiter_methods, checked when the module loads. */
enum { WAITER_RESULT = 0, WAITER_GET_LOOP = 4, WAITER_ADD_DONE_CALLBACK = 8 };

/* Whether those indexes are right: 1, or 0 if waiter_methods changed without them. */
int
waiter_methods_in_order(void)
{
    return strcmp(waiter_methods[WAITER_RESULT].ml_name, "result") == 0 &&
           strcmp(waiter_methods[WAITER_GET_LOOP].ml_name, "get_loop") == 0 &&
           strcmp(waiter_methods[WAITER_ADD_DONE_CALLBACK].ml_name, "add_done_callback") == 0;
}

/* Which of a waiter's cached bound methods. */
enum { CACHED_RESULT, CACHED_GET_LOOP, CACHED_ADD_DONE_CALLBACK };

/*
 * The bound method, made once per waiter: a task asks for the same three on
 * every wait, and a connection's waiter serves recv() after recv().
 */
static PyObject *
waiter_method(WaiterObject *w, int cached, int index)
{
    if (w->methods[cached] == NULL &&
        (w->methods[cached] = PyCFunction_New(&waiter_methods[index], (PyObject *)w)) == NULL) {
        return NULL;
    }
    return Py_NewRef(w->methods[cached]);
}

/* Whether name is the string "result", interned or not. */
static int
is_result_name(PyObject *name)
{
    return PyUnicode_CheckExact(name) && PyUnicode_IS_COMPACT_ASCII(name) &&
           PyUnicode_GET_LENGTH(name) == 6 && memcmp(PyUnicode_DATA(name), "result", 6) == 0;
}

/*
 * Attribute lookup, with a short way for the four lookups a Task makes on the
 * future it waits on, every time it waits: _asyncio_future_blocking (read and
 * set), get_loop, add_done_callback and, when woken, result -- the last by a C
 * string, so with a new str that misses the type's lookup cache. The general
 * lookup (through the type's methods and getsets) would find the same objects.
 */
static PyObject *
waiter_getattro(PyObject *self, PyObject *name)
{
    speedups_state *st = PyType_GetModuleState(Py_TYPE(self));
    if (name == st->str_future_blocking) {
        return PyBool_FromLong(((WaiterObject *)self)->blocking);
    }
    if (name == st->str_add_done_callback) {
        return waiter_method((WaiterObject *)self, CACHED_ADD_DONE_CALLBACK,
                             WAITER_ADD_DONE_CALLBACK);
    }
    if (name == st->str_get_loop) {
        return waiter_method((WaiterObject *)self, CACHED_GET_LOOP, WAITER_GET_LOOP);
    }
    if (name == st->str_result || is_result_name(name)) {
        return waiter_method((WaiterObject *)self, CACHED_RESULT, WAITER_RESULT);
    }
    return PyObject_GenericGetAttr(self, name);
}

static int
waiter_setattro(PyObject *self, PyObject *name, PyObject *value)
{
    speedups_state *st = PyType_GetModuleState(Py_TYPE(self));
    if (name == st->str_future_blocking && value == Py_False) {
        ((WaiterObject *)self)->blocking = 0;
        return 0;
    }
    return PyObject_GenericSetAttr(self, name, value);
}

PyDoc_STRVAR(waiter_doc,
"The future a C recv() waits on; it resumes its task as soon as a message comes.");

static PyType_Slot waiter_slots[] = {
    {Py_tp_doc, (void *)waiter_doc},
    {Py_tp_repr, (void *)waiter_repr},
    {Py_tp_traverse, (void *)waiter_traverse},
    {Py_tp_clear, (void *)waiter_clear},
    {Py_tp_dealloc, (void *)waiter_dealloc},
    {Py_tp_iternext, (void *)waiter_iternext},
    {Py_tp_methods, waiter_methods},
    {Py_tp_getset, waiter_getset},
    {Py_tp_getattro, (void *)waiter_getattro},
    {Py_tp_setattro, (void *)waiter_setattro},
    {Py_am_await, (void *)await_self},
    {Py_am_send, (void *)waiter_am_send},
    {0, NULL},
};

PyType_Spec waiter_spec = {
    .name = "portside.asyncio._speedups.Waiter",
    .basicsize = sizeof(WaiterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = waiter_slots,
};

/*
 * A connection keeps the waiter of its last recv() for the next one (as its
 * three bound methods are kept in it), once nothing else refers to it: a
 * waiter that went anywhere else stays where it went, and the next recv()
 * makes a new one.
 */

/* Whether holders references are all there are to w, besides its cached methods'. */
int
waiter_held_only_by(WaiterObject *w, Py_ssize_t holders)
{
    Py_ssize_t references = holders;
    for (int i = 0; i < 3; i++) {
        if (w->methods[i] != NULL) {
            if (Py_REFCNT(w->methods[i]) != 1) {
                return 0;
            }
            references++;
        }
    }
    return Py_REFCNT(w) == references;
}

/* Pending again, as new. */
void
waiter_reset(WaiterObject *w)
{
    w->state = WAITER_PENDING;
    w->blocking = 0;
    Py_CLEAR(w->result);
    Py_CLEAR(w->exception);
    Py_CLEAR(w->callback);
    Py_CLEAR(w->context);
    Py_CLEAR(w->more);
    Py_CLEAR(w->cancel_message);
}

/*
 * Drop a reference to a waiter the connection is done with, and its cached
 * methods, which refer to it: else the last reference would leave a cycle to
 * the garbage collector. (Whoever else holds the waiter or a method keeps it.)
 */
void
drop_waiter(PyObject *waiter)
{
    WaiterObject *w = (WaiterObject *)waiter;
    Py_CLEAR(w->methods[0]);
    Py_CLEAR(w->methods[1]);
    Py_CLEAR(w->methods[2]);
    Py_DECREF(waiter);
}

/* Keep the waiter of a recv() that returned (a reference given) for the next one. */
void
release_waiter(ConnectionObject *conn, PyObject *waiter)
{
    WaiterObject *w = (WaiterObject *)waiter;
#ifndef Py_GIL_DISABLED
    /* (Without the GIL, reference counts cannot tell who holds the waiter.) */
    if (conn->spare_waiter == NULL && w->state == WAITER_FINISHED && w->exception == NULL) {
        conn->spare_waiter = waiter;
        return;
    }
#endif
    drop_waiter(waiter);
}

/* A pending waiter for recv(): the connection's spare one if nobody else has it. */
PyObject *
take_waiter(ConnectionObject *conn, speedups_state *st)
{
    PyObject *spare = conn->spare_waiter;
    if (spare != NULL) {
        conn->spare_waiter = NULL;
        /* The task that calls recv() again is often the one buffer_updated()
           is waking with this very waiter: that reference is known. */
        if (((WaiterObject *)spare)->loop == conn->loop &&
            waiter_held_only_by((WaiterObject *)spare, spare == conn->waking ? 2 : 1)) {
            waiter_reset((WaiterObject *)spare);
            return spare;
        }
        drop_waiter(spare);
    }
    return new_waiter(st, conn->loop);
}

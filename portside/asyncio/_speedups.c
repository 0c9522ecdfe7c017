/*
 * C twin of _pyspeedups.py: ConnectionBase, the receive path of an asyncio
 * connection. It takes the events of the sans-I/O protocol and hands messages
 * to the coroutine waiting in recv(), the rest to the Python subclass. Both
 * implementations must behave identically; tests/asyncio/test_speedups.py checks
 * them side by side.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stddef.h>

/* Reads and writes on a socket's descriptor: see "The selector loop's socket
   transport". */
#ifndef _WIN32
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#define PORTSIDE_SELECTOR_IO 1
#endif
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

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
    /* What the fast paths of recv() and send() use. */
    PyObject *str_state;          /* protocol.state */
    PyObject *str_sending;        /* protocol._sending */
    PyObject *str_deflate;        /* protocol.deflate */
    PyObject *str_side;           /* protocol.side */
    PyObject *str_reading;        /* protocol._reading */
    PyObject *str_write;          /* transport.write(frame) */
    PyObject *str_writelines;     /* transport.writelines(frames) */
    PyObject *str_popleft;        /* connection._messages.popleft() */
    PyObject *str_call_soon;      /* loop.call_soon(callback, waiter, context=context) */
    PyObject *str_context;        /* its keyword */
    PyObject *str_recv_in_python; /* the Python recv() that a fast path falls back on */
    PyObject *str_send_in_python; /* the Python send() that a fast path falls back on */
    PyObject *str_drain;          /* connection._drain() */
    PyObject *str_requeue;        /* connection._requeue(message) */
    PyObject *str_next_mask;      /* protocol._next_mask() */
    PyObject *str_throw;          /* inner.throw(exc) */
    PyObject *str_close;          /* inner.close() */
    /* What a Task looks up on the future it waits on: see waiter_getattro(). */
    PyObject *str_future_blocking; /* _asyncio_future_blocking */
    PyObject *str_get_loop;        /* get_loop */
    PyObject *str_add_done_callback; /* add_done_callback */
    PyObject *str_result;          /* result */
    /* What the selector loop's socket transport keeps: see "The selector
       loop's socket transport" below. */
    PyObject *str_conn_lost;       /* transport._conn_lost */
    PyObject *str_eof;             /* transport._eof */
    PyObject *str_empty_waiter;    /* transport._empty_waiter */
    PyObject *str_buffer;          /* transport._buffer */
    PyObject *str_sock_fd;         /* transport._sock_fd */
    PyObject *str_read_ready_cb;   /* transport._read_ready_cb */
    PyObject *str_get_buffer_cb;   /* transport._read_ready__get_buffer */
    PyObject *str_on_eof;          /* transport._read_ready__on_eof() */
    PyObject *str_fatal_error;     /* transport._fatal_error(exc, message) */
    PyObject *str_get_buffer;      /* connection.get_buffer(-1) */
    PyObject *str_read_ready;      /* connection._read_ready */
    /* What uvloop's socket transports answer: see uvloop_transport(). */
    PyObject *str_is_closing;      /* transport.is_closing() */
    PyObject *str_write_buffer_size; /* transport.get_write_buffer_size() */
    PyObject *str_get_extra_info;  /* transport.get_extra_info("socket") */
    PyObject *str_socket;          /* its argument */
    PyObject *str_fileno;          /* socket.fileno() */
    /* Imported from portside once, when the module loads. */
    PyObject *open_state;         /* portside.protocol.state.OPEN */
    PyObject *server_side;        /* portside.protocol.connection.SERVER */
    PyObject *client_side;        /* portside.protocol.connection.CLIENT */
    PyObject *encode_frame;       /* portside.protocol.speedups.encode_frame */
    PyObject *closed_ok;          /* portside.exceptions.ConnectionClosedOK */
    Py_ssize_t copy_threshold;    /* portside.protocol.connection._COPY_THRESHOLD */
    PyObject *joining_writelines; /* asyncio.WriteTransport.writelines */
    PyObject *selector_transport; /* asyncio.selector_events._SelectorSocketTransport, or NULL */
    PyObject *minus_one;          /* -1, get_buffer()'s argument */
    PyObject *buffer_updated;     /* ConnectionBase.buffer_updated, the method descriptor */
    PyObject *cancelled_error;    /* asyncio.CancelledError */
    PyObject *invalid_state_error; /* asyncio.InvalidStateError */
    PyObject *context_kwnames;    /* ("context",) */
    PyTypeObject *operation_type; /* Operation, below */
    PyTypeObject *waiter_type;    /* Waiter, below */
    /* Where ServerProtocol and ClientProtocol keep the slots the fast paths
       read, so that they read them without an attribute lookup: see
       protocol_slots(). NULL types when the layout is not the one expected. */
    PyObject *server_protocol;    /* portside.protocol.server.ServerProtocol */
    PyObject *client_protocol;    /* portside.protocol.client.ClientProtocol */
    Py_ssize_t state_offset;      /* state: an object */
    Py_ssize_t sending_offset;    /* _sending: an object */
    Py_ssize_t deflate_offset;    /* deflate: an object */
    Py_ssize_t side_offset;       /* side: an object */
    Py_ssize_t reading_offset;    /* _reading: an object, or a C bool */
    int reading_is_bool;
    Py_ssize_t out_offset;        /* _out: an object */
    /* What waiter_wake() hands a task's wakeup in place of a waiter that
       finished with a message: see resume_argument(). NULL without _asyncio. */
    PyObject *task_type;          /* _asyncio.Task */
    PyObject *resumed;            /* an _asyncio.Future finished with None */
    /* ReaderBase.buffer_updated called directly: see reader_events(). NULL
       without portside.protocol._speedups. */
    PyObject *reader_module;      /* portside.protocol._speedups, which holds reader_state */
    PyObject *reader_method;      /* ReaderBase.buffer_updated, the method descriptor */
    PyObject *(*reader_buffer_updated)(void *, PyObject *, PyObject *);
    void *reader_state;
} speedups_state;

static struct PyModuleDef speedups_module;

/* ConnectionBase. */

/*
 * The fields of the Python twin's __slots__, with the same names. Object fields
 * are NULL until set, and reading one then raises AttributeError, as reading an
 * unset slot does; Connection.__init__ sets them all.
 */
typedef struct {
    PyObject_HEAD
    PyObject *protocol;      /* protocol: the sans-I/O protocol */
    PyObject *waiter;        /* _waiter: the future of the coroutine in recv(), or None */
    PyObject *loop;          /* loop: the event loop */
    PyObject *transport;     /* transport: the asyncio transport */
    PyObject *messages;      /* _messages: a deque of messages nobody read yet, or None */
    PyObject *pending_error; /* _pending_error: the ProtocolError to fail on, or None */
    PyObject *fragmenting;   /* _fragmenting: a future while a fragmented send runs, or None */
    char handshaking;        /* _handshaking: received bytes belong to the handshake */
    char reading_paused;     /* _reading_paused: reading paused by a full queue */
    char write_paused;       /* _write_paused: the transport's buffer is over the limit */
    PyObject *spare_waiter;  /* the last recv()'s Waiter, for the next one: see take_waiter() */
    PyObject *waking;        /* the Waiter buffer_updated() is waking, borrowed, or NULL */
    char direct_io;          /* 0, DIRECT_READ_WRITE or DIRECT_WRITE: see _hook_transport() */
    int fd;                  /* the socket of hooked, while direct_io */
    PyObject *hooked;        /* the transport hooked, while direct_io, else NULL */
} ConnectionObject;

/* ConnectionObject.direct_io: what the connection does on the socket itself. */
#define DIRECT_READ_WRITE 1 /* asyncio's selector transport: reads and writes */
#define DIRECT_WRITE 2      /* uvloop's: writes */

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

/* obj.<name>() as a Py_ssize_t in *size, -1 if it is not an int: 0, or -1 on error. */
static int
call_method_size(PyObject *name, PyObject *obj, Py_ssize_t *size)
{
    PyObject *result = call_method(name, obj, NULL, NULL, 0);
    if (result == NULL) {
        return -1;
    }
    *size = PyLong_Check(result) ? PyLong_AsSsize_t(result) : -1;
    Py_DECREF(result);
    return *size == -1 && PyErr_Occurred() ? -1 : 0;
}

/* Raise StopIteration(value), as a coroutine that returned value does. */
static void
set_stop_iteration(PyObject *value)
{
    PyObject *exc = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (exc != NULL) {
        PyErr_SetObject(PyExc_StopIteration, exc);
        Py_DECREF(exc);
    }
}

/*
 * What __next__() (stop_always 0) or send() (stop_always 1) returns for one step
 * that ended with status and result: the value yielded, or NULL with the
 * return value in StopIteration (__next__() may leave a None return unraised).
 */
static PyObject *
step_result(PySendResult status, PyObject *result, int stop_always)
{
    if (status == PYGEN_NEXT) {
        return result;
    }
    if (status == PYGEN_RETURN) {
        if (stop_always || result != Py_None) {
            set_stop_iteration(result);
        }
        Py_DECREF(result);
    }
    return NULL;
}

/* The exception being raised, normalized, its traceback attached: taken from
   the thread's state (a new reference). */
static PyObject *
take_exception(void)
{
    PyObject *type, *value, *traceback;

    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
}

/* __await__() of the Waiter and of the Operation: each is its own iterator. */
static PyObject *
await_self(PyObject *self)
{
    return Py_NewRef(self);
}

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

enum { WAITER_PENDING, WAITER_CANCELLED, WAITER_FINISHED };

typedef struct {
    PyObject_HEAD
    PyObject *loop;
    PyObject *result;         /* once finished without exception */
    PyObject *exception;      /* once finished with one */
    PyObject *callback;       /* the first done callback (a task's wakeup), or NULL */
    PyObject *context;        /* its context */
    PyObject *more;           /* further (callback, context) tuples: a list, or NULL */
    PyObject *cancel_message; /* cancel(msg)'s msg, or NULL */
    PyObject *methods[3];     /* result, get_loop, add_done_callback, bound: see waiter_getattro() */
    char state;
    char blocking;            /* _asyncio_future_blocking */
} WaiterObject;

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
static int
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
static int
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
        Py_DECREF(exc);
        PyErr_SetString(PyExc_TypeError,
                        "StopIteration interacts badly with generators and cannot be raised "
                        "into a Future");
        return NULL;
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

static PyType_Spec waiter_spec = {
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
static int
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
static void
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
static void
drop_waiter(PyObject *waiter)
{
    WaiterObject *w = (WaiterObject *)waiter;
    Py_CLEAR(w->methods[0]);
    Py_CLEAR(w->methods[1]);
    Py_CLEAR(w->methods[2]);
    Py_DECREF(waiter);
}

/* Keep the waiter of a recv() that returned (a reference given) for the next one. */
static void
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
static PyObject *
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

/* Hand a message to the waiting coroutine, else to self._enqueue(). */
static int
deliver_message(ConnectionObject *self, speedups_state *st, PyObject *message,
                PyObject **wakeup)
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
        if (Py_TYPE(waiter) == st->waiter_type) {
            /* A C recv()'s, unless it was cancelled: finish it now, and wake its
               task once every event of this read is handled, as the task would
               find them if it were woken on the next turn of the loop. */
            if (((WaiterObject *)waiter)->state == WAITER_PENDING) {
                ((WaiterObject *)waiter)->result = Py_NewRef(message);
                ((WaiterObject *)waiter)->state = WAITER_FINISHED;
                is_done = 0;
                if (*wakeup != NULL) {
                    /* Not expected (_waiter stays None until the task runs), but
                       an earlier waiter must not be forgotten. */
                    is_done = schedule_callbacks(st, (WaiterObject *)*wakeup);
                    Py_DECREF(*wakeup);
                }
                /* Woken at the end of buffer_updated(), even after an error. */
                *wakeup = waiter;
                return is_done;
            }
            Py_DECREF(waiter);
            return call_method_void(st->str_enqueue, (PyObject *)self, message, NULL, 1);
        }
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
handle_event(ConnectionObject *self, speedups_state *st, PyObject *event, PyObject *events,
             PyObject **wakeup)
{
    Py_ssize_t count;

    /* Exactly bytes or str, as the twin's event.__class__ checks. */
    if (PyBytes_CheckExact(event) || PyUnicode_CheckExact(event)) {
        return deliver_message(self, st, event, wakeup);
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
handle_events(ConnectionObject *self, speedups_state *st, PyObject *events,
              PyObject **wakeup)
{
    PyObject *iterator, *event;
    int rc = 0;

    if (PyList_CheckExact(events)) {
        /* As a list iterator does, read the size again after every event. */
        for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(events); i++) {
            event = Py_NewRef(PyList_GET_ITEM(events, i));
            rc = handle_event(self, st, event, events, wakeup);
            Py_DECREF(event);
        }
        return rc;
    }
    if ((iterator = PyObject_GetIter(events)) == NULL) {
        return -1;
    }
    while (rc == 0 && (event = PyIter_Next(iterator)) != NULL) {
        rc = handle_event(self, st, event, events, wakeup);
        Py_DECREF(event);
    }
    Py_DECREF(iterator);
    return PyErr_Occurred() ? -1 : 0;
}

/* Whether protocol is exactly a ServerProtocol or a ClientProtocol, whose slots
   the fast paths read directly. */
static int
known_protocol(speedups_state *st, PyObject *protocol)
{
    PyObject *type = (PyObject *)Py_TYPE(protocol);
    return st->server_protocol != NULL &&
           (type == st->server_protocol || type == st->client_protocol);
}

/* The object in a slot of a known protocol: borrowed; NULL when unset. */
#define PROTOCOL_SLOT(protocol, offset) (*(PyObject **)((char *)(protocol) + (offset)))

/* Write the Pongs and Close replies that the protocol produced while receiving. */
static int
write_output(ConnectionObject *self, speedups_state *st, PyObject *protocol)
{
    PyObject *out, *frames;
    int pending;

    if (known_protocol(st, protocol) && (out = PROTOCOL_SLOT(protocol, st->out_offset)) != NULL) {
        pending = PyObject_IsTrue(out);
    }
    else if ((out = PyObject_GetAttr(protocol, st->str_out)) == NULL) {
        return -1;
    }
    else {
        pending = PyObject_IsTrue(out);
        Py_DECREF(out);
    }
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

/* protocol.buffer_updated(nbytes): the events. Called directly when that is
   ReaderBase's method, as it is unless a subclass overrides it. */
static PyObject *
reader_events(speedups_state *st, PyObject *protocol, PyObject *nbytes)
{
    if (st->reader_method != NULL &&
        _PyType_Lookup(Py_TYPE(protocol), st->str_buffer_updated) == st->reader_method) {
        return st->reader_buffer_updated(st->reader_state, protocol, nbytes);
    }
    return call_method(st->str_buffer_updated, protocol, nbytes, NULL, 1);
}

static PyObject *
connection_buffer_updated_impl(ConnectionObject *self, speedups_state *st, PyObject *nbytes)
{
    PyObject *protocol, *events, *wakeup = NULL, *type, *value, *traceback;
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
    events = reader_events(st, protocol, nbytes);
    rc = events == NULL ? -1 : handle_events(self, st, events, &wakeup);
    if (rc == 0) {
        rc = write_output(self, st, protocol);
    }
    Py_XDECREF(events);
    Py_DECREF(protocol);
    if (wakeup != NULL) {
        if (rc == 0) {
            self->waking = wakeup;
            rc = waiter_wake(st, (WaiterObject *)wakeup);
            self->waking = NULL;
            if (wakeup == self->spare_waiter && waiter_held_only_by((WaiterObject *)wakeup, 2)) {
                /* Its recv() returned: let the message go now, not at the next recv(). */
                waiter_reset((WaiterObject *)wakeup);
            }
        }
        else {
            /* Whatever failed, the task must not wait forever. */
            PyErr_Fetch(&type, &value, &traceback);
            if (schedule_callbacks(st, (WaiterObject *)wakeup) < 0) {
                PyErr_WriteUnraisable(wakeup);
            }
            PyErr_Restore(type, value, traceback);
        }
        Py_DECREF(wakeup);
    }
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
 *   extension writes the frame itself (masked, from a client).
 *
 * Anything else runs the Python implementation (Connection._recv_in_python or
 * _send_in_python) and passes every step through to that coroutine.
 */

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

/* 1 if obj.<name> is expected, 0 if not, -1 on error. */
static int
attribute_is(PyObject *obj, PyObject *name, PyObject *expected)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        return -1;
    }
    Py_DECREF(value);
    return value == expected;
}

/* The truth of value, a new reference it lets go of; -1 if value is NULL (an
   error raised) or its truth fails. */
static int
take_truth(PyObject *value)
{
    int truth;
    if (value == NULL) {
        return -1;
    }
    truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* The truth of obj.<name>, or -1 on error. */
static int
attribute_truth(PyObject *obj, PyObject *name)
{
    return take_truth(PyObject_GetAttr(obj, name));
}

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
 * Whether write() would send this frame at once: the transport not closing,
 * nothing buffered; on the selector transport, no write_eof() and no sendfile
 * either. 1, 0, or -1 on error.
 */
static int
can_send_now(ConnectionObject *conn, speedups_state *st, PyObject *transport)
{
    PyObject *value, *dict;
    Py_ssize_t size;
    int rc;

    if (conn->direct_io == DIRECT_WRITE) {
        /* uvloop: public methods only. write() after write_eof() sends too
           (uvloop keeps that flag to itself); portside never calls it. */
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

/* transport.write(frame), on the socket itself when write() would send it at
   once. 0, or -1 on error. */
static int
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
static int
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

/* 0 if a METH_METHOD method got no arguments, else -1 with TypeError. */
static int
no_arguments(const char *name, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 0 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments", name);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(connection_read_ready_doc,
"_read_ready($self, /)\n--\n\n"
"Read from the socket: the selector transport's _read_ready_cb once hooked.");

static PyObject *
connection_read_ready(ConnectionObject *self, PyTypeObject *defining_class,
                      PyObject *const *Py_UNUSED(args), Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *st = PyType_GetModuleState(defining_class);
    PyObject *transport, *dict, *buffer, *nbytes, *result;
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
        Py_CLEAR(buffer);
    }
    if (buffer != NULL && view.len == 0) {
        PyBuffer_Release(&view);
        Py_CLEAR(buffer);
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
    }
    if (buffer == NULL) {
        result = fatal_error(st, transport, "Fatal error: protocol.get_buffer() call failed.");
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
            result = fatal_error(st, transport, "Fatal read error on socket transport");
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

/* 1 if obj has the attribute, 0 if not, -1 on error. */
static int
has_attribute(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value != NULL) {
        Py_DECREF(value);
        return 1;
    }
    if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

#ifdef PORTSIDE_SELECTOR_IO
/*
 * uvloop's socket transports (plain TCP or Unix, not TLS): write() sends at
 * once what the socket takes when the transport is not closing and holds
 * nothing, as the connection can do itself; reading stays libuv's. Told by the
 * type's name, so that uvloop is not imported for it.
 */
static int
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
#endif

PyDoc_STRVAR(connection_hook_transport_doc,
"_hook_transport($self, /)\n--\n\n"
"Write on the socket directly when write() would send at once, and on asyncio's\n"
"selector socket transport read too (into get_buffer()); return whether the\n"
"transport is one of those.");

static PyObject *
connection_hook_transport(ConnectionObject *self, PyTypeObject *defining_class,
                          PyObject *const *Py_UNUSED(args), Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *st = PyType_GetModuleState(defining_class);
    PyObject *transport = self->transport, *current, *own, *fd, *hook;
    int same;
    long number;

    if (no_arguments("_hook_transport", nargs, kwnames) < 0) {
        return NULL;
    }
#ifdef PORTSIDE_SELECTOR_IO
    if (self->direct_io || transport == NULL) {
        Py_RETURN_FALSE;
    }
    if (uvloop_transport(transport)) {
        int fd;
        if ((same = extra_info_fd(st, transport, &fd)) != 0) {
            return same < 0 ? NULL : Py_NewRef(Py_False);
        }
        self->fd = fd;
        self->hooked = Py_NewRef(transport);
        self->direct_io = DIRECT_WRITE;
        Py_RETURN_TRUE;
    }
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
    /* Reading into get_buffer(): _read_ready_cb is _read_ready__get_buffer. */
    if ((current = PyObject_GetAttr(transport, st->str_read_ready_cb)) == NULL) {
        return NULL;
    }
    if ((own = PyObject_GetAttr(transport, st->str_get_buffer_cb)) == NULL) {
        Py_DECREF(current);
        return NULL;
    }
    same = PyObject_RichCompareBool(current, own, Py_EQ);
    Py_DECREF(current);
    Py_DECREF(own);
    if (same <= 0) {
        return same < 0 ? NULL : Py_NewRef(Py_False);
    }
    if ((fd = PyObject_GetAttr(transport, st->str_sock_fd)) == NULL) {
        return NULL;
    }
    number = PyLong_Check(fd) ? PyLong_AsLong(fd) : -1;
    Py_DECREF(fd);
    if (number == -1 && PyErr_Occurred()) {
        return NULL;
    }
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
#else
    Py_RETURN_FALSE;
#endif
}

PyDoc_STRVAR(connection_unhook_transport_doc,
"_unhook_transport($self, /)\n--\n\n"
"Undo _hook_transport(): the transport reads and writes as it did.");

static PyObject *
connection_unhook_transport(ConnectionObject *self, PyTypeObject *defining_class,
                            PyObject *const *Py_UNUSED(args), Py_ssize_t nargs,
                            PyObject *kwnames)
{
    speedups_state *st = PyType_GetModuleState(defining_class);
    PyObject *transport, *own;
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
    /* The transport's reference to this connection goes: it would keep both
       alive until the garbage collector came. */
    if ((own = PyObject_GetAttr(transport, st->str_get_buffer_cb)) == NULL) {
        Py_DECREF(transport);
        return NULL;
    }
    rc = PyObject_SetAttr(transport, st->str_read_ready_cb, own);
    Py_DECREF(own);
    Py_DECREF(transport);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

PyDoc_STRVAR(connection_write_frame_doc,
"_write_frame($self, frame, /)\n--\n\n"
"Write an encoded frame (bytes) as transport.write(frame) would: on the socket\n"
"itself when write() would send it at once. broadcast() writes with it.");

static PyObject *
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
    if (self->transport == NULL) {
        unset_attribute((PyObject *)self, "transport");
        return NULL;
    }
    if (write_frame(self, st, args[0]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
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
    rc = write_frame(conn, st, frame);
    Py_DECREF(frame);
    return rc < 0 ? -1 : 1;
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
static int
send_fast(OperationObject *op, speedups_state *st)
{
    ConnectionObject *conn = (ConnectionObject *)op->connection;
    PyObject *message = op->message, *protocol, *frame, *frames, *payload;
    const char *data;
    unsigned char header[10];
    Py_ssize_t size, hsize;
    unsigned char first;
    int ok, rc;

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
       itself, or by writelines() unless that would join them anyway. */
    if (size >= st->copy_threshold) {
        if ((rc = write_header_and_payload(conn, st, header, hsize, data, size,
                                           first == 0x82 ? message : NULL)) != 0) {
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
            rc = call_method_void(st->str_writelines, conn->transport, frames, NULL, 1);
            Py_DECREF(frames);
            return rc < 0 ? -1 : 1;
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
    return rc < 0 ? -1 : 1;
}

static int
send_start(OperationObject *op, speedups_state *st, PyObject **result)
{
    ConnectionObject *conn = (ConnectionObject *)op->connection;
    int rc = send_fast(op, st);

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
    op->inner = call_method(st->str_recv_in_python, (PyObject *)conn,
                            op->iterating ? Py_True : Py_False, NULL, 1);
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

/* The exception that throw(type[, value[, traceback]]) raises, as generators make it. */
static PyObject *
exception_to_throw(PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *type, *value, *traceback, *exc;

    if (nargs < 1 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "throw expected 1 to 3 arguments, got %zd", nargs);
        return NULL;
    }
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

static PyType_Spec operation_spec = {
    .name = "portside.asyncio._speedups.Operation",
    .basicsize = sizeof(OperationObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = operation_slots,
};

/* ConnectionBase's recv(), send() and __anext__(). */

PyDoc_STRVAR(connection_recv_doc,
"recv($self, /)\n--\n\n"
"Return the next message: str for text, bytes for binary (awaitable).");

static PyObject *
connection_recv(ConnectionObject *self, PyTypeObject *defining_class, PyObject *const *args,
                Py_ssize_t nargs, PyObject *kwnames)
{
    /* recv(_iterating=False): the flag is __anext__'s, positional or keyword. */
    PyObject *iterating = nargs > 0 ? args[0] : NULL;
    int flag = 0;

    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        if (nargs > 0 || PyTuple_GET_SIZE(kwnames) > 1 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(kwnames, 0)) ||
            PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "_iterating")) {
            PyErr_SetString(PyExc_TypeError, "recv() takes no keyword arguments");
            return NULL;
        }
        iterating = args[0];
    }
    else if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "recv() takes at most 1 argument (%zd given)", nargs);
        return NULL;
    }
    if (iterating != NULL && (flag = PyObject_IsTrue(iterating)) < 0) {
        return NULL;
    }
    return new_operation(self, PyType_GetModuleState(defining_class), OP_RECV, NULL,
                         (char)flag);
}

PyDoc_STRVAR(connection_send_doc,
"send($self, message, /)\n--\n\n"
"Send a message (awaitable): str as text, bytes-like as binary, an iterable\n"
"or async iterable of them as a fragmented message.");

static PyObject *
connection_send(ConnectionObject *self, PyTypeObject *defining_class, PyObject *const *args,
                Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);

    if (nargs + nkw != 1 ||
        (nkw == 1 && (!PyUnicode_Check(PyTuple_GET_ITEM(kwnames, 0)) ||
                      PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0),
                                                       "message")))) {
        PyErr_SetString(PyExc_TypeError, "send() takes exactly one argument: message");
        return NULL;
    }
    return new_operation(self, PyType_GetModuleState(defining_class), OP_SEND, args[0], 0);
}

static PyObject *
connection_anext(PyObject *self)
{
    PyObject *module = PyType_GetModuleByDef(Py_TYPE(self), &speedups_module);
    if (module == NULL) {
        return NULL;
    }
    /* recv() ends the iteration itself on a normal closure: one operation per message. */
    return new_operation((ConnectionObject *)self, PyModule_GetState(module), OP_RECV, NULL, 1);
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
    Py_VISIT(self->spare_waiter);
    Py_VISIT(self->hooked);
    Py_VISIT(self->loop);
    Py_VISIT(self->transport);
    Py_VISIT(self->messages);
    Py_VISIT(self->pending_error);
    Py_VISIT(self->fragmenting);
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
    {NULL, 0, 0, 0, NULL},
};

static PyObject *
connection_get_direct_io(ConnectionObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->direct_io);
}

/* Not a slot of the Python twin, which has a class attribute: 0. */
static PyGetSetDef connection_getset[] = {
    {"_direct_io", (getter)connection_get_direct_io, NULL,
     "0; 1 when reading and writing on the socket itself (asyncio's selector\n"
     "transport), 2 when writing only (uvloop's): see _hook_transport().",
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

static PyType_Spec connection_spec = {
    .name = "portside.asyncio._speedups.ConnectionBase",
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
    if (strcmp(waiter_methods[WAITER_RESULT].ml_name, "result") != 0 ||
        strcmp(waiter_methods[WAITER_GET_LOOP].ml_name, "get_loop") != 0 ||
        strcmp(waiter_methods[WAITER_ADD_DONE_CALLBACK].ml_name, "add_done_callback") != 0) {
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
    st->waiter_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &waiter_spec, NULL);
    if (st->waiter_type == NULL ||
        PyModule_AddObjectRef(module, "Waiter", (PyObject *)st->waiter_type) < 0) {
        return -1;
    }
    st->operation_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &operation_spec, NULL);
    if (st->operation_type == NULL ||
        PyModule_AddObjectRef(module, "Operation", (PyObject *)st->operation_type) < 0) {
        return -1;
    }
    if ((type = PyType_FromModuleAndSpec(module, &connection_spec, NULL)) == NULL) {
        return -1;
    }
    /* The descriptor that the type's buffer_updated is, unless overridden. */
    st->buffer_updated = PyDict_GetItemWithError(((PyTypeObject *)type)->tp_dict,
                                                 st->str_buffer_updated);
    if (st->buffer_updated == NULL) {
        Py_DECREF(type);
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError, "ConnectionBase has no buffer_updated");
        }
        return -1;
    }
    Py_INCREF(st->buffer_updated);
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
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
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

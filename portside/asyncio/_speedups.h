/*
 * What the C files of portside.asyncio._speedups share: the module state, the
 * objects of ConnectionBase and Waiter, and the functions one file offers the
 * others. One extension module, one file per concern:
 *
 *   _speedups_module.c      module state and init: names, imports, types
 *   _speedups_helpers.c     small helpers: calls, exceptions, attributes
 *   _speedups_connection.c  ConnectionBase: its fields, methods and lifetime
 *   _speedups_receive.c     buffer_updated(): events to the waiting recv()
 *   _speedups_waiter.c      Waiter, the future a C recv() waits on
 *   _speedups_operation.c   Operation, the coroutine of recv(), send(), __anext__()
 *   _speedups_send.c        send()'s fast path: frames written without Python
 *   _speedups_direct_io.c   writing on the socket itself; _hook_transport()
 *   _speedups_selector.c    asyncio's selector socket transport: reads, checks
 *   _speedups_uvloop.c      uvloop's socket transports: checks
 *
 * Every name here is internal to the extension: it is built with hidden
 * visibility, and with link-time optimization where the compiler has it (see
 * setup.py), so that a call from one file to another costs what it did when
 * they were one.
 */

#ifndef PORTSIDE_ASYNCIO_SPEEDUPS_H
#define PORTSIDE_ASYNCIO_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stddef.h>

/* Reads and writes on a socket's descriptor: see _speedups_direct_io.c and
   _speedups_selector.c. */
#ifndef _WIN32
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#define PORTSIDE_SELECTOR_IO 1
#endif
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

/*
 * Python versions. portside supports 3.10 to 3.13; every branch on the version
 * says what it is for:
 *
 * - 3.12 names the member types Py_T_BOOL and Py_T_OBJECT_EX, in Python.h;
 *   before, structmember.h has them as T_BOOL and T_OBJECT_EX.
 * - 3.13 has critical sections, which lock an object on free-threaded builds
 *   for the duration of a method, as the member descriptors do for each
 *   access; before, there is no free-threaded build, and the GIL does that.
 * - 3.11 has PyType_GetModuleByDef(); on 3.10, _speedups_helpers.c has its
 *   equivalent.
 * - _speedups_module.c declares the module's support of per-interpreter GILs
 *   (3.12 slot) and free threading (3.13 slot) where those slots exist.
 *
 * CPython details beyond the stable API, each the same on 3.10 to 3.13:
 * _PyType_Lookup() (an attribute in a type's MRO, without calling a
 * descriptor), the tp_dict of heap types (ours, ReaderBase: only static types
 * lost theirs, in 3.12), PyMemberDescrObject.d_member (where a slot lives) and
 * PyCFunctionObject.m_ml (a C function's name). What the accelerator reads of
 * asyncio's and uvloop's classes is checked, where it is used, against what
 * it expects, and anything else leaves the work to their public methods.
 */
#if PY_VERSION_HEX < 0x030C0000
#include <structmember.h>
#define Py_T_BOOL T_BOOL
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_T_LONGLONG T_LONGLONG
#endif

#if PY_VERSION_HEX < 0x030D0000
#define Py_BEGIN_CRITICAL_SECTION(op) {
#define Py_END_CRITICAL_SECTION() }
#endif

#if PY_VERSION_HEX < 0x030B0000
PyObject *type_module_by_def(PyTypeObject *type, PyModuleDef *def);
#define PyType_GetModuleByDef type_module_by_def
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
    /* What the selector loop's socket transport keeps: see
       _speedups_selector.c. */
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
    PyTypeObject *operation_type; /* Operation: _speedups_operation.c */
    PyTypeObject *waiter_type;    /* Waiter: _speedups_waiter.c */
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

/* Defined in _speedups_module.c. */
extern struct PyModuleDef speedups_module;

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
    /* Traffic since the handshake, for access logs and metrics: see count_sent(). */
    long long messages_received; /* messages_received: data messages received */
    long long messages_sent;     /* messages_sent: data messages sent */
    long long bytes_received;    /* bytes_received: bytes read after the handshake */
    long long bytes_sent;        /* bytes_sent: bytes of frames written after it */
    PyObject *write_barrier; /* _write_barrier: called before each write, NULL for None */
} ConnectionObject;

/* A message of size bytes of frames sent by a fast path. */
static inline void
count_sent(ConnectionObject *conn, Py_ssize_t size)
{
    conn->messages_sent++;
    conn->bytes_sent += size;
}

/* Call conn's _write_barrier, when it has one, before it writes anything: the
   pub/sub hub writes what it deferred for the connection first. 0, or -1 when
   the barrier raised. The entry points that write call it (send()'s fast path,
   _write_frame()); write_frame() and the functions under it do not. The call
   is in _speedups_connection.c. */
int call_write_barrier(ConnectionObject *conn);

static inline int
run_write_barrier(ConnectionObject *conn)
{
    return conn->write_barrier == NULL ? 0 : call_write_barrier(conn);
}

/* ConnectionObject.direct_io: what the connection does on the socket itself. */
#define DIRECT_READ_WRITE 1 /* asyncio's selector transport: reads and writes */
#define DIRECT_WRITE 2      /* uvloop's: writes */

/* A Waiter: see _speedups_waiter.c. */

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

/* Helpers small enough to be inlined where they are called. */

/* Return obj.<name>(*args[:nargs]), nargs <= 2. */
static inline PyObject *
call_method(PyObject *name, PyObject *obj, PyObject *a, PyObject *b, size_t nargs)
{
    /* A free slot before obj lets the callee prepend its own argument. */
    PyObject *stack[4] = {NULL, obj, a, b};
    return PyObject_VectorcallMethod(name, stack + 1,
                                     (nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* The same, for a call made for its side effects only: 0, or -1 on error. */
static inline int
call_method_void(PyObject *name, PyObject *obj, PyObject *a, PyObject *b, size_t nargs)
{
    PyObject *result = call_method(name, obj, a, b, nargs);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* Whether protocol is exactly a ServerProtocol or a ClientProtocol, whose slots
   the fast paths read directly. */
static inline int
known_protocol(speedups_state *st, PyObject *protocol)
{
    PyObject *type = (PyObject *)Py_TYPE(protocol);
    return st->server_protocol != NULL &&
           (type == st->server_protocol || type == st->client_protocol);
}

/* The object in a slot of a known protocol: borrowed; NULL when unset. */
#define PROTOCOL_SLOT(protocol, offset) (*(PyObject **)((char *)(protocol) + (offset)))

/* The truth of value, a new reference it lets go of; -1 if value is NULL (an
   error raised) or its truth fails. */
static inline int
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

/* _speedups_helpers.c */
void unset_attribute(PyObject *obj, const char *name);
int call_method_size(PyObject *name, PyObject *obj, Py_ssize_t *size);
void set_stop_iteration(PyObject *value);
PyObject *step_result(PySendResult status, PyObject *result, int stop_always);
PyObject *take_exception(void);
PyObject *await_self(PyObject *self);
int attribute_is(PyObject *obj, PyObject *name, PyObject *expected);
int attribute_truth(PyObject *obj, PyObject *name);
int optional_attribute(PyObject *obj, PyObject *name, PyObject **value);
int has_attribute(PyObject *obj, PyObject *name);
int no_arguments(const char *name, Py_ssize_t nargs, PyObject *kwnames);

/* _speedups_connection.c */
extern PyType_Spec connection_spec;

/* _speedups_receive.c */
PyObject *connection_buffer_updated_impl(ConnectionObject *self, speedups_state *st,
                                         PyObject *nbytes);
PyObject *connection_buffer_updated(ConnectionObject *self, PyTypeObject *defining_class,
                                    PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

/* _speedups_waiter.c */
extern PyType_Spec waiter_spec;
int waiter_methods_in_order(void);
int schedule_callbacks(speedups_state *st, WaiterObject *w);
int waiter_wake(speedups_state *st, WaiterObject *w);
int waiter_held_only_by(WaiterObject *w, Py_ssize_t holders);
void waiter_reset(WaiterObject *w);
void drop_waiter(PyObject *waiter);
void release_waiter(ConnectionObject *conn, PyObject *waiter);
PyObject *take_waiter(ConnectionObject *conn, speedups_state *st);

/* _speedups_operation.c */
extern PyType_Spec operation_spec;
PyObject *connection_recv(ConnectionObject *self, PyTypeObject *defining_class,
                          PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
PyObject *connection_send(ConnectionObject *self, PyTypeObject *defining_class,
                          PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
PyObject *connection_anext(PyObject *self);

/* _speedups_send.c */
int send_fast(ConnectionObject *conn, speedups_state *st, PyObject *message);

/* _speedups_direct_io.c */
int write_frame(ConnectionObject *conn, speedups_state *st, PyObject *frame);
int write_header_and_payload(ConnectionObject *conn, speedups_state *st,
                             const unsigned char *header, Py_ssize_t hsize, const char *data,
                             Py_ssize_t size, PyObject *owner);
PyObject *connection_hook_transport(ConnectionObject *self, PyTypeObject *defining_class,
                                    PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
PyObject *connection_unhook_transport(ConnectionObject *self, PyTypeObject *defining_class,
                                      PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames);
PyObject *connection_write_frame(ConnectionObject *self, PyTypeObject *defining_class,
                                 PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

/* _speedups_selector.c */
PyObject *connection_read_ready(ConnectionObject *self, PyTypeObject *defining_class,
                                PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
int selector_can_send_now(speedups_state *st, PyObject *transport);
PyObject *hook_selector_transport(ConnectionObject *self, speedups_state *st,
                                  PyObject *transport);
int unhook_selector_transport(speedups_state *st, PyObject *transport);

/* _speedups_uvloop.c */
int uvloop_transport(PyObject *transport);
int uvloop_can_send_now(speedups_state *st, PyObject *transport);
PyObject *hook_uvloop_transport(ConnectionObject *self, speedups_state *st, PyObject *transport);

#endif /* PORTSIDE_ASYNCIO_SPEEDUPS_H */

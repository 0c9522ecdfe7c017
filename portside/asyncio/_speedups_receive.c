/*
 * ConnectionBase.buffer_updated(): the receive path. It takes the events of the
 * sans-I/O protocol and hands messages to the coroutine waiting in recv(), the
 * rest to the Python subclass, as the twin in _pyspeedups.py does.
 */

#include "_speedups.h"

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
        self->messages_received++;
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

PyObject *
connection_buffer_updated_impl(ConnectionObject *self, speedups_state *st, PyObject *nbytes)
{
    PyObject *protocol, *events, *wakeup = NULL, *type, *value, *traceback;
    int rc;

    if (self->handshaking) {
        rc = call_method_void(st->str_receive_handshake, (PyObject *)self, nbytes, NULL, 1);
        return rc < 0 ? NULL : Py_NewRef(Py_None);
    }
    /* As the twin: a non-negative int that fits the counter; anything else
       goes to the protocol uncounted. */
    if (PyLong_CheckExact(nbytes)) {
        int overflow;
        long long received = PyLong_AsLongLongAndOverflow(nbytes, &overflow);
        /* ccoverage: unreachable: an exact int converts, or sets overflow */
        if (received == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (!overflow && received >= 0) {
            self->bytes_received += received;
        }
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

PyObject *
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

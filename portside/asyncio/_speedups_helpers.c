/* Small helpers the other files share: calls, exceptions, attributes. */

#include "_speedups.h"

/* The AttributeError of reading an unset slot, worded as CPython words it. */
void
unset_attribute(PyObject *obj, const char *name)
{
    PyErr_Format(PyExc_AttributeError, "'%.200s' object has no attribute '%s'",
                 Py_TYPE(obj)->tp_name, name);
}

/* obj.<name>() as a Py_ssize_t in *size, -1 if it is not an int: 0, or -1 on error. */
int
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
void
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
PyObject *
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
PyObject *
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
PyObject *
await_self(PyObject *self)
{
    return Py_NewRef(self);
}

/* 1 if obj.<name> is expected, 0 if not, -1 on error. */
int
attribute_is(PyObject *obj, PyObject *name, PyObject *expected)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        return -1;
    }
    Py_DECREF(value);
    return value == expected;
}

/* The truth of obj.<name>, or -1 on error. */
int
attribute_truth(PyObject *obj, PyObject *name)
{
    return take_truth(PyObject_GetAttr(obj, name));
}

/* obj.<name> in *value (a new reference) and 1; 0 and *value NULL if obj has no
   such attribute (AttributeError); -1 on another error. */
int
optional_attribute(PyObject *obj, PyObject *name, PyObject **value)
{
    if ((*value = PyObject_GetAttr(obj, name)) != NULL) {
        return 1;
    }
    if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

/* 1 if obj has the attribute, 0 if not, -1 on error. */
int
has_attribute(PyObject *obj, PyObject *name)
{
    PyObject *value;
    int rc = optional_attribute(obj, name, &value);
    Py_XDECREF(value);
    return rc;
}

/* 0 if a METH_METHOD method got no arguments, else -1 with TypeError. */
int
no_arguments(const char *name, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 0 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments", name);
        return -1;
    }
    return 0;
}

#if PY_VERSION_HEX < 0x030B0000
/*
 * Python 3.10's PyType_GetModuleByDef(), which 3.11 has: the module of the
 * first heap type in the MRO of type that a module defined by def made, a
 * borrowed reference; else TypeError. It walks the MRO as 3.11 does, reading
 * each heap type's ht_module (PyType_GetModule() would raise, and this runs
 * for every message of an "async for"). A Python subclass of ConnectionBase
 * is a heap type without a module: ConnectionBase comes after it.
 */
PyObject *
type_module_by_def(PyTypeObject *type, PyModuleDef *def)
{
    PyObject *mro = type->tp_mro, *module;
    Py_ssize_t count = mro == NULL ? 0 : PyTuple_GET_SIZE(mro);

    for (Py_ssize_t i = 0; i < count; i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!PyType_HasFeature(base, Py_TPFLAGS_HEAPTYPE)) {
            continue;
        }
        module = ((PyHeapTypeObject *)base)->ht_module;
        if (module != NULL && PyModule_GetDef(module) == def) {
            return module;
        }
    }
    PyErr_Format(PyExc_TypeError, "no base class of '%s' belongs to module %s", type->tp_name,
                 def->m_name);
    return NULL;
}
#endif

/* The model's per-event loops in C: the same arithmetic, in the same order, on the same Python
 * dicts as the reference loops of stream_scorer/model/kernels.py, so the same floats and the same
 * dict contents (tests hold the two equal). No state of its own: River's scaler and the weights
 * stay the Python dicts that checkpoints, copies and River itself read.
 *
 * Built with -ffp-contract=off: a fused multiply-add would round differently from Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

/* value of d[key] as a double, or `dflt` when the key is absent; -1 with an exception set on error */
static int
get_double(PyObject *d, PyObject *key, double dflt, double *out)
{
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (v == NULL) {
        if (PyErr_Occurred())
            return -1;
        *out = dflt;
        return 0;
    }
    double r = PyFloat_AsDouble(v);
    if (r == -1.0 && PyErr_Occurred())
        return -1;
    *out = r;
    return 0;
}

static int
set_double(PyObject *d, PyObject *key, double value)
{
    PyObject *f = PyFloat_FromDouble(value);
    if (f == NULL)
        return -1;
    int rc = PyDict_SetItem(d, key, f);
    Py_DECREF(f);
    return rc;
}

static int
check_dicts(PyObject *const *args, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyDict_Check(args[i])) {
            PyErr_Format(PyExc_TypeError, "argument %zd must be a dict, not %.100s", i + 1,
                         Py_TYPE(args[i])->tp_name);
            return -1;
        }
    }
    return 0;
}

static int
check_list_len(PyObject *scaled, PyObject *x)
{
    if (!PyList_Check(scaled)) {
        PyErr_SetString(PyExc_TypeError, "scaled values must be a list");
        return -1;
    }
    if (PyList_GET_SIZE(scaled) != PyDict_GET_SIZE(x)) {
        PyErr_Format(PyExc_ValueError, "%zd scaled values for %zd features",
                     PyList_GET_SIZE(scaled), PyDict_GET_SIZE(x));
        return -1;
    }
    return 0;
}

/* scale_learn(x, counts, means, vars, std) -> list[float] */
static PyObject *
scale_learn(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "scale_learn(x, counts, means, vars, std)");
        return NULL;
    }
    if (check_dicts(args, 5) < 0)
        return NULL;
    PyObject *x = args[0], *counts = args[1], *means = args[2], *vars = args[3], *std = args[4];
    PyObject *out = PyList_New(PyDict_GET_SIZE(x));
    if (out == NULL)
        return NULL;
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(x, &pos, &key, &value)) {
        Py_INCREF(key);
        Py_INCREF(value);
        double xi = PyFloat_AsDouble(value);
        if (xi == -1.0 && PyErr_Occurred())
            goto fail;
        long long n = 0;
        PyObject *c = PyDict_GetItemWithError(counts, key);
        if (c == NULL) {
            if (PyErr_Occurred())
                goto fail;
        } else {
            n = PyLong_AsLongLong(c);
            if (n == -1 && PyErr_Occurred())
                goto fail;
        }
        n += 1;
        PyObject *nobj = PyLong_FromLongLong(n);
        if (nobj == NULL)
            goto fail;
        int rc = PyDict_SetItem(counts, key, nobj);
        Py_DECREF(nobj);
        if (rc < 0)
            goto fail;
        double old, v;
        if (get_double(means, key, 0.0, &old) < 0)
            goto fail;
        double d = xi - old;
        double m = old + d / (double)n;
        if (set_double(means, key, m) < 0)
            goto fail;
        double e = xi - m;
        if (get_double(vars, key, 0.0, &v) < 0)
            goto fail;
        v = v + (d * e - v) / (double)n;
        if (set_double(vars, key, v) < 0)
            goto fail;
        double scaled_value;
        if (v != 0.0) {
            double s = pow(v, 0.5);  /* Python's v ** 0.5 */
            if (set_double(std, key, s) < 0)
                goto fail;
            scaled_value = e / s;
        } else {
            if (set_double(std, key, 0.0) < 0)
                goto fail;
            scaled_value = 0.0;
        }
        PyObject *f = PyFloat_FromDouble(scaled_value);
        if (f == NULL)
            goto fail;
        PyList_SET_ITEM(out, i, f);
        i++;
        Py_DECREF(key);
        Py_DECREF(value);
        continue;
    fail:
        Py_DECREF(key);
        Py_DECREF(value);
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* scale_transform(x, means, std) -> list[float | None] */
static PyObject *
scale_transform(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "scale_transform(x, means, std)");
        return NULL;
    }
    if (check_dicts(args, 3) < 0)
        return NULL;
    PyObject *x = args[0], *means = args[1], *std = args[2];
    PyObject *out = PyList_New(PyDict_GET_SIZE(x));
    if (out == NULL)
        return NULL;
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(x, &pos, &key, &value)) {
        double s, m;
        if (get_double(std, key, 0.0, &s) < 0)
            goto fail;
        PyObject *item;
        if (s != 0.0) {
            double xi = PyFloat_AsDouble(value);
            if (xi == -1.0 && PyErr_Occurred())
                goto fail;
            if (get_double(means, key, 0.0, &m) < 0)
                goto fail;
            item = PyFloat_FromDouble((xi - m) / s);
            if (item == NULL)
                goto fail;
        } else {
            item = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(out, i, item);
        i++;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* Append (name, c) to *positive (created on first use). */
static int
append_reason(PyObject **positive, PyObject *name, double c)
{
    if (*positive == NULL) {
        *positive = PyList_New(0);
        if (*positive == NULL)
            return -1;
    }
    PyObject *cf = PyFloat_FromDouble(c);
    if (cf == NULL)
        return -1;
    PyObject *pair = PyTuple_Pack(2, name, cf);
    Py_DECREF(cf);
    if (pair == NULL)
        return -1;
    int rc = PyList_Append(*positive, pair);
    Py_DECREF(pair);
    return rc;
}

static PyObject *
logit_result(double z, PyObject *positive)
{
    if (positive == NULL) {
        positive = PyList_New(0);
        if (positive == NULL)
            return NULL;
    }
    PyObject *zf = PyFloat_FromDouble(z);
    if (zf == NULL) {
        Py_DECREF(positive);
        return NULL;
    }
    PyObject *r = PyTuple_Pack(2, zf, positive);
    Py_DECREF(zf);
    Py_DECREF(positive);
    return r;
}

/* contributions(x, scaled, weights, intercept, want_reasons) -> (z, [(name, c) with c > 0]) */
static PyObject *
contributions(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "contributions(x, scaled, weights, intercept, want_reasons)");
        return NULL;
    }
    PyObject *x = args[0], *scaled = args[1], *weights = args[2];
    if (!PyDict_Check(x) || !PyDict_Check(weights)) {
        PyErr_SetString(PyExc_TypeError, "x and weights must be dicts");
        return NULL;
    }
    if (check_list_len(scaled, x) < 0)
        return NULL;
    double z = PyFloat_AsDouble(args[3]);
    if (z == -1.0 && PyErr_Occurred())
        return NULL;
    int want = PyObject_IsTrue(args[4]);
    if (want < 0)
        return NULL;
    PyObject *positive = NULL;
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(x, &pos, &key, &value)) {
        PyObject *sv = PyList_GET_ITEM(scaled, i);
        i++;
        if (sv == Py_None)
            continue;
        double v = PyFloat_AsDouble(sv), w;
        if (v == -1.0 && PyErr_Occurred())
            goto fail;
        if (get_double(weights, key, 0.0, &w) < 0)
            goto fail;
        double c = w * v;
        z += c;
        if (want && c > 0.0 && append_reason(&positive, key, c) < 0)
            goto fail;
    }
    return logit_result(z, positive);
fail:
    Py_XDECREF(positive);
    return NULL;
}

/* sgd_learn(x, scaled, weights, intercept, y, w_pos, w_neg, sample_weight, clip, intercept_lr,
 *           lr, l2) -> the new intercept
 * River's GLM.learn_one step for the log loss, as kernels.py_sgd_learn: the logit, the loss
 * gradient (River's expressions, so the same floats) times the sample weight, clipped; the
 * intercept's step; each weight of a feature in x moves by lr times its gradient. */
static PyObject *
sgd_learn(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError,
                        "sgd_learn(x, scaled, weights, intercept, y, w_pos, w_neg, sample_weight, "
                        "clip, intercept_lr, lr, l2)");
        return NULL;
    }
    PyObject *x = args[0], *scaled = args[1], *weights = args[2];
    if (!PyDict_Check(x) || !PyDict_Check(weights)) {
        PyErr_SetString(PyExc_TypeError, "x and weights must be dicts");
        return NULL;
    }
    if (check_list_len(scaled, x) < 0)
        return NULL;
    double num[8];
    for (int i = 0; i < 8; i++) {
        int at = i < 1 ? 3 : i + 4; /* intercept, then w_pos .. l2 (y is args[4]) */
        num[i] = PyFloat_AsDouble(args[at]);
        if (num[i] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    double intercept = num[0], w_pos = num[1], w_neg = num[2], sample_weight = num[3];
    double clip = num[4], intercept_lr = num[5], lr = num[6], l2 = num[7];
    int y = PyObject_IsTrue(args[4]);
    if (y < 0)
        return NULL;

    double z = 0.0;
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(x, &pos, &key, &value)) {
        double v = PyFloat_AsDouble(PyList_GET_ITEM(scaled, i)), w;
        i++;
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        if (get_double(weights, key, 0.0, &w) < 0)
            return NULL;
        z += w * v;
    }
    z += intercept;
    double g;
    if (y) {
        if (z > 18.0)
            g = w_pos * exp(-z) * -1;
        else if (z < -18.0)
            g = w_pos * -1;
        else
            g = w_pos * -1 / (exp(z) + 1.0);
    } else {
        z = z * -1;
        if (z > 18.0)
            g = w_neg * exp(-z) * 1;
        else if (z < -18.0)
            g = w_neg * 1;
        else
            g = w_neg * 1 / (exp(z) + 1.0);
    }
    g *= sample_weight;
    double m = clip < g ? clip : g; /* Python's min(g, clip), then max(m, -clip) */
    g = -clip > m ? -clip : m;
    intercept -= intercept_lr * g;

    pos = 0;
    i = 0;
    while (PyDict_Next(x, &pos, &key, &value)) {
        double v = PyFloat_AsDouble(PyList_GET_ITEM(scaled, i)), w;
        i++;
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        if (get_double(weights, key, 0.0, &w) < 0)
            return NULL;
        double nw = l2 != 0.0 ? w - (v * g + w * l2) * lr : w - v * g * lr;
        /* x is not changed here (only weights is), so iterating it stays valid */
        Py_INCREF(key);
        int rc = set_double(weights, key, nw);
        Py_DECREF(key);
        if (rc < 0)
            return NULL;
    }
    return PyFloat_FromDouble(intercept);
}

static PyMethodDef methods[] = {
    {"scale_learn", (PyCFunction)(void (*)(void))scale_learn, METH_FASTCALL,
     "Learn x into River's StandardScaler statistics; return x scaled, as a list."},
    {"scale_transform", (PyCFunction)(void (*)(void))scale_transform, METH_FASTCALL,
     "x scaled by the statistics, as a list; None where a feature has no variance."},
    {"contributions", (PyCFunction)(void (*)(void))contributions, METH_FASTCALL,
     "The logit of scaled x and its positive contributions."},
    {"sgd_learn", (PyCFunction)(void (*)(void))sgd_learn, METH_FASTCALL,
     "One SGD step of the log loss on scaled x; returns the new intercept."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "The model's per-event loops in C (see stream_scorer.model.kernels).", -1, methods,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    return PyModule_Create(&module);
}

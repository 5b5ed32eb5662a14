/* The model's per-event loops in C: the same arithmetic, in the same order, as the reference
 * loops of stream_scorer/model/kernels.py, so the same floats and the same dict contents (tests
 * hold the two equal). Scaler and Weights keep the state in arrays by feature position and write
 * River's dicts when synced; learn() and score() are the per-event passes over them.
 *
 * Built with -ffp-contract=off: a fused multiply-add would round differently from Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

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


/* ---- Array-backed state: the scaler's statistics and the weights by feature position ----------
 *
 * Dict loops hash each feature name several times per event in River's dicts. A Scaler keeps
 * the statistics in C arrays indexed by a position per feature name, and remembers the positions
 * of the last x's keys by their order in x: the engine's x has the same keys in the same order at
 * every event, so a pointer comparison finds each position. A Weights holds one model's weights by
 * the positions of its Scaler. The arithmetic is that of kernels.py's dict loops, in their order.
 *
 * River's dicts are written lazily: each position learned since the last sync() is marked, in the
 * order first marked (the order an eager update would have inserted new keys), and sync() writes
 * those into the dicts. */

typedef struct {
    PyObject_HEAD
    PyObject *index;   /* dict: name -> position */
    PyObject *names;   /* list: position -> name */
    Py_ssize_t n, cap;
    long long *counts;
    double *means, *vars, *std;
    char *dirty;
    Py_ssize_t *dirty_list, ndirty;
    /* the keys of the last x (strong references) and their positions, by order in x */
    PyObject **ckeys;
    Py_ssize_t *cpos, ccap;
    /* scratch: positions and values of the x at hand */
    Py_ssize_t *xpos;
    double *xval;
} Scaler;

typedef struct {
    PyObject_HEAD
    Scaler *scaler;
    Py_ssize_t cap;
    double *w;
    char *dirty;
    Py_ssize_t *dirty_list, ndirty;
    double w_pos, w_neg, clip, intercept_lr, lr, l2;
} Weights;

static PyTypeObject ScalerType;
static PyTypeObject WeightsType;

/* grow a zero-filled array of `size` items of `item` bytes from `old` to `new` items */
static int
grow(void **a, Py_ssize_t item, Py_ssize_t old, Py_ssize_t new)
{
    void *p = PyMem_Realloc(*a, (size_t)(new * item));
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset((char *)p + old * item, 0, (size_t)((new - old) * item));
    *a = p;
    return 0;
}

static int
scaler_reserve(Scaler *s, Py_ssize_t need)
{
    if (need <= s->cap)
        return 0;
    Py_ssize_t c = s->cap ? s->cap : 64;
    while (c < need)
        c *= 2;
    if (grow((void **)&s->counts, sizeof(long long), s->cap, c) < 0 ||
        grow((void **)&s->means, sizeof(double), s->cap, c) < 0 ||
        grow((void **)&s->vars, sizeof(double), s->cap, c) < 0 ||
        grow((void **)&s->std, sizeof(double), s->cap, c) < 0 ||
        grow((void **)&s->dirty, 1, s->cap, c) < 0 ||
        grow((void **)&s->dirty_list, sizeof(Py_ssize_t), s->cap, c) < 0)
        return -1;
    s->cap = c;
    return 0;
}

static int
weights_reserve(Weights *w, Py_ssize_t need)
{
    if (need <= w->cap)
        return 0;
    Py_ssize_t c = w->cap ? w->cap : 64;
    while (c < need)
        c *= 2;
    if (grow((void **)&w->w, sizeof(double), w->cap, c) < 0 ||
        grow((void **)&w->dirty, 1, w->cap, c) < 0 ||
        grow((void **)&w->dirty_list, sizeof(Py_ssize_t), w->cap, c) < 0)
        return -1;
    w->cap = c;
    return 0;
}

/* the position of `key`: -1 when unseen and not `alloc`, -2 on error */
static Py_ssize_t
position(Scaler *s, PyObject *key, int alloc)
{
    PyObject *po = PyDict_GetItemWithError(s->index, key);
    if (po != NULL)
        return PyLong_AsSsize_t(po);
    if (PyErr_Occurred())
        return -2;
    if (!alloc)
        return -1;
    if (scaler_reserve(s, s->n + 1) < 0)
        return -2;
    Py_ssize_t p = s->n;
    PyObject *pobj = PyLong_FromSsize_t(p);
    if (pobj == NULL)
        return -2;
    int rc = PyDict_SetItem(s->index, key, pobj);
    Py_DECREF(pobj);
    if (rc < 0 || PyList_Append(s->names, key) < 0)
        return -2;
    s->n++;
    return p;
}

/* s->xpos/xval for the items of x (positions -1 for unseen names unless `alloc`): len(x) or -1 */
static Py_ssize_t
locate(Scaler *s, PyObject *x, int alloc)
{
    if (!PyDict_Check(x)) {
        PyErr_Format(PyExc_TypeError, "x must be a dict, not %.100s", Py_TYPE(x)->tp_name);
        return -1;
    }
    Py_ssize_t nx = PyDict_GET_SIZE(x);
    if (nx > s->ccap) {
        Py_ssize_t c = s->ccap ? s->ccap : 64;
        while (c < nx)
            c *= 2;
        if (grow((void **)&s->ckeys, sizeof(PyObject *), s->ccap, c) < 0 ||
            grow((void **)&s->cpos, sizeof(Py_ssize_t), s->ccap, c) < 0 ||
            grow((void **)&s->xpos, sizeof(Py_ssize_t), s->ccap, c) < 0 ||
            grow((void **)&s->xval, sizeof(double), s->ccap, c) < 0)
            return -1;
        s->ccap = c;
    }
    Py_ssize_t it = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(x, &it, &key, &value)) {
        double v = PyFloat_AsDouble(value);
        if (v == -1.0 && PyErr_Occurred())
            return -1;
        Py_ssize_t p;
        if (s->ckeys[i] == key) {
            p = s->cpos[i];
        } else {
            p = position(s, key, alloc);
            if (p == -2)
                return -1;
            if (p >= 0) {
                Py_INCREF(key);
                Py_XSETREF(s->ckeys[i], key);
                s->cpos[i] = p;
            }
        }
        s->xpos[i] = p;
        s->xval[i] = v;
        i++;
    }
    return nx;
}

/* Learn the located x into the statistics (py_scale_learn's arithmetic); xval becomes x scaled */
static void
scaler_learn_located(Scaler *s, Py_ssize_t nx)
{
    for (Py_ssize_t i = 0; i < nx; i++) {
        Py_ssize_t p = s->xpos[i];
        double xi = s->xval[i];
        long long n = s->counts[p] + 1;
        s->counts[p] = n;
        double old = s->means[p];
        double d = xi - old;
        double m = old + d / (double)n;
        s->means[p] = m;
        double e = xi - m;
        double v = s->vars[p];
        v = v + (d * e - v) / (double)n;
        s->vars[p] = v;
        if (v != 0.0) {
            double sd = pow(v, 0.5);
            s->std[p] = sd;
            s->xval[i] = e / sd;
        } else {
            s->std[p] = 0.0;
            s->xval[i] = 0.0;
        }
        if (!s->dirty[p]) {
            s->dirty[p] = 1;
            s->dirty_list[s->ndirty++] = p;
        }
    }
}

/* Set d[key] for each (key, value) of a dict into the positions of s, via `put`. */
static int
load_dict(Scaler *s, PyObject *d, int (*put)(void *, Py_ssize_t, PyObject *), void *target)
{
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "expected a dict");
        return -1;
    }
    Py_ssize_t it = 0;
    PyObject *key, *value;
    while (PyDict_Next(d, &it, &key, &value)) {
        Py_INCREF(key);
        Py_INCREF(value);
        Py_ssize_t p = position(s, key, 1);
        int rc = p < 0 ? -1 : put(target, p, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int
put_count(void *t, Py_ssize_t p, PyObject *v)
{
    long long n = PyLong_AsLongLong(v);
    if (n == -1 && PyErr_Occurred())
        return -1;
    ((Scaler *)t)->counts[p] = n;
    return 0;
}

static int
put_mean(void *t, Py_ssize_t p, PyObject *v)
{
    double f = PyFloat_AsDouble(v);
    if (f == -1.0 && PyErr_Occurred())
        return -1;
    ((Scaler *)t)->means[p] = f;
    return 0;
}

static int
put_var(void *t, Py_ssize_t p, PyObject *v)
{
    double f = PyFloat_AsDouble(v);
    if (f == -1.0 && PyErr_Occurred())
        return -1;
    Scaler *s = (Scaler *)t;
    s->vars[p] = f;
    s->std[p] = pow(f, 0.5); /* resync's v ** 0.5 */
    return 0;
}

static int
put_weight(void *t, Py_ssize_t p, PyObject *v)
{
    double f = PyFloat_AsDouble(v);
    if (f == -1.0 && PyErr_Occurred())
        return -1;
    Weights *w = (Weights *)t;
    if (weights_reserve(w, w->scaler->n) < 0)
        return -1;
    w->w[p] = f;
    return 0;
}

static int
Scaler_init(Scaler *s, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"counts", "means", "vars", NULL};
    PyObject *counts, *means, *vars;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:Scaler", kwlist, &counts, &means, &vars))
        return -1;
    if (s->index != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Scaler is initialised once");
        return -1;
    }
    s->index = PyDict_New();
    s->names = PyList_New(0);
    if (s->index == NULL || s->names == NULL)
        return -1;
    if (load_dict(s, counts, put_count, s) < 0 || load_dict(s, means, put_mean, s) < 0 ||
        load_dict(s, vars, put_var, s) < 0)
        return -1;
    return 0;
}

static void
Scaler_dealloc(Scaler *s)
{
    Py_XDECREF(s->index);
    Py_XDECREF(s->names);
    for (Py_ssize_t i = 0; i < s->ccap; i++)
        Py_XDECREF(s->ckeys[i]);
    PyMem_Free(s->counts);
    PyMem_Free(s->means);
    PyMem_Free(s->vars);
    PyMem_Free(s->std);
    PyMem_Free(s->dirty);
    PyMem_Free(s->dirty_list);
    PyMem_Free(s->ckeys);
    PyMem_Free(s->cpos);
    PyMem_Free(s->xpos);
    PyMem_Free(s->xval);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static int
scaler_ready(Scaler *s)
{
    if (s->index == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Scaler not initialised");
        return -1;
    }
    return 0;
}

/* Scaler.learn(x) -> list[float]: py_scale_learn on the arrays */
static PyObject *
Scaler_learn(Scaler *s, PyObject *x)
{
    if (scaler_ready(s) < 0)
        return NULL;
    Py_ssize_t nx = locate(s, x, 1);
    if (nx < 0)
        return NULL;
    scaler_learn_located(s, nx);
    PyObject *out = PyList_New(nx);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < nx; i++) {
        PyObject *f = PyFloat_FromDouble(s->xval[i]);
        if (f == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, f);
    }
    return out;
}

/* Scaler.transform(x) -> list[float | None]: py_scale_transform on the arrays */
static PyObject *
Scaler_transform(Scaler *s, PyObject *x)
{
    if (scaler_ready(s) < 0)
        return NULL;
    Py_ssize_t nx = locate(s, x, 0);
    if (nx < 0)
        return NULL;
    PyObject *out = PyList_New(nx);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < nx; i++) {
        Py_ssize_t p = s->xpos[i];
        PyObject *item;
        if (p >= 0 && s->std[p] != 0.0) {
            item = PyFloat_FromDouble((s->xval[i] - s->means[p]) / s->std[p]);
            if (item == NULL) {
                Py_DECREF(out);
                return NULL;
            }
        } else {
            item = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

static int
set_long(PyObject *d, PyObject *key, long long value)
{
    PyObject *f = PyLong_FromLongLong(value);
    if (f == NULL)
        return -1;
    int rc = PyDict_SetItem(d, key, f);
    Py_DECREF(f);
    return rc;
}

/* Scaler.sync(counts, means, vars): write what was learned since the last sync into the dicts */
static PyObject *
Scaler_sync(Scaler *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "sync(counts, means, vars)");
        return NULL;
    }
    if (scaler_ready(s) < 0 || check_dicts(args, 3) < 0)
        return NULL;
    Py_ssize_t done = 0;
    for (; done < s->ndirty; done++) {
        Py_ssize_t p = s->dirty_list[done];
        PyObject *name = PyList_GET_ITEM(s->names, p);
        if (set_long(args[0], name, s->counts[p]) < 0 || set_double(args[1], name, s->means[p]) < 0 ||
            set_double(args[2], name, s->vars[p]) < 0)
            break;
        s->dirty[p] = 0;
    }
    if (done < s->ndirty) { /* keep what is not written yet, in its order */
        memmove(s->dirty_list, s->dirty_list + done, (size_t)(s->ndirty - done) * sizeof(Py_ssize_t));
        s->ndirty -= done;
        return NULL;
    }
    s->ndirty = 0;
    Py_RETURN_NONE;
}

/* Scaler.std_of(name) -> float | None: the kept standard deviation, None for an unknown name */
static PyObject *
Scaler_std_of(Scaler *s, PyObject *name)
{
    if (scaler_ready(s) < 0)
        return NULL;
    Py_ssize_t p = position(s, name, 0);
    if (p == -2)
        return NULL;
    if (p == -1)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(s->std[p]);
}

static PyObject *
Scaler_get_pending(Scaler *s, void *closure)
{
    return PyLong_FromSsize_t(s->ndirty);
}

static PyMethodDef Scaler_methods[] = {
    {"learn", (PyCFunction)Scaler_learn, METH_O, "Learn x; return it scaled, as a list."},
    {"transform", (PyCFunction)Scaler_transform, METH_O,
     "x scaled, as a list; None where a feature has no variance."},
    {"sync", (PyCFunction)(void (*)(void))Scaler_sync, METH_FASTCALL,
     "Write the statistics learned since the last sync into River's dicts."},
    {"std_of", (PyCFunction)Scaler_std_of, METH_O, "The kept std of a feature (None: unknown)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Scaler_getset[] = {
    {"pending", (getter)Scaler_get_pending, NULL, "Features learned since the last sync.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ScalerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stream_scorer.model._kernels.Scaler",
    .tp_doc = "Scaler(counts, means, vars): a StandardScaler's statistics in arrays.",
    .tp_basicsize = sizeof(Scaler),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scaler_init,
    .tp_dealloc = (destructor)Scaler_dealloc,
    .tp_methods = Scaler_methods,
    .tp_getset = Scaler_getset,
};

static int
Weights_init(Weights *w, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"scaler", "weights", "w_pos", "w_neg", "clip", "intercept_lr", "lr",
                             "l2", NULL};
    PyObject *scaler, *weights;
    double num[6];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!Odddddd:Weights", kwlist, &ScalerType, &scaler,
                                     &weights, &num[0], &num[1], &num[2], &num[3], &num[4], &num[5]))
        return -1;
    if (w->scaler != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Weights is initialised once");
        return -1;
    }
    if (scaler_ready((Scaler *)scaler) < 0)
        return -1;
    w->scaler = (Scaler *)Py_NewRef(scaler);
    w->w_pos = num[0];
    w->w_neg = num[1];
    w->clip = num[2];
    w->intercept_lr = num[3];
    w->lr = num[4];
    w->l2 = num[5];
    return load_dict(w->scaler, weights, put_weight, w);
}

static void
Weights_dealloc(Weights *w)
{
    Py_XDECREF(w->scaler);
    PyMem_Free(w->w);
    PyMem_Free(w->dirty);
    PyMem_Free(w->dirty_list);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

/* Weights.sync(weights): write the weights moved since the last sync into the dict */
static PyObject *
Weights_sync(Weights *w, PyObject *d)
{
    if (w->scaler == NULL || !PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "sync(weights: dict) on an initialised Weights");
        return NULL;
    }
    Py_ssize_t done = 0;
    for (; done < w->ndirty; done++) {
        Py_ssize_t p = w->dirty_list[done];
        if (set_double(d, PyList_GET_ITEM(w->scaler->names, p), w->w[p]) < 0)
            break;
        w->dirty[p] = 0;
    }
    if (done < w->ndirty) {
        memmove(w->dirty_list, w->dirty_list + done, (size_t)(w->ndirty - done) * sizeof(Py_ssize_t));
        w->ndirty -= done;
        return NULL;
    }
    w->ndirty = 0;
    Py_RETURN_NONE;
}

static PyObject *
Weights_get_scaler(Weights *w, void *closure)
{
    if (w->scaler == NULL)
        Py_RETURN_NONE;
    return Py_NewRef((PyObject *)w->scaler);
}

static PyObject *
Weights_get_pending(Weights *w, void *closure)
{
    return PyLong_FromSsize_t(w->ndirty);
}

static PyMethodDef Weights_methods[] = {
    {"sync", (PyCFunction)Weights_sync, METH_O, "Write the weights moved since the last sync into the dict."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Weights_getset[] = {
    {"scaler", (getter)Weights_get_scaler, NULL, "The Scaler whose positions index the weights.", NULL},
    {"pending", (getter)Weights_get_pending, NULL, "Weights moved since the last sync.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject WeightsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stream_scorer.model._kernels.Weights",
    .tp_doc = "Weights(scaler, weights, w_pos, w_neg, clip, intercept_lr, lr, l2): one model's "
              "weights by the scaler's positions, and its SGD step's constants.",
    .tp_basicsize = sizeof(Weights),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Weights_init,
    .tp_dealloc = (destructor)Weights_dealloc,
    .tp_methods = Weights_methods,
    .tp_getset = Weights_getset,
};

/* a Weights of scaler s (or None when `optional`), with room for all of s's positions */
static int
check_weights(PyObject *o, Scaler *s, int optional, Weights **out)
{
    if (optional && o == Py_None) {
        *out = NULL;
        return 0;
    }
    if (!PyObject_TypeCheck(o, &WeightsType)) {
        PyErr_Format(PyExc_TypeError, "expected Weights, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    Weights *w = (Weights *)o;
    if (w->scaler != s) {
        PyErr_SetString(PyExc_ValueError, "the weights belong to another Scaler");
        return -1;
    }
    if (weights_reserve(w, s->n) < 0)
        return -1;
    *out = w;
    return 0;
}

/* One SGD step on the located, scaled x (py_sgd_learn's arithmetic); returns the new intercept */
static double
sgd_located(Weights *w, Scaler *s, Py_ssize_t nx, double intercept, int y, double sample_weight)
{
    const Py_ssize_t *xpos = s->xpos;
    const double *xval = s->xval;
    double *wt = w->w;
    double z = 0.0;
    for (Py_ssize_t i = 0; i < nx; i++)
        z += wt[xpos[i]] * xval[i];
    z += intercept;
    double g;
    if (y) {
        if (z > 18.0)
            g = w->w_pos * exp(-z) * -1;
        else if (z < -18.0)
            g = w->w_pos * -1;
        else
            g = w->w_pos * -1 / (exp(z) + 1.0);
    } else {
        z = z * -1;
        if (z > 18.0)
            g = w->w_neg * exp(-z) * 1;
        else if (z < -18.0)
            g = w->w_neg * 1;
        else
            g = w->w_neg * 1 / (exp(z) + 1.0);
    }
    g *= sample_weight;
    double clip = w->clip;
    double m = clip < g ? clip : g;
    g = -clip > m ? -clip : m;
    intercept -= w->intercept_lr * g;
    double lr = w->lr, l2 = w->l2;
    for (Py_ssize_t i = 0; i < nx; i++) {
        Py_ssize_t p = xpos[i];
        double v = xval[i], wi = wt[p];
        wt[p] = l2 != 0.0 ? wi - (v * g + wi * l2) * lr : wi - v * g * lr;
        if (!w->dirty[p]) {
            w->dirty[p] = 1;
            w->dirty_list[w->ndirty++] = p;
        }
    }
    return intercept;
}

/* learn(scaler, x, y, w1, intercept1, sample_weight1, w2, intercept2, sample_weight2)
 *   -> (intercept1, intercept2)
 * The scaler learns x once; then each model (w2 may be None) takes its SGD step on x scaled. */
static PyObject *
learn(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "learn(scaler, x, y, w1, intercept1, sample_weight1, "
                                         "w2, intercept2, sample_weight2)");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[0], &ScalerType)) {
        PyErr_SetString(PyExc_TypeError, "scaler must be a Scaler");
        return NULL;
    }
    Scaler *s = (Scaler *)args[0];
    if (scaler_ready(s) < 0)
        return NULL;
    int y = PyObject_IsTrue(args[2]);
    if (y < 0)
        return NULL;
    double num[4];
    int at[4] = {4, 5, 7, 8};
    for (int k = 0; k < 4; k++) {
        num[k] = PyFloat_AsDouble(args[at[k]]);
        if (num[k] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    Py_ssize_t nx = locate(s, args[1], 1);
    if (nx < 0)
        return NULL;
    Weights *w1, *w2;
    if (check_weights(args[3], s, 0, &w1) < 0 || check_weights(args[6], s, 1, &w2) < 0)
        return NULL;
    if (w2 == w1) {
        PyErr_SetString(PyExc_ValueError, "two models cannot share their weights");
        return NULL;
    }
    scaler_learn_located(s, nx);
    double b1 = sgd_located(w1, s, nx, num[0], y, num[1]);
    double b2 = w2 != NULL ? sgd_located(w2, s, nx, num[2], y, num[3]) : num[2];
    return Py_BuildValue("(dd)", b1, b2);
}

/* score(scaler, x, w1, intercept1, want_reasons, w2, intercept2) -> (z1, reasons1, z2 | None)
 * x scaled once (py_scale_transform's arithmetic; no variance: skipped), each model's logit as
 * py_contributions computes it, and the first model's positive contributions if wanted. */
static PyObject *
score(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "score(scaler, x, w1, intercept1, want_reasons, w2, intercept2)");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[0], &ScalerType)) {
        PyErr_SetString(PyExc_TypeError, "scaler must be a Scaler");
        return NULL;
    }
    Scaler *s = (Scaler *)args[0];
    if (scaler_ready(s) < 0)
        return NULL;
    double z1 = PyFloat_AsDouble(args[3]);
    if (z1 == -1.0 && PyErr_Occurred())
        return NULL;
    double z2 = PyFloat_AsDouble(args[6]);
    if (z2 == -1.0 && PyErr_Occurred())
        return NULL;
    int want = PyObject_IsTrue(args[4]);
    if (want < 0)
        return NULL;
    Py_ssize_t nx = locate(s, args[1], 0);
    if (nx < 0)
        return NULL;
    Weights *w1, *w2;
    if (check_weights(args[2], s, 0, &w1) < 0 || check_weights(args[5], s, 1, &w2) < 0)
        return NULL;
    PyObject *positive = NULL;
    for (Py_ssize_t i = 0; i < nx; i++) {
        Py_ssize_t p = s->xpos[i];
        if (p < 0)
            continue;
        double sd = s->std[p];
        if (sd == 0.0)
            continue;
        double v = (s->xval[i] - s->means[p]) / sd;
        double c = w1->w[p] * v;
        z1 += c;
        if (want && c > 0.0 && append_reason(&positive, s->ckeys[i], c) < 0) {
            Py_XDECREF(positive);
            return NULL;
        }
        if (w2 != NULL)
            z2 += w2->w[p] * v;
    }
    PyObject *r1 = logit_result(z1, positive);
    if (r1 == NULL)
        return NULL;
    PyObject *out;
    if (w2 != NULL)
        out = Py_BuildValue("(OOd)", PyTuple_GET_ITEM(r1, 0), PyTuple_GET_ITEM(r1, 1), z2);
    else
        out = Py_BuildValue("(OOO)", PyTuple_GET_ITEM(r1, 0), PyTuple_GET_ITEM(r1, 1), Py_None);
    Py_DECREF(r1);
    return out;
}

static PyMethodDef methods[] = {
    {"learn", (PyCFunction)(void (*)(void))learn, METH_FASTCALL,
     "The scaler learns x once, then one or two models take their SGD step."},
    {"score", (PyCFunction)(void (*)(void))score, METH_FASTCALL,
     "x scaled once; one or two models' logits, the first one's positive contributions."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "The model's per-event loops in C (see stream_scorer.model.kernels).", -1, methods,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    if (PyType_Ready(&ScalerType) < 0 || PyType_Ready(&WeightsType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Scaler", (PyObject *)&ScalerType) < 0 ||
        PyModule_AddObjectRef(m, "Weights", (PyObject *)&WeightsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

/* The feature engine's per-event updates in C: CardLayout.py_update (stream_scorer/features/card.py)
 * on a card's bytes, MerchantLayout.py_update (merchant.py) on a MerchantState's arrays, with the
 * same arithmetic in the same order, so the same features and the same state (tests hold the two
 * equal on random streams). Each layout hands its parameters over once.
 *
 * Python semantics kept on purpose: float floor division as CPython does it (fmod based), int
 * modulo that is never negative, float32 buckets read as doubles and stored rounded, plain double
 * sums, log1p/sqrt of the C library that Python's math module calls. Built with
 * -ffp-contract=off: a fused multiply-add would round differently from Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MEAN_FLOOR 0.01 /* catalog.MEAN_FLOOR */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the card layout is little-endian; this kernel reads it natively"
#endif

#define MAX_LEVELS 8
#define MAX_COUNT 65535
#define MAX_AGE 255

typedef struct {
    double bucket_s;
    long long span, slots, off;
    PyObject *n_count, *n_sum, *n_mean, *n_max;
} Level;

typedef struct {
    PyObject_HEAD
    double grace_s;
    int n_levels;
    Level levels[MAX_LEVELS];
    Py_ssize_t nb, counts_at, values_at, merchants_at, ages_at, size;
    int kslots;
    double memory_bucket_s, no_previous_s, ratio_clip, z_clip, std_floor;
    long long distinct_hours, new_hours;
    PyObject *k_count, *k_since, *k_ratio, *k_z, *k_distinct, *k_new;
} CardUpdater;

/* CPython's float floor division (Objects/floatobject.c, _float_div_mod), bit for bit */
static double
py_floordiv(double vx, double wx)
{
    double mod = fmod(vx, wx);
    double div = (vx - mod) / wx;
    if (mod) {
        if ((wx < 0) != (mod < 0)) {
            mod += wx;
            div -= 1.0;
        }
    }
    double floordiv;
    if (div) {
        floordiv = floor(div);
        if (div - floordiv > 0.5)
            floordiv += 1.0;
    } else {
        floordiv = copysign(0.0, vx / wx);
    }
    return floordiv;
}

static inline long long
py_mod(long long a, long long b)
{
    long long r = a % b;
    return r < 0 ? r + b : r;
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

static void
card_dealloc(CardUpdater *self)
{
    for (int i = 0; i < self->n_levels; i++) {
        Py_XDECREF(self->levels[i].n_count);
        Py_XDECREF(self->levels[i].n_sum);
        Py_XDECREF(self->levels[i].n_mean);
        Py_XDECREF(self->levels[i].n_max);
    }
    Py_XDECREF(self->k_count);
    Py_XDECREF(self->k_since);
    Py_XDECREF(self->k_ratio);
    Py_XDECREF(self->k_z);
    Py_XDECREF(self->k_distinct);
    Py_XDECREF(self->k_new);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* CardUpdater(grace_s, levels, offsets, merchant_slots, constants, names)
 *   levels:    ((bucket_s, span, slots, offset, count_name, sum_name, mean_name, max_name), ...)
 *   offsets:   (n_buckets, counts_at, values_at, merchants_at, ages_at, size)
 *   constants: (memory_bucket_s, distinct_hours, new_hours, no_previous_s, ratio_clip, z_clip,
 *               std_floor)
 *   names:     (count, seconds_since_prev, amount_ratio, amount_z, distinct_merchants,
 *               merchant_new) feature names */
static int
card_init(CardUpdater *self, PyObject *args, PyObject *kwds)
{
    if (self->n_levels || self->k_count) {
        PyErr_SetString(PyExc_TypeError, "CardUpdater is initialised once");
        return -1;
    }
    PyObject *levels, *names[6];
    if (!PyArg_ParseTuple(args, "dO!(nnnnnn)i(dLLdddd)(UUUUUU)", &self->grace_s, &PyTuple_Type,
                          &levels, &self->nb, &self->counts_at, &self->values_at,
                          &self->merchants_at, &self->ages_at, &self->size, &self->kslots,
                          &self->memory_bucket_s, &self->distinct_hours, &self->new_hours,
                          &self->no_previous_s, &self->ratio_clip, &self->z_clip,
                          &self->std_floor, &names[0], &names[1], &names[2], &names[3],
                          &names[4], &names[5]))
        return -1;
    self->k_count = Py_NewRef(names[0]);
    self->k_since = Py_NewRef(names[1]);
    self->k_ratio = Py_NewRef(names[2]);
    self->k_z = Py_NewRef(names[3]);
    self->k_distinct = Py_NewRef(names[4]);
    self->k_new = Py_NewRef(names[5]);
    Py_ssize_t n = PyTuple_GET_SIZE(levels);
    if (n < 1 || n > MAX_LEVELS) {
        PyErr_Format(PyExc_ValueError, "between 1 and %d levels, not %zd", MAX_LEVELS, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Level *lv = &self->levels[i];
        PyObject *nm[4];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(levels, i), "dLLLUUUU", &lv->bucket_s, &lv->span,
                              &lv->slots, &lv->off, &nm[0], &nm[1], &nm[2], &nm[3]))
            return -1;
        if (lv->bucket_s <= 0.0 || lv->slots < 1 || lv->span < 1 || lv->off < 0 ||
            lv->off + lv->slots > self->nb) {
            PyErr_SetString(PyExc_ValueError, "a level does not fit the ring");
            return -1;
        }
        lv->n_count = Py_NewRef(nm[0]);
        lv->n_sum = Py_NewRef(nm[1]);
        lv->n_mean = Py_NewRef(nm[2]);
        lv->n_max = Py_NewRef(nm[3]);
        self->n_levels = (int)(i + 1);
    }
    if (self->kslots < 1 || self->counts_at < 32 || self->values_at < self->counts_at + 2 * self->nb ||
        self->merchants_at < self->values_at + 8 * self->nb ||
        self->ages_at < self->merchants_at + 8 * (Py_ssize_t)self->kslots ||
        self->size < self->ages_at + self->kslots || self->memory_bucket_s <= 0.0) {
        PyErr_SetString(PyExc_ValueError, "offsets do not describe a card layout");
        return -1;
    }
    return 0;
}

static int
remember(CardUpdater *self, char *b, long long hours, uint32_t mhash, PyObject *x)
{
    int K = self->kslots;
    uint32_t *mem = (uint32_t *)(b + self->merchants_at); /* hashes [0, K), hours [K, 2K) */
    uint32_t *lasts = mem + K;
    uint8_t *ages = (uint8_t *)(b + self->ages_at);
    int used = K;
    if (mem[K - 1] == 0) { /* the used slots are a prefix */
        used = 0;
        while (mem[used] != 0)
            used++;
    }
    long long distinct_after = hours - self->distinct_hours;
    int pos = -1;
    for (int i = 0; i < used; i++) {
        if (mem[i] == mhash) {
            pos = i;
            break;
        }
    }
    long long max_last = 0;
    for (int i = 0; i < used; i++)
        if (i == 0 || (long long)lasts[i] > max_last)
            max_last = lasts[i];
    long long distinct = 0, seen_here = 0;
    if (!used || max_last <= hours) {
        for (int i = 0; i < used; i++)
            if ((long long)lasts[i] > distinct_after)
                distinct++;
        seen_here = pos >= 0 ? (long long)lasts[pos] : 0;
    } else {
        for (int i = 0; i < used; i++) {
            long long last = lasts[i], seen;
            if (last <= hours) {
                seen = last;
            } else {
                long long age = ages[i];
                seen = age ? last - age : 0;
            }
            if (seen > distinct_after)
                distinct++;
            if (i == pos)
                seen_here = seen;
        }
    }
    if (set_double(x, self->k_distinct, log1p((double)distinct)) < 0)
        return -1;
    if (pos >= 0) {
        if (set_double(x, self->k_new, seen_here > hours - self->new_hours ? 0.0 : 1.0) < 0)
            return -1;
        long long last = lasts[pos];
        if (hours > last) {
            long long age = hours - last;
            ages[pos] = (uint8_t)(age <= MAX_AGE ? age : 0);
            lasts[pos] = (uint32_t)hours;
        } else if (hours < last) {
            long long age = ages[pos];
            if (hours > (age ? last - age : 0)) {
                age = last - hours;
                ages[pos] = (uint8_t)(age <= MAX_AGE ? age : 0);
            }
        }
    } else {
        if (set_double(x, self->k_new, 1.0) < 0)
            return -1;
        int i = used;
        if (used >= K) {
            i = 0;
            for (int j = 1; j < K; j++)
                if (lasts[j] < lasts[i])
                    i = j;
        }
        mem[i] = mhash;
        lasts[i] = (uint32_t)hours;
        ages[i] = 0;
    }
    return 0;
}

static void
zero_range(uint16_t *counts, float *values, Py_ssize_t nb, long long a, long long b)
{
    memset(counts + a, 0, (size_t)(b - a) * sizeof(uint16_t));
    memset(values + a, 0, (size_t)(b - a) * sizeof(float));
    memset(values + nb + a, 0, (size_t)(b - a) * sizeof(float));
}

static int
card_update_buf(CardUpdater *self, char *b, double amount, double ts, uint32_t mhash,
                PyObject *x, int *late_out)
{
    double hdr[4];
    memcpy(hdr, b, sizeof hdr);
    double max_ts = hdr[0], n = hdr[1], mean = hdr[2], m2 = hdr[3];
    int late = 0;
    if (n != 0.0) {
        double floor_ts = max_ts - self->grace_s;
        if (ts < floor_ts) {
            ts = floor_ts;
            late = 1;
        }
    } else {
        max_ts = ts;
    }
    Py_ssize_t nb = self->nb;
    uint16_t *counts = (uint16_t *)(b + self->counts_at);
    float *values = (float *)(b + self->values_at);

    for (int li = 0; li < self->n_levels; li++) {
        const Level *lv = &self->levels[li];
        long long slots = lv->slots, off = lv->off, end = off + slots;
        long long k = (long long)py_floordiv(ts, lv->bucket_s);
        long long head = (long long)py_floordiv(max_ts, lv->bucket_s);
        long long s1 = off + py_mod(k, slots);
        long long lo = k - lv->span + 1, hi = k;
        if (k > head) { /* the ring moves on to k: empty the buckets it reuses */
            long long moved = k - head;
            if (moved >= slots) {
                zero_range(counts, values, nb, off, end);
            } else {
                long long a = off + py_mod(head + 1, slots);
                long long bb = a + moved;
                if (bb <= end) {
                    zero_range(counts, values, nb, a, bb);
                } else {
                    zero_range(counts, values, nb, a, end);
                    zero_range(counts, values, nb, off, bb - slots);
                }
            }
            hi = head;
        } else if (k < head && lo <= head - slots) { /* never read a slot the ring has reused */
            lo = head - slots + 1;
        }
        long long c = 0;
        double s = 0.0, mx = 0.0;
        if (n != 0.0 && hi >= lo) {
            long long s0 = off + py_mod(lo, slots), s2 = off + py_mod(hi, slots);
            if (s0 <= s2) {
                for (long long i = s0; i <= s2; i++)
                    c += counts[i];
                if (c) {
                    for (long long i = s0; i <= s2; i++)
                        s += (double)values[i];
                    mx = (double)values[nb + s0];
                    for (long long i = s0 + 1; i <= s2; i++)
                        if ((double)values[nb + i] > mx)
                            mx = (double)values[nb + i];
                }
            } else {
                long long c1 = 0, c2 = 0;
                for (long long i = s0; i < end; i++)
                    c1 += counts[i];
                for (long long i = off; i <= s2; i++)
                    c2 += counts[i];
                c = c1 + c2;
                if (c) {
                    double sa = 0.0, sb = 0.0;
                    for (long long i = s0; i < end; i++)
                        sa += (double)values[i];
                    for (long long i = off; i <= s2; i++)
                        sb += (double)values[i];
                    s = sa + sb;
                    double ma = (double)values[nb + s0], mb = (double)values[nb + off];
                    for (long long i = s0 + 1; i < end; i++)
                        if ((double)values[nb + i] > ma)
                            ma = (double)values[nb + i];
                    for (long long i = off + 1; i <= s2; i++)
                        if ((double)values[nb + i] > mb)
                            mb = (double)values[nb + i];
                    mx = mb > ma ? mb : ma;
                }
            }
        }
        if (c) {
            if (set_double(x, lv->n_count, log1p((double)c)) < 0 ||
                set_double(x, lv->n_sum, log1p(s)) < 0 ||
                set_double(x, lv->n_mean, log1p(s / (double)c)) < 0 ||
                set_double(x, lv->n_max, log1p(mx)) < 0)
                return -1;
        } else {
            if (set_double(x, lv->n_count, 0.0) < 0 || set_double(x, lv->n_sum, 0.0) < 0 ||
                set_double(x, lv->n_mean, 0.0) < 0 || set_double(x, lv->n_max, 0.0) < 0)
                return -1;
        }
        /* fold the event into its bucket, after the window was read */
        if (counts[s1] < MAX_COUNT)
            counts[s1] += 1;
        values[s1] = (float)((double)values[s1] + amount);
        if (amount > (double)values[nb + s1])
            values[nb + s1] = (float)amount;
    }

    /* long-run amount habits (Welford), read then updated */
    double f_since, f_ratio, f_z;
    if (n != 0.0) {
        double since = ts - max_ts;
        since = since < 0.0 ? 0.0 : (since > self->no_previous_s ? self->no_previous_s : since);
        double ref = mean > MEAN_FLOOR ? mean : MEAN_FLOOR; /* a card of zero amounts so far */
        double ratio = amount / ref;
        double std = sqrt(m2 / n);
        double floor_std = self->std_floor * ref;
        double z = (amount - mean) / (std > floor_std ? std : floor_std);
        f_since = log1p(since);
        f_ratio = ratio > self->ratio_clip ? self->ratio_clip : ratio;
        f_z = z < -self->z_clip ? -self->z_clip : (z > self->z_clip ? self->z_clip : z);
        if (set_double(x, self->k_count, log1p(n)) < 0)
            return -1;
    } else {
        f_since = log1p(self->no_previous_s);
        f_ratio = 1.0;
        f_z = 0.0;
        if (set_double(x, self->k_count, 0.0) < 0)
            return -1;
    }
    if (set_double(x, self->k_since, f_since) < 0 || set_double(x, self->k_ratio, f_ratio) < 0 ||
        set_double(x, self->k_z, f_z) < 0)
        return -1;
    n += 1.0;
    double delta = amount - mean;
    mean += delta / n;
    m2 += delta * (amount - mean);
    hdr[0] = ts > max_ts ? ts : max_ts;
    hdr[1] = n;
    hdr[2] = mean;
    hdr[3] = m2;
    memcpy(b, hdr, sizeof hdr);

    long long hours = (long long)py_floordiv(ts, self->memory_bucket_s);
    if (remember(self, b, hours, mhash, x) < 0)
        return -1;
    *late_out = late;
    return 0;
}

/* update(buf, amount, ts, mhash, x) -> bool: the card's features of this event into x, then the
 * event folded into buf; True if the event was late */
static PyObject *
card_update(CardUpdater *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "update(buf, amount, ts, mhash, x)");
        return NULL;
    }
    if (self->k_count == NULL) {
        PyErr_SetString(PyExc_TypeError, "CardUpdater was not initialised");
        return NULL;
    }
    double amount = PyFloat_AsDouble(args[1]);
    if (amount == -1.0 && PyErr_Occurred())
        return NULL;
    double ts = PyFloat_AsDouble(args[2]);
    if (ts == -1.0 && PyErr_Occurred())
        return NULL;
    unsigned long mh = PyLong_AsUnsignedLong(args[3]);
    if (mh == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (mh == 0 || mh > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "mhash must be in [1, 2**32)");
        return NULL;
    }
    if (!PyDict_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "x must be a dict");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0)
        return NULL;
    if (view.len != self->size) {
        PyErr_Format(PyExc_ValueError, "a card buffer has %zd bytes, not %zd", view.len, self->size);
        PyBuffer_Release(&view);
        return NULL;
    }
    int late = 0;
    int rc = card_update_buf(self, (char *)view.buf, amount, ts, (uint32_t)mh, args[4], &late);
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    return PyBool_FromLong(late);
}

static PyMethodDef card_methods[] = {
    {"update", (PyCFunction)(void (*)(void))card_update, METH_FASTCALL,
     "update(buf, amount, ts, mhash, x) -> late: CardLayout.py_update in C."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CardUpdaterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stream_scorer.features._kernels.CardUpdater",
    .tp_basicsize = sizeof(CardUpdater),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A card layout's per-event update (see CardLayout).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)card_init,
    .tp_dealloc = (destructor)card_dealloc,
    .tp_methods = card_methods,
};

/* -- merchants ----------------------------------------------------------------------------------
 * MerchantLayout.py_update (stream_scorer/features/merchant.py) on a MerchantState's own arrays
 * (float64 counts, sums; int64 cache heads; float64 cache). */

typedef struct {
    double bucket_s;
    long long span, slots, off;
    PyObject *n_count, *n_mean;
} MLevel;

typedef struct {
    PyObject_HEAD
    double grace_s;
    int n_levels;
    MLevel levels[MAX_LEVELS];
} MerchantUpdater;

static PyObject *s_max_ts, *s_seen_ts, *s_counts, *s_sums, *s_heads, *s_cache;

static void
merchant_dealloc(MerchantUpdater *self)
{
    for (int i = 0; i < self->n_levels; i++) {
        Py_XDECREF(self->levels[i].n_count);
        Py_XDECREF(self->levels[i].n_mean);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* MerchantUpdater(grace_s, levels)
 *   levels: ((bucket_s, span, slots, offset, count_name, mean_name), ...) */
static int
merchant_init(MerchantUpdater *self, PyObject *args, PyObject *kwds)
{
    if (self->n_levels) {
        PyErr_SetString(PyExc_TypeError, "MerchantUpdater is initialised once");
        return -1;
    }
    PyObject *levels;
    if (!PyArg_ParseTuple(args, "dO!", &self->grace_s, &PyTuple_Type, &levels))
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(levels);
    if (n < 1 || n > MAX_LEVELS) {
        PyErr_Format(PyExc_ValueError, "between 1 and %d levels, not %zd", MAX_LEVELS, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        MLevel *lv = &self->levels[i];
        PyObject *nm[2];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(levels, i), "dLLLUU", &lv->bucket_s, &lv->span,
                              &lv->slots, &lv->off, &nm[0], &nm[1]))
            return -1;
        if (lv->bucket_s <= 0.0 || lv->slots < 1 || lv->span < 1 || lv->off < 0) {
            PyErr_SetString(PyExc_ValueError, "a level has no buckets");
            return -1;
        }
        lv->n_count = Py_NewRef(nm[0]);
        lv->n_mean = Py_NewRef(nm[1]);
        self->n_levels = (int)(i + 1);
    }
    return 0;
}

/* sums of a and b over the buckets lo .. hi of the ring [off, end), as merchant._window */
static void
window(const double *a, const double *b, long long off, long long end, long long slots,
       long long lo, long long hi, double *sa, double *sb)
{
    if (hi < lo) {
        *sa = *sb = 0.0;
        return;
    }
    long long s0 = off + py_mod(lo, slots), s1 = off + py_mod(hi, slots);
    double x = 0.0, y = 0.0;
    if (s0 <= s1) {
        for (long long i = s0; i <= s1; i++)
            x += a[i];
        for (long long i = s0; i <= s1; i++)
            y += b[i];
    } else {
        double x2 = 0.0, y2 = 0.0;
        for (long long i = s0; i < end; i++)
            x += a[i];
        for (long long i = off; i <= s1; i++)
            x2 += a[i];
        for (long long i = s0; i < end; i++)
            y += b[i];
        for (long long i = off; i <= s1; i++)
            y2 += b[i];
        x = x + x2;
        y = y + y2;
    }
    *sa = x;
    *sb = y;
}

/* empty the slots of the ring at off that moving its head from head to k reuses */
static void
clear_ring(double *a, double *b, long long off, long long head, long long k, long long slots)
{
    long long moved = k - head;
    if (moved >= slots) {
        memset(a + off, 0, (size_t)slots * sizeof(double));
        memset(b + off, 0, (size_t)slots * sizeof(double));
        return;
    }
    long long lo = py_mod(head + 1, slots), hi = lo + moved;
    if (hi <= slots) {
        memset(a + off + lo, 0, (size_t)(hi - lo) * sizeof(double));
        memset(b + off + lo, 0, (size_t)(hi - lo) * sizeof(double));
    } else {
        memset(a + off + lo, 0, (size_t)(slots - lo) * sizeof(double));
        memset(b + off + lo, 0, (size_t)(slots - lo) * sizeof(double));
        memset(a + off, 0, (size_t)(hi - slots) * sizeof(double));
        memset(b + off, 0, (size_t)(hi - slots) * sizeof(double));
    }
}

typedef struct {
    Py_buffer counts, sums, heads, cache;
    int held;
} MBufs;

static void
release_bufs(MBufs *bufs)
{
    Py_buffer *all[4] = {&bufs->counts, &bufs->sums, &bufs->heads, &bufs->cache};
    for (int i = 0; i < bufs->held; i++)
        PyBuffer_Release(all[i]);
    bufs->held = 0;
}

static int
get_bufs(PyObject *m, MBufs *bufs)
{
    PyObject *names[4] = {s_counts, s_sums, s_heads, s_cache};
    Py_buffer *all[4] = {&bufs->counts, &bufs->sums, &bufs->heads, &bufs->cache};
    const char *formats[4] = {"d", "d", "q", "d"};
    bufs->held = 0;
    for (int i = 0; i < 4; i++) {
        PyObject *arr = PyObject_GetAttr(m, names[i]);
        if (arr == NULL)
            goto fail;
        int rc = PyObject_GetBuffer(arr, all[i], PyBUF_WRITABLE | PyBUF_FORMAT);
        Py_DECREF(arr);
        if (rc < 0)
            goto fail;
        bufs->held++;
        if (strcmp(all[i]->format, formats[i]) != 0) {
            PyErr_Format(PyExc_TypeError, "merchant state %U must be an array of '%s'", names[i],
                         formats[i]);
            goto fail;
        }
    }
    return 0;
fail:
    release_bufs(bufs);
    return -1;
}

static int
get_float_attr(PyObject *o, PyObject *name, double *out)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    double d = PyFloat_AsDouble(v);
    Py_DECREF(v);
    if (d == -1.0 && PyErr_Occurred())
        return -1;
    *out = d;
    return 0;
}

static int
set_float_attr(PyObject *o, PyObject *name, double value)
{
    PyObject *f = PyFloat_FromDouble(value);
    if (f == NULL)
        return -1;
    int rc = PyObject_SetAttr(o, name, f);
    Py_DECREF(f);
    return rc;
}

static int
merchant_update_state(MerchantUpdater *self, PyObject *m, MBufs *bf, double amount, double ts,
                      PyObject *x, int *late_out)
{
    int L = self->n_levels;
    long long need_buckets = 0;
    for (int j = 0; j < L; j++)
        if (self->levels[j].off + self->levels[j].slots > need_buckets)
            need_buckets = self->levels[j].off + self->levels[j].slots;
    if (bf->counts.len < need_buckets * 8 || bf->sums.len < need_buckets * 8 ||
        bf->heads.len < L * 8 || bf->cache.len < 2 * L * 8) {
        PyErr_SetString(PyExc_ValueError, "merchant state arrays do not fit the layout");
        return -1;
    }
    double *counts = bf->counts.buf, *sums = bf->sums.buf, *cache = bf->cache.buf;
    long long *heads = bf->heads.buf;

    double max_ts, seen_ts, new_max;
    if (get_float_attr(m, s_max_ts, &max_ts) < 0 || get_float_attr(m, s_seen_ts, &seen_ts) < 0)
        return -1;
    int late = 0;
    if (max_ts == -Py_HUGE_VAL) {
        new_max = max_ts = ts;
    } else {
        double floor_ts = max_ts - self->grace_s;
        if (ts < floor_ts) {
            ts = floor_ts;
            late = 1;
        }
        new_max = ts > max_ts ? ts : max_ts;
    }
    for (int j = 0; j < L; j++) {
        const MLevel *lv = &self->levels[j];
        long long slots = lv->slots, off = lv->off, end = off + slots;
        long long k = (long long)py_floordiv(ts, lv->bucket_s);
        long long head = (long long)py_floordiv(max_ts, lv->bucket_s);
        long long s1 = off + py_mod(k, slots);
        double c, s;
        if (k > head)
            clear_ring(counts, sums, off, head, k, slots);
        if (k >= head) { /* the head bucket: the cached buckets before it, then the head */
            if (heads[j] != k) {
                heads[j] = k;
                window(counts, sums, off, end, slots, k - lv->span + 1, k - 1, &cache[2 * j],
                       &cache[2 * j + 1]);
            }
            c = cache[2 * j] + counts[s1];
            s = cache[2 * j + 1] + sums[s1];
        } else { /* an older bucket, within the ring: read it whole; the write spoils the cache */
            long long lo = k - lv->span + 1, floor_lo = head - slots + 1;
            window(counts, sums, off, end, slots, lo > floor_lo ? lo : floor_lo, k, &c, &s);
            heads[j] = -1;
        }
        if (set_double(x, lv->n_count, log1p(c)) < 0 ||
            set_double(x, lv->n_mean, c != 0.0 ? log1p(s / c) : 0.0) < 0)
            return -1;
        counts[s1] += 1.0;
        sums[s1] += amount;
    }
    if (set_float_attr(m, s_max_ts, new_max) < 0)
        return -1;
    if (new_max > seen_ts && set_float_attr(m, s_seen_ts, new_max) < 0)
        return -1;
    *late_out = late;
    return 0;
}

/* update(m, amount, ts, x) -> bool: the merchant's features of this event into x, then the event
 * folded into m; True if the event was late */
static PyObject *
merchant_update(MerchantUpdater *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "update(m, amount, ts, x)");
        return NULL;
    }
    if (self->n_levels == 0) {
        PyErr_SetString(PyExc_TypeError, "MerchantUpdater was not initialised");
        return NULL;
    }
    double amount = PyFloat_AsDouble(args[1]);
    if (amount == -1.0 && PyErr_Occurred())
        return NULL;
    double ts = PyFloat_AsDouble(args[2]);
    if (ts == -1.0 && PyErr_Occurred())
        return NULL;
    if (!PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "x must be a dict");
        return NULL;
    }
    MBufs bufs;
    if (get_bufs(args[0], &bufs) < 0)
        return NULL;
    int late = 0;
    int rc = merchant_update_state(self, args[0], &bufs, amount, ts, args[3], &late);
    release_bufs(&bufs);
    if (rc < 0)
        return NULL;
    return PyBool_FromLong(late);
}

static PyMethodDef merchant_methods[] = {
    {"update", (PyCFunction)(void (*)(void))merchant_update, METH_FASTCALL,
     "update(m, amount, ts, x) -> late: MerchantLayout.py_update in C."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MerchantUpdaterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stream_scorer.features._kernels.MerchantUpdater",
    .tp_basicsize = sizeof(MerchantUpdater),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A merchant layout's per-event update (see MerchantLayout).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)merchant_init,
    .tp_dealloc = (destructor)merchant_dealloc,
    .tp_methods = merchant_methods,
};

/* ---- RiskRing.read / RiskRing.fold (risk.py) on a region of a buffer ----------------------------
 * The region: <d latest label time (0: none), then `slots` label counts and `slots` fraud counts,
 * each an unsigned little-endian integer of `itemsize` bytes (read with memcpy: a card's region
 * need not be aligned). Same steps as the Python twin, same float operations in the same order. */

#define MAX_RISK_WINDOWS 8

typedef struct {
    PyObject_HEAD
    double bucket_s, pw, pf, prior_value;
    long long slots, cap;
    int itemsize, n;
    long long spans[MAX_RISK_WINDOWS];
    PyObject *rate_names[MAX_RISK_WINDOWS], *label_names[MAX_RISK_WINDOWS];
} RiskKernel;

static inline unsigned long long
risk_get(const char *p, int itemsize)
{
    if (itemsize == 1)
        return (unsigned char)*p;
    if (itemsize == 2) {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void
risk_set(char *p, int itemsize, unsigned long long v)
{
    if (itemsize == 1) {
        *p = (char)(unsigned char)v;
    } else if (itemsize == 2) {
        uint16_t w = (uint16_t)v;
        memcpy(p, &w, 2);
    } else {
        uint32_t w = (uint32_t)v;
        memcpy(p, &w, 4);
    }
}

static void
risk_dealloc(RiskKernel *self)
{
    for (int i = 0; i < self->n; i++) {
        Py_XDECREF(self->rate_names[i]);
        Py_XDECREF(self->label_names[i]);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* RiskKernel(bucket_s, slots, itemsize, spans, names, prior_weight, prior_frauds, prior_value) */
static int
risk_init(RiskKernel *self, PyObject *args, PyObject *kwds)
{
    double bucket_s, pw, pf, prior_value;
    long long slots;
    int itemsize;
    PyObject *spans, *names;
    if (!PyArg_ParseTuple(args, "dLiO!O!ddd", &bucket_s, &slots, &itemsize, &PyTuple_Type, &spans,
                          &PyTuple_Type, &names, &pw, &pf, &prior_value))
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(spans);
    if (n < 1 || n > MAX_RISK_WINDOWS || PyTuple_GET_SIZE(names) != n || slots < 1 ||
        !(itemsize == 1 || itemsize == 2 || itemsize == 4) || !(bucket_s > 0)) {
        PyErr_SetString(PyExc_ValueError, "bad risk ring parameters");
        return -1;
    }
    for (int i = 0; i < self->n; i++) {
        Py_CLEAR(self->rate_names[i]);
        Py_CLEAR(self->label_names[i]);
    }
    self->n = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        long long span = PyLong_AsLongLong(PyTuple_GET_ITEM(spans, i));
        if (span == -1 && PyErr_Occurred())
            return -1;
        PyObject *pair = PyTuple_GET_ITEM(names, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0)) || !PyUnicode_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "names are (rate, log_labels) pairs of str");
            return -1;
        }
        self->spans[i] = span;
        self->rate_names[i] = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
        self->label_names[i] = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
        self->n = (int)i + 1;
    }
    self->bucket_s = bucket_s;
    self->slots = slots;
    self->itemsize = itemsize;
    self->cap = (1LL << (8 * itemsize)) - 1;
    self->pw = pw;
    self->pf = pf;
    self->prior_value = prior_value;
    return 0;
}

static int
risk_region(RiskKernel *self, PyObject *obj, PyObject *off_obj, Py_buffer *view, char **at, int flags)
{
    Py_ssize_t off = PyLong_AsSsize_t(off_obj);
    if (off == -1 && PyErr_Occurred())
        return -1;
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    Py_ssize_t size = 8 + 2 * (Py_ssize_t)self->slots * self->itemsize;
    if (off < 0 || off + size > view->len) {
        PyErr_SetString(PyExc_ValueError, "the risk ring does not fit the buffer");
        PyBuffer_Release(view);
        return -1;
    }
    *at = (char *)view->buf + off;
    return 0;
}

/* read(buf, off, ts, x): RiskRing.read */
static PyObject *
risk_read(RiskKernel *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "read(buf, off, ts, x: dict)");
        return NULL;
    }
    double ts = PyFloat_AsDouble(args[2]);
    if (ts == -1.0 && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    char *at;
    if (risk_region(self, args[0], args[1], &view, &at, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *x = args[3];
    double last;
    memcpy(&last, at, 8);
    int rc = 0;
    if (last == 0.0) {
        for (int w = 0; w < self->n && rc == 0; w++) {
            rc = set_double(x, self->rate_names[w], self->prior_value);
            if (rc == 0)
                rc = set_double(x, self->label_names[w], 0.0);
        }
        PyBuffer_Release(&view);
        if (rc < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    long long slots = self->slots;
    int isz = self->itemsize;
    const char *labels = at + 8, *frauds = at + 8 + slots * isz;
    long long head = (long long)py_floordiv(last, self->bucket_s);
    long long k = (long long)py_floordiv(ts, self->bucket_s);
    long long hi = (k > head || (k == head && ts > last)) ? k : k - 1;
    if (hi > head)
        hi = head;
    long long oldest = head - slots + 1;
    for (int w = 0; w < self->n && rc == 0; w++) {
        long long lo = k - self->spans[w] + 1;
        if (lo < oldest)
            lo = oldest;
        unsigned long long n = 0, f = 0;
        for (long long d = lo; d <= hi; d++)
            n += risk_get(labels + py_mod(d, slots) * isz, isz);
        if (n)
            for (long long d = lo; d <= hi; d++)
                f += risk_get(frauds + py_mod(d, slots) * isz, isz);
        double rate = (n || self->pw) ? ((double)f + self->pf) / ((double)n + self->pw) : 0.0;
        rc = set_double(x, self->rate_names[w], rate);
        if (rc == 0)
            rc = set_double(x, self->label_names[w], log1p((double)n));
    }
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* fold(buf, off, label_ts, is_fraud): RiskRing.fold */
static PyObject *
risk_fold(RiskKernel *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "fold(buf, off, label_ts, is_fraud)");
        return NULL;
    }
    double label_ts = PyFloat_AsDouble(args[2]);
    if (label_ts == -1.0 && PyErr_Occurred())
        return NULL;
    int is_fraud = PyObject_IsTrue(args[3]);
    if (is_fraud < 0)
        return NULL;
    Py_buffer view;
    char *at;
    if (risk_region(self, args[0], args[1], &view, &at, PyBUF_WRITABLE) < 0)
        return NULL;
    long long slots = self->slots;
    int isz = self->itemsize;
    char *labels = at + 8, *frauds = at + 8 + slots * isz;
    double last;
    memcpy(&last, at, 8);
    long long k = (long long)py_floordiv(label_ts, self->bucket_s);
    if (last == 0.0) {
        memcpy(at, &label_ts, 8);
    } else {
        long long head = (long long)py_floordiv(last, self->bucket_s);
        if (k > head) { /* the ring moves on to k: empty the buckets it reuses */
            long long end = k < head + slots ? k : head + slots;
            for (long long j = head + 1; j <= end; j++) {
                risk_set(labels + py_mod(j, slots) * isz, isz, 0);
                risk_set(frauds + py_mod(j, slots) * isz, isz, 0);
            }
            memcpy(at, &label_ts, 8);
        } else if (k <= head - slots) {
            PyBuffer_Release(&view);
            Py_RETURN_NONE;
        } else if (label_ts > last) {
            memcpy(at, &label_ts, 8);
        }
    }
    long long i = py_mod(k, slots);
    unsigned long long nl = risk_get(labels + i * isz, isz);
    if ((long long)nl < self->cap) {
        risk_set(labels + i * isz, isz, nl + 1);
        unsigned long long nf = risk_get(frauds + i * isz, isz);
        if (is_fraud && (long long)nf < self->cap)
            risk_set(frauds + i * isz, isz, nf + 1);
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyMethodDef risk_methods[] = {
    {"read", (PyCFunction)(void (*)(void))risk_read, METH_FASTCALL,
     "read(buf, off, ts, x): the ring's risk features at event time ts into x"},
    {"fold", (PyCFunction)(void (*)(void))risk_fold, METH_FASTCALL,
     "fold(buf, off, label_ts, is_fraud): count a label known from label_ts on"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RiskKernelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stream_scorer.features._kernels.RiskKernel",
    .tp_basicsize = sizeof(RiskKernel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RiskRing.read and RiskRing.fold in C, parameters handed over once.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)risk_init,
    .tp_dealloc = (destructor)risk_dealloc,
    .tp_methods = risk_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "The feature engine's per-event updates of a card and a merchant, in C (see .card, .merchant).", -1,
    NULL,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    if (PyType_Ready(&CardUpdaterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyType_Ready(&MerchantUpdaterType) < 0 || PyType_Ready(&RiskKernelType) < 0)
        goto fail;
    struct { PyObject **slot; const char *name; } strings[] = {
        {&s_max_ts, "max_ts"}, {&s_seen_ts, "seen_ts"}, {&s_counts, "counts"},
        {&s_sums, "sums"}, {&s_heads, "cache_heads"}, {&s_cache, "cache"},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        if (*strings[i].slot == NULL && (*strings[i].slot = PyUnicode_InternFromString(strings[i].name)) == NULL)
            goto fail;
    }
    if (PyModule_AddObjectRef(m, "CardUpdater", (PyObject *)&CardUpdaterType) < 0 ||
        PyModule_AddObjectRef(m, "MerchantUpdater", (PyObject *)&MerchantUpdaterType) < 0 ||
        PyModule_AddObjectRef(m, "RiskKernel", (PyObject *)&RiskKernelType) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}

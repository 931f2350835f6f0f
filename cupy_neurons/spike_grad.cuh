// Spike helpers shared by the neuron kernels (culif.cu, adlif.cu, lif.cu).
//
// Included INSIDE each kernel's `namespace SJ_NS { ... }`, after `typedef SJ_ACC acc_t;`, and on purpose
// without an include guard: build.py inlines it once per specialisation (each in its own namespace, with
// its own SJ_SURROGATE / SJ_LOCALZO macros).

SJ_HD acc_t surrogate(const acc_t u) { return (acc_t)(SJ_SURROGATE(u)); }
SJ_HD acc_t heaviside(const acc_t u) { return u >= (acc_t)0 ? (acc_t)1 : (acc_t)0; }

// The spike derivative g_t at step t of neuron n: the surrogate g(u), or (SJ_LOCALZO) the LocalZO
// estimate with the Philox noise of (counter n, key zo_keys[t]).
SJ_HD acc_t spike_grad(const acc_t u, const sj_index n, const int t, const long long* zo_keys,
                       const sj_localzo_law& law) {
#if SJ_LOCALZO
    return sj_localzo_spike_grad(u, n, t, zo_keys, law);
#else
    (void)n, (void)t, (void)zo_keys, (void)law;
    return surrogate(u);
#endif
}

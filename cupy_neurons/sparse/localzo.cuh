// LocalZO estimate of one element (host and device), shared by the S3GD kernels (s3gd.cu) and the
// fused neuron backward kernels (culif.cu, adlif.cu, lif.cu with SJ_LOCALZO = 1).
//
// The torch twin is sjframe/spike/localzo.py (localzo_estimate_with, rng='philox'): for an
// element with distance to threshold u, counter n (its flat index) and a 64-bit key,
//     g = scale * sum_{k < samples} |z_k| 1{|u| < delta |z_k|},   scale = 1 / (2 delta samples),
//     |z_k| = Q(p_k),  p_k = philox_uniform(n, stream k, key)
// with Q the quantile of |z| for the noise law `dist` (codes of localzo.DIST_CODES):
//     1 laplace:  -ln(p) / sqrt 2          2 uniform: sqrt 3 (1 - p)
//     0 normal, 3 sigmoid, 4 fast_sigmoid: the float32 table of Q over w = -ln p on [0, w_max]
//       (intervals + 1 entries, w_scale = intervals / w_max), linearly interpolated.
// All arithmetic is float32 (as in the torch reference), whatever the storage dtype.
#ifndef SJ_LOCALZO_CUH
#define SJ_LOCALZO_CUH

#include "philox.cuh"

// The noise law and its constants (everything but the key and the counter).
struct sj_localzo_law {
    const float* table;  // quantile table (tabulated laws; may be null for laplace / uniform)
    int intervals;
    float w_max;
    float w_scale;
    int samples;
    int dist;
    float delta;
    float scale;  // 1 / (2 delta samples)
};

// |z| = Q(p) for p uniform in (0, 1].
SJ_HD float sj_localzo_abs_z(const float p, const sj_localzo_law& law) {
    if (law.dist == 1) return -logf(p) * 0.70710678118654752f;
    if (law.dist == 2) return (1.0f - p) * 1.7320508075688772f;
    const float pos = fminf(fmaxf(-logf(p), 0.0f), law.w_max) * law.w_scale;
    float i0 = floorf(pos);
    if (i0 > (float)(law.intervals - 1)) i0 = (float)(law.intervals - 1);
    const float frac = pos - i0;
    const int i = (int)i0;
    const float lo = law.table[i];
    const float hi = law.table[i + 1];
    return lo + frac * (hi - lo);
}

// g for |u| = ua (float32), element counter n, Philox key.
SJ_HD float sj_localzo_estimate(const float ua, const unsigned long long n, const unsigned long long key,
                                const sj_localzo_law& law) {
    float acc = 0.0f;
    for (int k = 0; k < law.samples; ++k) {
        const float p = sj_philox_uniform(n, (unsigned int)k, key);
        const float z = sj_localzo_abs_z(p, law);
        acc = acc + ((ua < law.delta * z) ? z : 0.0f);
    }
    return acc * law.scale;
}

SJ_HD sj_localzo_law sj_make_localzo_law(const float* table, const int intervals, const float w_max,
                                         const float w_scale, const int samples, const int dist, const float delta,
                                         const float scale) {
    sj_localzo_law law;
    law.table = table;
    law.intervals = intervals;
    law.w_max = w_max;
    law.w_scale = w_scale;
    law.samples = samples;
    law.dist = dist;
    law.delta = delta;
    law.scale = scale;
    return law;
}

// The LocalZO arguments of the fused neuron backward kernels (a null zo_keys when SJ_LOCALZO = 0):
// one Philox key per time step (zo_keys [T]; element n of step t uses counter n and key zo_keys[t],
// as the torch reference, which draws one key per step) and the law's fields.
#define SJ_ZO_PARAMS                                                                                    \
    const long long* __restrict__ zo_keys, const float* __restrict__ zo_table, const int zo_intervals,  \
        const float zo_w_max, const float zo_w_scale, const int zo_samples, const int zo_dist,          \
        const float zo_delta, const float zo_scale
// The law of those arguments (inside a kernel that declares SJ_ZO_PARAMS).
#define SJ_ZO_LAW() \
    sj_make_localzo_law(zo_table, zo_intervals, zo_w_max, zo_w_scale, zo_samples, zo_dist, zo_delta, zo_scale)

// The spike derivative at (step t, element n) in LocalZO mode: g of |u| rounded to float32 (as the
// torch reference's u.abs().to(float32)).
template <typename A>
SJ_HD A sj_localzo_spike_grad(const A u, const long long n, const int t, const long long* keys,
                              const sj_localzo_law& law) {
    return (A)sj_localzo_estimate(fabsf((float)u), (unsigned long long)n, (unsigned long long)keys[t], law);
}

#endif  // SJ_LOCALZO_CUH

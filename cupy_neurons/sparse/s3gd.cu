// S3GD sparse backward and LocalZO estimate kernels (CUDA C; also compiled as host C++ through
// cupy_neurons/host_shim.h for the CPU checks).
//
// Rendered by cupy_neurons/sparse/kernels.py with cupy_neurons/build.py's specialisation macros:
// SJ_SCALAR (storage: float, double, sj_half, sj_bf16), SJ_ACC (accumulation: float; double for
// double storage: e, dW, dL/dx and beta^n are SJ_ACC buffers), SJ_SURROGATE(u) (the band-truncated
// surrogate of sjframe.spike.surrogate.Surrogate.cuda_expr), SJ_NS, SJ_NAME. The torch reference is
// sjframe/layers/sparse_linear_lif.py and sjframe/spike/localzo.py.
//
// Notation: a layer maps input spikes x [T, B, Nin] through W [N, Nin] to a LIF with decay beta;
// the active set A = {(t, b, j)} holds the entries with a nonzero spike derivative; e = dL/ds * g
// at A. Backward (reset detached):
//     dW[j, i]     = sum_{(t,b,j) in A} e[t,b,j] tr[t,b,i]          (tr: input trace)
//     dL/dx[k,b,i] = sum_j W[j,i] D[k,b,j],  D[k] = sum_{t>k} beta^(t-1-k) e[t]
// the latter only at the entries needed by the previous layer (its active set).
#include "localzo.cuh"

namespace SJ_NS {
typedef SJ_SCALAR scalar_t;
typedef SJ_ACC acc_t;

SJ_HD acc_t surrogate(const acc_t u) { return (acc_t)(SJ_SURROGATE(u)); }
}  // namespace SJ_NS

// LocalZO estimate g = (1/(2 delta m)) sum_k |z_k| 1{|u| < delta |z_k|}, one thread per element,
// noise from Philox (element n, stream k, key): sj_localzo_estimate of localzo.cuh. scale = 1 / (2 delta m).
extern "C" __global__ void SJ_NAME(localzo_estimate)(
    const SJ_SCALAR* __restrict__ u, SJ_SCALAR* __restrict__ g, const long long n_total, const long long key,
    const int samples, const float delta, const float scale, const int dist, const float* __restrict__ table,
    const int intervals, const float w_max, const float w_scale) {
    const sj_index n = sj_thread_index();
    if (n >= n_total) return;
    const sj_localzo_law law = sj_make_localzo_law(table, intervals, w_max, w_scale, samples, dist, delta, scale);
    const float ua = fabsf((float)sj_widen(u[n]));
    sj_narrow(g + n, (SJ_ACC)sj_localzo_estimate(ua, (unsigned long long)n, (unsigned long long)key, law));
}

// e[a] = grad_out[index[a]] * d[a], with d = the stored derivative (given = 1: LocalZO g) or the
// surrogate of the stored u (given = 0: S3GD, surrogate truncated to the band).
extern "C" __global__ void SJ_NAME(s3gd_active_grad)(
    const SJ_SCALAR* __restrict__ grad_out, const long long* __restrict__ index, const SJ_SCALAR* __restrict__ data,
    const long long a_total, const int given, SJ_ACC* __restrict__ e) {
    const sj_index a = sj_thread_index();
    if (a >= a_total) return;
    const SJ_ACC d = sj_widen(data[a]);
    const SJ_ACC g = given ? d : SJ_NS::surrogate(d);
    e[a] = sj_widen(grad_out[index[a]]) * g;
}

// dW[j, i] += e[a] tr[tb(a), i] for every active event a and input i (atomic adds, tr = 0 skipped).
// One thread per (event, input) pair: thread = a * Nin + i (consecutive threads: consecutive i).
extern "C" __global__ void SJ_NAME(s3gd_weight_grad)(
    const SJ_SCALAR* __restrict__ tr, const long long* __restrict__ index, const SJ_ACC* __restrict__ e,
    const long long a_total, const int n_out, const int n_in, SJ_ACC* __restrict__ dw) {
    const sj_index id = sj_thread_index();
    if (id >= a_total * (sj_index)n_in) return;
    const sj_index a = id / n_in;
    const int i = (int)(id - a * n_in);
    const sj_index flat = index[a];  // (t * B + b) * N + j
    const sj_index tb = flat / n_out;
    const int j = (int)(flat - tb * n_out);
    const SJ_ACC trace = sj_widen(tr[tb * n_in + i]);
    if (trace == (SJ_ACC)0) return;
    atomicAdd(dw + (sj_index)j * n_in + i, trace * e[a]);
}

// Input-spike gradient at the needed entries. One thread per group (b, j) of active events, which
// are sorted by (b, j, t): ev_t / ev_e, group g spans [grp_start[g], grp_start[g+1]) with key
// grp_bj[g] = b * N + j. Needed entries are sorted by (b, k, i): pair p = (b, k) spans
// need_i[pair_start[p] .. pair_start[p+1]), pairs of batch b span [b_pair_start[b], b_pair_start[b+1]).
// Walking the pairs of b backwards in time with a running decayed delta
//     D_a = sum_{t > a} beta^(t-1-a) e_t,  D_{t-1} = beta^(a-t+1) D_a + e_t,  D_k = beta^(a-k) D_a,
// each thread adds W[j, i] D_k into grad_in[(k B + b) Nin + i] (atomics: all j of a row meet there).
// beta_pow[n] = beta^n for n = 0..T.
extern "C" __global__ void SJ_NAME(s3gd_input_grad)(
    const long long* __restrict__ ev_t, const SJ_ACC* __restrict__ ev_e, const long long* __restrict__ grp_bj,
    const long long* __restrict__ grp_start, const long long n_groups, const long long* __restrict__ pair_k,
    const long long* __restrict__ pair_start, const long long* __restrict__ b_pair_start,
    const long long* __restrict__ need_i, const SJ_SCALAR* __restrict__ weight, const SJ_ACC* __restrict__ beta_pow,
    const int T, const int B, const int n_out, const int n_in, SJ_ACC* __restrict__ grad_in) {
    const sj_index g = sj_thread_index();
    if (g >= n_groups) return;
    const sj_index bj = grp_bj[g];
    const int b = (int)(bj / n_out);
    const int j = (int)(bj - (sj_index)b * n_out);
    const sj_index first_ev = grp_start[g];
    sj_index ev = grp_start[g + 1] - 1;
    SJ_ACC delta = (SJ_ACC)0;
    long long anchor = T - 1;  // delta = D_anchor (D_{T-1} = 0: no event after the last step)
    for (sj_index p = b_pair_start[b + 1] - 1; p >= b_pair_start[b]; --p) {
        const long long k = pair_k[p];
        while (ev >= first_ev && ev_t[ev] > k) {
            const long long t = ev_t[ev];
            delta = beta_pow[anchor - (t - 1)] * delta + ev_e[ev];
            anchor = t - 1;
            --ev;
        }
        if (ev < first_ev && delta == (SJ_ACC)0) break;  // nothing left for earlier times
        const SJ_ACC dk = beta_pow[anchor - k] * delta;
        if (dk == (SJ_ACC)0) continue;
        const sj_index row = ((sj_index)k * B + b) * n_in;
        for (sj_index q = pair_start[p]; q < pair_start[p + 1]; ++q) {
            const sj_index i = need_i[q];
            atomicAdd(grad_in + row + i, sj_widen(weight[(sj_index)j * n_in + i]) * dk);
        }
    }
}

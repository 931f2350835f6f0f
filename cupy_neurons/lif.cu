// LIF of S3GD / LocalZO, multi-step forward and backward (time-major [T, N], one thread per neuron on the
// GPU; a chunk of neurons per call, vectorised, on the CPU: SJ_LANES_BEGIN / SJ_FOR_LANES of common.cuh).
//
// Rendered by cupy_neurons/build.py (SJ_SCALAR, SJ_ACC, SJ_SURROGATE, SJ_NS, SJ_NAME,
// SJ_DETACH_RESET, SJ_LOCALZO: 1 = the spike derivative g is the LocalZO estimate, see spike_grad).
// beta is an SJ_ACC array of P entries (neuron n uses entry n % P).
// States: h (last pre-reset potential) and x (last input); the carried spike is H(h0 - theta),
// a constant (no gradient).
//
// Forward, one step (subtractive reset, output lags the input by one step):
//     h_t = beta h_{t-1} + x_{t-1} - theta s_{t-1}
//     s_t = H(h_t - theta)        (h_t as stored in SJ_SCALAR)
// Backward, reverse time, carrying dn = dL/dh_{t+1} (0 after the last step):
//     dh_t = gh_t + gs_t g_t + beta dn  [ - theta dn g_t without detach ],  g_t = g(h_t - theta)
//     dx_t = dn   (x_t enters h_{t+1});   dbeta += h_{t-1} dh_t
//     initial states: dL/dh0 = beta dh_0, dL/dx0 = dh_0
#include "sparse/localzo.cuh"

namespace SJ_NS {
typedef SJ_SCALAR scalar_t;
typedef SJ_ACC acc_t;

#include "spike_grad.cuh"

// One forward step: h <- beta h + x_prev - theta s; s <- H(h - theta).
SJ_HD void lif_step_forward(const acc_t x_prev, const acc_t beta, const acc_t theta, acc_t& h, acc_t& s) {
    h = beta * h + x_prev - theta * s;
    s = heaviside(sj_round_to<scalar_t>(h) - theta);
}

// One backward step: returns dh_t given dn = dL/dh_{t+1} and the spike derivative sg = g_t.
SJ_HD acc_t lif_step_backward(const acc_t gs, const acc_t gh, const acc_t sg, const acc_t beta, const acc_t theta,
                              const acc_t dn) {
    acc_t dh = gh + gs * sg + beta * dn;
#if !SJ_DETACH_RESET
    dh -= theta * dn * sg;
#endif
    return dh;
}

// x_seq [T, N]; h0, x0 [N]; beta [P]. Outputs s_seq, h_seq [T, N] (the final states are
// h_seq[T-1] and x_seq[T-1]). Neurons n = sj_n0 + j of the thread's lanes (common.cuh).
extern "C" __global__ void SJ_NAME(lif_forward)(
    const scalar_t* __restrict__ x_seq, const scalar_t* __restrict__ h0, const scalar_t* __restrict__ x0,
    const acc_t* __restrict__ beta, const acc_t theta, const int T, const sj_index N, const sj_index P,
    scalar_t* __restrict__ s_seq, scalar_t* __restrict__ h_seq) {
    SJ_LANES_BEGIN(N);
    acc_t be[SJ_MAX_LANES], h[SJ_MAX_LANES], s[SJ_MAX_LANES], x_prev[SJ_MAX_LANES];
    sj_lane_params(be, beta, sj_n0, sj_lanes, P);
    SJ_FOR_LANES(j) {
        const sj_index n = sj_n0 + j;
        h[j] = sj_widen(h0[n]);
        s[j] = heaviside(h[j] - theta);
        x_prev[j] = sj_widen(x0[n]);
    }
    SJ_OUT_ROW(scalar_t, h_row);
    SJ_OUT_ROW(scalar_t, s_row);
    for (int t = 0; t < T; ++t) {
        if (t + 1 < T) SJ_PREFETCH_ROW(x_seq, (sj_index)(t + 1) * N + sj_n0);  // the next step's input
        const sj_index row = (sj_index)t * N + sj_n0;
        SJ_FOR_LANES(j) {
            const sj_index k = row + j;
            lif_step_forward(x_prev[j], be[j], theta, h[j], s[j]);
            x_prev[j] = sj_widen(x_seq[k]);
            sj_narrow(SJ_OUT_AT(h_row, h_seq, k, j), h[j]);
            sj_narrow(SJ_OUT_AT(s_row, s_seq, k, j), s[j]);
        }
        SJ_OUT_FLUSH(h_row, h_seq, row);
        SJ_OUT_FLUSH(s_row, s_seq, row);
    }
}

// Backward step t of one neuron n (element k = t N + n). Its state, by reference, moves from step t to step t - 1:
// dn = dL/dh_{t+1}, h = h_t (loaded one step ahead), the beta gradient's sum gbe. Reads gs, gh (null: 0) and h_{t-1}
// at k (h0 when `first`, t = 0, and `params`). Returns dx_t. Scalars by reference, not a struct: see
// adlif_lane_backward (adlif.cu).
SJ_HD acc_t lif_lane_backward(acc_t& dn, acc_t& h, acc_t& gbe, const acc_t beta, const bool first, const bool params, const int t,
                              const sj_index n, const sj_index k, const sj_index N,
                              const scalar_t* __restrict__ gs_seq, const scalar_t* __restrict__ gh_seq,
                              const scalar_t* __restrict__ h_seq, const scalar_t* __restrict__ h0, const acc_t theta,
                              const long long* __restrict__ zo_keys, const sj_localzo_law& law) {
    const acc_t h_prev = first ? (acc_t)0 : sj_widen(h_seq[k - N]);
    const acc_t dx = dn;
    const acc_t sg = spike_grad(h - theta, n, t, zo_keys, law);
    const acc_t dh = lif_step_backward(sj_load_or_zero(gs_seq, k), sj_load_or_zero(gh_seq, k), sg, beta, theta, dn);
    if (params) gbe += (first ? sj_widen(h0[n]) : h_prev) * dh;
    dn = dh;
    h = h_prev;
    return dx;
}

// Gradients gs_seq, gh_seq [T, N] (each may be null = 0). Saved: h_seq; h0 (for dbeta only).
// LocalZO (SJ_LOCALZO = 1 only): zo_keys [T] and the law (see spike_grad).
// Outputs dx_seq [T, N], dh0, dx0 [N], dbeta_part [N] (null: no beta gradient).
// SJ_STEPS steps per pass over the lanes while they are all > 0, then one (common.cuh).
extern "C" __global__ void SJ_NAME(lif_backward)(
    const scalar_t* __restrict__ gs_seq, const scalar_t* __restrict__ gh_seq, const scalar_t* __restrict__ h_seq,
    const scalar_t* __restrict__ h0, const acc_t* __restrict__ beta, const acc_t theta,
    const int T, const sj_index N, const sj_index P, SJ_ZO_PARAMS,
    scalar_t* __restrict__ dx_seq, scalar_t* __restrict__ dh0, scalar_t* __restrict__ dx0,
    acc_t* __restrict__ dbeta_part) {
    SJ_LANES_BEGIN(N);
    const bool params = dbeta_part != nullptr;
    const sj_localzo_law law = SJ_ZO_LAW();
    acc_t be[SJ_MAX_LANES], dn[SJ_MAX_LANES], gbe[SJ_MAX_LANES], h[SJ_MAX_LANES];
    sj_lane_params(be, beta, sj_n0, sj_lanes, P);
    SJ_FOR_LANES(j) {
        const sj_index n = sj_n0 + j;
        dn[j] = (acc_t)0;
        gbe[j] = (acc_t)0;
        // each h element is loaded once: h_{t-1} is read at step t and carried to step t-1
        h[j] = T > 0 ? sj_widen(h_seq[(sj_index)(T - 1) * N + n]) : (acc_t)0;
    }
    SJ_OUT_ROWS(scalar_t, dx_rows);
    int t = T - 1;
    for (; t >= SJ_STEPS; t -= SJ_STEPS) {  // SJ_STEPS steps per pass, all > 0
        SJ_PREFETCH_PASS(gs_seq, t - SJ_STEPS);  // the rows of the next pass (h: one step earlier)
        SJ_PREFETCH_PASS(gh_seq, t - SJ_STEPS);
        SJ_PREFETCH_PASS(h_seq, t - SJ_STEPS - 1);
        const sj_index row = (sj_index)t * N + sj_n0;
        SJ_FOR_LANES(j) {
            const sj_index n = sj_n0 + j;
            acc_t dn_ = dn[j], h_ = h[j], gbe_ = gbe[j];
            SJ_FOR_STEPS(u, SJ_STEPS) {
                const sj_index k = row + j - u * N;
                sj_narrow(SJ_OUT_STEP_AT(dx_rows, dx_seq, k, j, u),
                          lif_lane_backward(dn_, h_, gbe_, be[j], false, params, t - u, n, k, N, gs_seq, gh_seq, h_seq, h0,
                                            theta, zo_keys, law));
            }
            dn[j] = dn_, h[j] = h_, gbe[j] = gbe_;
        }
        SJ_OUT_FLUSH_STEPS(dx_rows, dx_seq, row, -N, SJ_STEPS);
    }
    for (; t >= 0; --t) {  // the steps left, one per pass (t = 0: the step before is the initial state)
        const sj_index row = (sj_index)t * N + sj_n0;
        SJ_FOR_LANES(j) {
            const sj_index n = sj_n0 + j;
            const sj_index k = row + j;
            sj_narrow(SJ_OUT_STEP_AT(dx_rows, dx_seq, k, j, 0),
                      lif_lane_backward(dn[j], h[j], gbe[j], be[j], t == 0, params, t, n, k, N, gs_seq, gh_seq, h_seq, h0,
                                        theta, zo_keys, law));
        }
        SJ_OUT_FLUSH_STEPS(dx_rows, dx_seq, row, -N, 1);
    }
    SJ_FOR_LANES(j) {
        const sj_index n = sj_n0 + j;
        sj_narrow(dh0 + n, be[j] * dn[j]);
        sj_narrow(dx0 + n, dn[j]);
        if (params) dbeta_part[n] = gbe[j];
    }
}
}  // namespace SJ_NS

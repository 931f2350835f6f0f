// CuLIF / PCuLIF multi-step forward and backward (time-major [T, N], one thread per neuron on the GPU;
// a chunk of neurons per call, vectorised, on the CPU: SJ_LANES_BEGIN / SJ_FOR_LANES of common.cuh).
//
// Rendered by cupy_neurons/build.py with SJ_SCALAR, SJ_ACC, SJ_SURROGATE(u), SJ_NS, SJ_NAME,
// SJ_DETACH_RESET (1: the reset carries no gradient) and SJ_LOCALZO (1: the spike derivative g is
// the LocalZO estimate instead of the surrogate, see spike_grad below). Tensors [T, N] are
// contiguous with element (t, n) at t * N + n; N = batch x features. Decays are SJ_ACC arrays of P entries
// (P = 1: one per layer; P = F: one per feature, neuron n uses entry n % P).
//
// Forward, one step (states start at v0, I0):
//     h_t = lam v_{t-1} + (1 - lam) I_{t-1}
//     I_t = gam I_{t-1} + x_t
//     s_t = H(h_t - theta)        (h_t as stored: rounded to SJ_SCALAR, so backward recomputes s_t exactly)
//     v_t = h_t (1 - s_t)
// Backward, in reverse time, with dv = dL/dv_t and dI = dL/dI_t (totals):
//     dx_t = dI
//     dh_t = gh_t + gs_t g_t + dv (1 - s_t)  [ - dv h_t g_t without detach ],  g_t = g(h_t - theta)
//     dv  <- lam dh_t                 (dL/dv_{t-1})
//     dI  <- gam dI + (1 - lam) dh_t  (dL/dI_{t-1})
//     dlam += (v_{t-1} - I_{t-1}) dh_t,   dgam += I_{t-1} dL/dI_t
// Parameter gradients are written per neuron (partials [N], no atomics) and summed by the caller.
#include "sparse/localzo.cuh"

namespace SJ_NS {
typedef SJ_SCALAR scalar_t;
typedef SJ_ACC acc_t;

#include "spike_grad.cuh"

// One forward step of one neuron: updates v, i; returns h (full precision) and s.
SJ_HD void culif_step_forward(const acc_t x, const acc_t lam, const acc_t gam, const acc_t theta,
                              acc_t& v, acc_t& i, acc_t& h, acc_t& s) {
    h = lam * v + ((acc_t)1 - lam) * i;
    i = gam * i + x;
    s = heaviside(sj_round_to<scalar_t>(h) - theta);
    v = h * ((acc_t)1 - s);
}

// One backward step: from dv = dL/dv_t, di = dL/dI_t, the output gradients at t and the spike
// derivative sg = g_t, returns dh = dL/dh_t and moves dv, di to dL/dv_{t-1}, dL/dI_{t-1}.
SJ_HD acc_t culif_step_backward(const acc_t gs, const acc_t gh, const acc_t h, const acc_t sg, const acc_t lam,
                                const acc_t gam, const acc_t theta, acc_t& dv, acc_t& di) {
    const acc_t s = heaviside(h - theta);
    acc_t dh = gh + gs * sg + dv * ((acc_t)1 - s);
#if !SJ_DETACH_RESET
    dh -= dv * h * sg;
#endif
    dv = lam * dh;
    di = gam * di + ((acc_t)1 - lam) * dh;
    return dh;
}

// x_seq [T, N]; v0, i0 [N]; lam, gam [P]. Outputs s_seq, h_seq [T, N]; v_last, i_last [N];
// iprev_seq [T, N] (I_{t-1}, the current entering step t; may be null: only PCuLIF needs it).
// Neurons n = sj_n0 + j of the thread's lanes (common.cuh: one on the GPU, a vector chunk on the CPU).
extern "C" __global__ void SJ_NAME(culif_forward)(
    const scalar_t* __restrict__ x_seq, const scalar_t* __restrict__ v0, const scalar_t* __restrict__ i0,
    const acc_t* __restrict__ lam, const acc_t* __restrict__ gam, const acc_t theta,
    const int T, const sj_index N, const sj_index P,
    scalar_t* __restrict__ s_seq, scalar_t* __restrict__ h_seq, scalar_t* __restrict__ v_last,
    scalar_t* __restrict__ i_last, scalar_t* __restrict__ iprev_seq) {
    SJ_LANES_BEGIN(N);
    acc_t lm[SJ_MAX_LANES], gm[SJ_MAX_LANES], v[SJ_MAX_LANES], i[SJ_MAX_LANES];
    sj_lane_params(lm, lam, sj_n0, sj_lanes, P);
    sj_lane_params(gm, gam, sj_n0, sj_lanes, P);
    SJ_FOR_LANES(j) {
        const sj_index n = sj_n0 + j;
        v[j] = sj_widen(v0[n]);
        i[j] = sj_widen(i0[n]);
    }
    SJ_OUT_ROW(scalar_t, iprev_row);
    SJ_OUT_ROW(scalar_t, h_row);
    SJ_OUT_ROW(scalar_t, s_row);
    for (int t = 0; t < T; ++t) {
        if (t + 1 < T) SJ_PREFETCH_ROW(x_seq, (sj_index)(t + 1) * N + sj_n0);  // the next step's input
        const sj_index row = (sj_index)t * N + sj_n0;
        SJ_FOR_LANES(j) {
            const sj_index k = row + j;
            if (iprev_seq) sj_narrow(SJ_OUT_AT(iprev_row, iprev_seq, k, j), i[j]);
            acc_t h, s;
            culif_step_forward(sj_widen(x_seq[k]), lm[j], gm[j], theta, v[j], i[j], h, s);
            sj_narrow(SJ_OUT_AT(h_row, h_seq, k, j), h);
            sj_narrow(SJ_OUT_AT(s_row, s_seq, k, j), s);
        }
        SJ_OUT_FLUSH(iprev_row, iprev_seq, row);
        SJ_OUT_FLUSH(h_row, h_seq, row);
        SJ_OUT_FLUSH(s_row, s_seq, row);
    }
    SJ_FOR_LANES(j) {
        sj_narrow(v_last + sj_n0 + j, v[j]);
        sj_narrow(i_last + sj_n0 + j, i[j]);
    }
}

// Backward step t of one neuron n (element k = t N + n). Its state, by reference, moves from step t to step t - 1:
// dv = dL/dv_t, di = dL/dI_t, h = h_t (loaded one step ahead), the parameter-gradient sums glam, ggam. Reads gs, gh
// (null: 0) and h_{t-1} at k; with `params` also I_{t-1} and v_{t-1} (from h_{t-1}, or v0 when `first`, t = 0).
// Returns dx_t. Scalars by reference, not a struct: see adlif_lane_backward (adlif.cu).
SJ_HD acc_t culif_lane_backward(acc_t& dv, acc_t& di, acc_t& h, acc_t& glam, acc_t& ggam, const acc_t lam,
                                const acc_t gam, const bool first, const bool params, const int t, const sj_index n, const sj_index k, const sj_index N,
                                const scalar_t* __restrict__ gs_seq, const scalar_t* __restrict__ gh_seq,
                                const scalar_t* __restrict__ h_seq, const scalar_t* __restrict__ v0,
                                const scalar_t* __restrict__ iprev_seq, const acc_t theta,
                                const long long* __restrict__ zo_keys, const sj_localzo_law& law) {
    const acc_t h_prev = first ? (acc_t)0 : sj_widen(h_seq[k - N]);
    const acc_t di_t = di;  // dL/dI_t = dL/dx_t
    const acc_t sg = spike_grad(h - theta, n, t, zo_keys, law);
    const acc_t dh = culif_step_backward(sj_load_or_zero(gs_seq, k), sj_load_or_zero(gh_seq, k), h, sg, lam, gam, theta,
                                         dv, di);
    if (params) {
        const acc_t v_prev = first ? sj_widen(v0[n]) : h_prev * ((acc_t)1 - heaviside(h_prev - theta));
        const acc_t i_prev = sj_widen(iprev_seq[k]);
        glam += (v_prev - i_prev) * dh;
        ggam += i_prev * di_t;
    }
    h = h_prev;
    return di_t;
}

// Gradients of the outputs: gs_seq, gh_seq [T, N], gv_last, gi_last [N] (each may be null = 0).
// Saved: h_seq [T, N]; v0 [N] and iprev_seq [T, N] (only read when dlam_part != null).
// LocalZO (SJ_LOCALZO = 1 only): zo_keys [T] and the law's arguments (see spike_grad).
// Outputs: dx_seq [T, N], dv0, di0 [N]; dlam_part, dgam_part [N] (null: no parameter gradient).
// SJ_STEPS steps per pass over the lanes while they are all > 0, then one (common.cuh).
extern "C" __global__ void SJ_NAME(culif_backward)(
    const scalar_t* __restrict__ gs_seq, const scalar_t* __restrict__ gh_seq,
    const scalar_t* __restrict__ gv_last, const scalar_t* __restrict__ gi_last,
    const scalar_t* __restrict__ h_seq, const scalar_t* __restrict__ v0, const scalar_t* __restrict__ iprev_seq,
    const acc_t* __restrict__ lam, const acc_t* __restrict__ gam, const acc_t theta,
    const int T, const sj_index N, const sj_index P, SJ_ZO_PARAMS,
    scalar_t* __restrict__ dx_seq, scalar_t* __restrict__ dv0, scalar_t* __restrict__ di0,
    acc_t* __restrict__ dlam_part, acc_t* __restrict__ dgam_part) {
    SJ_LANES_BEGIN(N);
    const sj_localzo_law law = SJ_ZO_LAW();
    const bool params = dlam_part != nullptr;
    acc_t lm[SJ_MAX_LANES], gm[SJ_MAX_LANES], dv[SJ_MAX_LANES], di[SJ_MAX_LANES], glam[SJ_MAX_LANES],
        ggam[SJ_MAX_LANES], h[SJ_MAX_LANES];
    sj_lane_params(lm, lam, sj_n0, sj_lanes, P);
    sj_lane_params(gm, gam, sj_n0, sj_lanes, P);
    SJ_FOR_LANES(j) {
        const sj_index n = sj_n0 + j;
        dv[j] = sj_load_or_zero(gv_last, n);
        di[j] = sj_load_or_zero(gi_last, n);
        glam[j] = (acc_t)0;
        ggam[j] = (acc_t)0;
        // each h element is loaded once: h_{t-1} is read at step t and carried to step t-1
        h[j] = T > 0 ? sj_widen(h_seq[(sj_index)(T - 1) * N + n]) : (acc_t)0;
    }
    SJ_OUT_ROWS(scalar_t, dx_rows);
    int t = T - 1;
    for (; t >= SJ_STEPS; t -= SJ_STEPS) {  // SJ_STEPS steps per pass, all > 0
        SJ_PREFETCH_PASS(gs_seq, t - SJ_STEPS);  // the rows of the next pass (h: one step earlier)
        SJ_PREFETCH_PASS(gh_seq, t - SJ_STEPS);
        SJ_PREFETCH_PASS(h_seq, t - SJ_STEPS - 1);
        if (params) SJ_PREFETCH_PASS(iprev_seq, t - SJ_STEPS);
        const sj_index row = (sj_index)t * N + sj_n0;
        SJ_FOR_LANES(j) {
            const sj_index n = sj_n0 + j;
            acc_t dv_ = dv[j], di_ = di[j], h_ = h[j], glam_ = glam[j], ggam_ = ggam[j];
            SJ_FOR_STEPS(u, SJ_STEPS) {
                const sj_index k = row + j - u * N;
                sj_narrow(SJ_OUT_STEP_AT(dx_rows, dx_seq, k, j, u),
                          culif_lane_backward(dv_, di_, h_, glam_, ggam_, lm[j], gm[j], false, params, t - u, n, k, N,
                                              gs_seq, gh_seq, h_seq, v0, iprev_seq, theta, zo_keys, law));
            }
            dv[j] = dv_, di[j] = di_, h[j] = h_, glam[j] = glam_, ggam[j] = ggam_;
        }
        SJ_OUT_FLUSH_STEPS(dx_rows, dx_seq, row, -N, SJ_STEPS);
    }
    for (; t >= 0; --t) {  // the steps left, one per pass (t = 0: the step before is the initial state)
        const sj_index row = (sj_index)t * N + sj_n0;
        SJ_FOR_LANES(j) {
            const sj_index n = sj_n0 + j;
            const sj_index k = row + j;
            sj_narrow(SJ_OUT_STEP_AT(dx_rows, dx_seq, k, j, 0),
                      culif_lane_backward(dv[j], di[j], h[j], glam[j], ggam[j], lm[j], gm[j], t == 0, params, t, n, k, N,
                                          gs_seq, gh_seq, h_seq, v0, iprev_seq, theta, zo_keys, law));
        }
        SJ_OUT_FLUSH_STEPS(dx_rows, dx_seq, row, -N, 1);
    }
    SJ_FOR_LANES(j) {
        const sj_index n = sj_n0 + j;
        sj_narrow(dv0 + n, dv[j]);
        sj_narrow(di0 + n, di[j]);
        if (params) {
            dlam_part[n] = glam[j];
            dgam_part[n] = ggam[j];
        }
    }
}
}  // namespace SJ_NS

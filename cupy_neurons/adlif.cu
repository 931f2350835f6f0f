// AdLIF multi-step forward and backward (time-major [T, N], one thread per neuron on the GPU; a chunk
// of neurons per call, vectorised, on the CPU: SJ_LANES_BEGIN / SJ_FOR_LANES of common.cuh).
//
// Rendered by cupy_neurons/build.py (SJ_SCALAR, SJ_ACC, SJ_SURROGATE, SJ_NS, SJ_NAME,
// SJ_DETACH_RESET, SJ_LOCALZO: 1 = the spike derivative g is the LocalZO estimate, see spike_grad).
// Parameters alpha, beta, a, b are SJ_ACC arrays of P entries (neuron n uses entry n % P).
// States: v (post reset), w (adaptation), and the previous step's h and s.
//
// Forward, one step:
//     h_t = alpha v_{t-1} + (1 - alpha) (x_t - w_{t-1})
//     w_t = beta w_{t-1} + a h_{t-1} + b s_{t-1}
//     s_t = H(h_t - theta)        (h_t as stored in SJ_SCALAR)
//     v_t = h_t (1 - s_t)
// Backward, reverse time, carrying cv = dL/dv_t, cw = dL/dw_t, and the parts of dL/dh_t, dL/ds_t
// that come from w_{t+1} (ch = a dL/dw_{t+1}, cs = b dL/dw_{t+1}):
//     dh_t = gh_t + ch + (gs_t + cs) g_t + cv (1 - s_t)  [ - cv h_t g_t without detach ],  g_t = g(h_t - theta)
//     dx_t = (1 - alpha) dh_t
//     cv <- alpha dh_t;  cw <- (alpha - 1) dh_t + beta cw;  ch <- a cw_t;  cs <- b cw_t
//     dalpha += (v_{t-1} - x_t + w_{t-1}) dh_t;  dbeta += w_{t-1} cw_t;
//     da += h_{t-1} cw_t;  db += s_{t-1} cw_t            (cw_t = dL/dw_t before the update)
#include "sparse/localzo.cuh"

namespace SJ_NS {
typedef SJ_SCALAR scalar_t;
typedef SJ_ACC acc_t;

#include "spike_grad.cuh"

// One forward step: updates v, w, h_prev, s_prev (h_prev, s_prev become h_t, s_t).
SJ_HD void adlif_step_forward(const acc_t x, const acc_t alpha, const acc_t beta, const acc_t a, const acc_t b,
                              const acc_t theta, acc_t& v, acc_t& w, acc_t& h_prev, acc_t& s_prev) {
    const acc_t h = alpha * v + ((acc_t)1 - alpha) * (x - w);
    w = beta * w + a * h_prev + b * s_prev;
    const acc_t s = heaviside(sj_round_to<scalar_t>(h) - theta);
    v = h * ((acc_t)1 - s);
    h_prev = h;
    s_prev = s;
}

// One backward step with the spike derivative sg = g_t: returns dh_t, updates the carries
// (cv, cw, ch, cs) to step t-1.
SJ_HD acc_t adlif_step_backward(const acc_t gs, const acc_t gh, const acc_t h, const acc_t sg, const acc_t alpha,
                                const acc_t beta, const acc_t a, const acc_t b, const acc_t theta,
                                acc_t& cv, acc_t& cw, acc_t& ch, acc_t& cs) {
    const acc_t s = heaviside(h - theta);
    acc_t dh = gh + ch + (gs + cs) * sg + cv * ((acc_t)1 - s);
#if !SJ_DETACH_RESET
    dh -= cv * h * sg;
#endif
    const acc_t dw = cw;
    cv = alpha * dh;
    cw = (alpha - (acc_t)1) * dh + beta * dw;
    ch = a * dw;
    cs = b * dw;
    return dh;
}

// x_seq [T, N]; v0, w0, h0, s0 [N] (h0, s0: the step before the first); alpha, beta, a, b [P].
// Outputs s_seq, h_seq [T, N]; v_last, w_last [N]; wprev_seq [T, N] (w_{t-1}; may be null).
// Neurons n = sj_n0 + j of the thread's lanes (common.cuh: one on the GPU, a vector chunk on the CPU).
extern "C" __global__ void SJ_NAME(adlif_forward)(
    const scalar_t* __restrict__ x_seq, const scalar_t* __restrict__ v0, const scalar_t* __restrict__ w0,
    const scalar_t* __restrict__ h0, const scalar_t* __restrict__ s0,
    const acc_t* __restrict__ alpha, const acc_t* __restrict__ beta, const acc_t* __restrict__ a,
    const acc_t* __restrict__ b, const acc_t theta, const int T, const sj_index N, const sj_index P,
    scalar_t* __restrict__ s_seq, scalar_t* __restrict__ h_seq, scalar_t* __restrict__ v_last,
    scalar_t* __restrict__ w_last, scalar_t* __restrict__ wprev_seq) {
    SJ_LANES_BEGIN(N);
    acc_t al[SJ_MAX_LANES], be[SJ_MAX_LANES], aa[SJ_MAX_LANES], bb[SJ_MAX_LANES];
    acc_t v[SJ_MAX_LANES], w[SJ_MAX_LANES], h[SJ_MAX_LANES], s[SJ_MAX_LANES];
    sj_lane_params(al, alpha, sj_n0, sj_lanes, P);
    sj_lane_params(be, beta, sj_n0, sj_lanes, P);
    sj_lane_params(aa, a, sj_n0, sj_lanes, P);
    sj_lane_params(bb, b, sj_n0, sj_lanes, P);
    SJ_FOR_LANES(j) {
        const sj_index n = sj_n0 + j;
        v[j] = sj_widen(v0[n]);
        w[j] = sj_widen(w0[n]);
        h[j] = sj_widen(h0[n]);
        s[j] = sj_widen(s0[n]);
    }
    SJ_OUT_ROW(scalar_t, wprev_row);
    SJ_OUT_ROW(scalar_t, h_row);
    SJ_OUT_ROW(scalar_t, s_row);
    for (int t = 0; t < T; ++t) {
        if (t + 1 < T) SJ_PREFETCH_ROW(x_seq, (sj_index)(t + 1) * N + sj_n0);  // the next step's input
        const sj_index row = (sj_index)t * N + sj_n0;
        SJ_FOR_LANES(j) {
            const sj_index k = row + j;
            if (wprev_seq) sj_narrow(SJ_OUT_AT(wprev_row, wprev_seq, k, j), w[j]);
            adlif_step_forward(sj_widen(x_seq[k]), al[j], be[j], aa[j], bb[j], theta, v[j], w[j], h[j], s[j]);
            sj_narrow(SJ_OUT_AT(h_row, h_seq, k, j), h[j]);
            sj_narrow(SJ_OUT_AT(s_row, s_seq, k, j), s[j]);
        }
        SJ_OUT_FLUSH(wprev_row, wprev_seq, row);
        SJ_OUT_FLUSH(h_row, h_seq, row);
        SJ_OUT_FLUSH(s_row, s_seq, row);
    }
    SJ_FOR_LANES(j) {
        sj_narrow(v_last + sj_n0 + j, v[j]);
        sj_narrow(w_last + sj_n0 + j, w[j]);
    }
}

// Backward step t of one neuron n (element k = t N + n). Its state, by reference, moves from step t to step t - 1:
// the carries of adlif_step_backward (cv = dL/dv_t, cw = dL/dw_t, ch, cs: the parts a dL/dw_{t+1}, b dL/dw_{t+1}),
// h = h_t (loaded one step ahead) and the parameter-gradient sums gal, gbe, ga, gb. Reads gs, gh (null: 0) and h_{t-1}
// at k; with `params` also x_t, w_{t-1} and the step before t: h_{t-1}, or the initial states h0, s0, v0 when `first`
// (t = 0). Returns dx_t. Scalars by reference rather than a struct: GCC vectorises the lane loops that call it only
// so (an aggregate in an `omp simd` loop becomes an array of structs).
SJ_HD acc_t adlif_lane_backward(acc_t& cv, acc_t& cw, acc_t& ch, acc_t& cs, acc_t& h, acc_t& gal, acc_t& gbe, acc_t& ga,
                                acc_t& gb, const acc_t alpha, const acc_t beta, const acc_t a, const acc_t b,
                                const bool first, const bool params, const int t, const sj_index n, const sj_index k, const sj_index N,
                                const scalar_t* __restrict__ gs_seq, const scalar_t* __restrict__ gh_seq,
                                const scalar_t* __restrict__ h_seq, const scalar_t* __restrict__ x_seq,
                                const scalar_t* __restrict__ wprev_seq, const scalar_t* __restrict__ v0,
                                const scalar_t* __restrict__ h0, const scalar_t* __restrict__ s0, const acc_t theta,
                                const long long* __restrict__ zo_keys, const sj_localzo_law& law) {
    const acc_t h_next = first ? (acc_t)0 : sj_widen(h_seq[k - N]);  // h_{t-1}
    const acc_t dw = cw;  // dL/dw_t
    const acc_t sg = spike_grad(h - theta, n, t, zo_keys, law);
    const acc_t dh = adlif_step_backward(sj_load_or_zero(gs_seq, k), sj_load_or_zero(gh_seq, k), h, sg, alpha, beta, a,
                                         b, theta, cv, cw, ch, cs);
    if (params) {
        acc_t h_prev, s_prev, v_prev;
        if (!first) {
            h_prev = h_next;
            s_prev = heaviside(h_prev - theta);
            v_prev = h_prev * ((acc_t)1 - s_prev);
        } else {
            h_prev = sj_widen(h0[n]);
            s_prev = sj_widen(s0[n]);
            v_prev = sj_widen(v0[n]);
        }
        const acc_t w_prev = sj_widen(wprev_seq[k]);
        gal += (v_prev - sj_widen(x_seq[k]) + w_prev) * dh;
        gbe += w_prev * dw;
        ga += h_prev * dw;
        gb += s_prev * dw;
    }
    h = h_next;
    return ((acc_t)1 - alpha) * dh;
}

// Gradients of the outputs gs_seq, gh_seq [T, N], gv_last, gw_last [N] (each may be null = 0).
// Saved: h_seq [T, N]; for parameter gradients also x_seq, wprev_seq [T, N] and v0, h0, s0 [N].
// Outputs dx_seq [T, N]; dv0, dw0, dh0, ds0 [N]; dalpha_part, dbeta_part, da_part, db_part [N]
// (all four null: no parameter gradients). LocalZO (SJ_LOCALZO = 1 only): zo_keys [T] and the law.
// SJ_STEPS steps per pass over the lanes while they are all > 0, then one (common.cuh).
extern "C" __global__ void SJ_NAME(adlif_backward)(
    const scalar_t* __restrict__ gs_seq, const scalar_t* __restrict__ gh_seq,
    const scalar_t* __restrict__ gv_last, const scalar_t* __restrict__ gw_last,
    const scalar_t* __restrict__ h_seq, const scalar_t* __restrict__ x_seq, const scalar_t* __restrict__ wprev_seq,
    const scalar_t* __restrict__ v0, const scalar_t* __restrict__ h0, const scalar_t* __restrict__ s0,
    const acc_t* __restrict__ alpha, const acc_t* __restrict__ beta, const acc_t* __restrict__ a,
    const acc_t* __restrict__ b, const acc_t theta, const int T, const sj_index N, const sj_index P, SJ_ZO_PARAMS,
    scalar_t* __restrict__ dx_seq, scalar_t* __restrict__ dv0, scalar_t* __restrict__ dw0,
    scalar_t* __restrict__ dh0, scalar_t* __restrict__ ds0,
    acc_t* __restrict__ dalpha_part, acc_t* __restrict__ dbeta_part, acc_t* __restrict__ da_part,
    acc_t* __restrict__ db_part) {
    SJ_LANES_BEGIN(N);
    const bool params = dalpha_part != nullptr;
    const sj_localzo_law law = SJ_ZO_LAW();
    acc_t al[SJ_MAX_LANES], be[SJ_MAX_LANES], aa[SJ_MAX_LANES], bb[SJ_MAX_LANES];
    acc_t cv[SJ_MAX_LANES], cw[SJ_MAX_LANES], ch[SJ_MAX_LANES], cs[SJ_MAX_LANES], h[SJ_MAX_LANES];
    acc_t gal[SJ_MAX_LANES], gbe[SJ_MAX_LANES], ga[SJ_MAX_LANES], gb[SJ_MAX_LANES];
    sj_lane_params(al, alpha, sj_n0, sj_lanes, P);
    sj_lane_params(be, beta, sj_n0, sj_lanes, P);
    sj_lane_params(aa, a, sj_n0, sj_lanes, P);
    sj_lane_params(bb, b, sj_n0, sj_lanes, P);
    SJ_FOR_LANES(j) {
        const sj_index n = sj_n0 + j;
        cv[j] = sj_load_or_zero(gv_last, n);
        cw[j] = sj_load_or_zero(gw_last, n);
        ch[j] = (acc_t)0;
        cs[j] = (acc_t)0;
        gal[j] = (acc_t)0;
        gbe[j] = (acc_t)0;
        ga[j] = (acc_t)0;
        gb[j] = (acc_t)0;
        // each h element is loaded once: h_{t-1} is read at step t and carried to step t-1
        h[j] = T > 0 ? sj_widen(h_seq[(sj_index)(T - 1) * N + n]) : (acc_t)0;
    }
    SJ_OUT_ROWS(scalar_t, dx_rows);
    int t = T - 1;
    for (; t >= SJ_STEPS; t -= SJ_STEPS) {  // SJ_STEPS steps per pass, all > 0
        SJ_PREFETCH_PASS(gs_seq, t - SJ_STEPS);  // the rows of the next pass (h: one step earlier)
        SJ_PREFETCH_PASS(gh_seq, t - SJ_STEPS);
        SJ_PREFETCH_PASS(h_seq, t - SJ_STEPS - 1);
        if (params) {
            SJ_PREFETCH_PASS(x_seq, t - SJ_STEPS);
            SJ_PREFETCH_PASS(wprev_seq, t - SJ_STEPS);
        }
        const sj_index row = (sj_index)t * N + sj_n0;
        SJ_FOR_LANES(j) {
            const sj_index n = sj_n0 + j;
            acc_t cv_ = cv[j], cw_ = cw[j], ch_ = ch[j], cs_ = cs[j], h_ = h[j];
            acc_t gal_ = gal[j], gbe_ = gbe[j], ga_ = ga[j], gb_ = gb[j];
            SJ_FOR_STEPS(u, SJ_STEPS) {
                const sj_index k = row + j - u * N;
                sj_narrow(SJ_OUT_STEP_AT(dx_rows, dx_seq, k, j, u),
                          adlif_lane_backward(cv_, cw_, ch_, cs_, h_, gal_, gbe_, ga_, gb_, al[j], be[j], aa[j], bb[j], false, params, t - u, n, k, N, gs_seq, gh_seq, h_seq, x_seq,
                                              wprev_seq, v0, h0, s0, theta, zo_keys, law));
            }
            cv[j] = cv_, cw[j] = cw_, ch[j] = ch_, cs[j] = cs_, h[j] = h_;
            gal[j] = gal_, gbe[j] = gbe_, ga[j] = ga_, gb[j] = gb_;
        }
        SJ_OUT_FLUSH_STEPS(dx_rows, dx_seq, row, -N, SJ_STEPS);
    }
    for (; t >= 0; --t) {  // the steps left, one per pass (t = 0: the step before is the initial state)
        const sj_index row = (sj_index)t * N + sj_n0;
        SJ_FOR_LANES(j) {
            const sj_index n = sj_n0 + j;
            const sj_index k = row + j;
            sj_narrow(SJ_OUT_STEP_AT(dx_rows, dx_seq, k, j, 0),
                      adlif_lane_backward(cv[j], cw[j], ch[j], cs[j], h[j], gal[j], gbe[j], ga[j], gb[j], al[j], be[j], aa[j],
                                          bb[j], t == 0, params, t, n, k, N, gs_seq, gh_seq, h_seq, x_seq, wprev_seq,
                                          v0, h0, s0, theta, zo_keys, law));
        }
        SJ_OUT_FLUSH_STEPS(dx_rows, dx_seq, row, -N, 1);
    }
    SJ_FOR_LANES(j) {
        const sj_index n = sj_n0 + j;
        sj_narrow(dv0 + n, cv[j]);
        sj_narrow(dw0 + n, cw[j]);
        sj_narrow(dh0 + n, ch[j]);
        sj_narrow(ds0 + n, cs[j]);
        if (params) {
            dalpha_part[n] = gal[j];
            dbeta_part[n] = gbe[j];
            da_part[n] = ga[j];
            db_part[n] = gb[j];
        }
    }
}
}  // namespace SJ_NS

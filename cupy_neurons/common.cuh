// Common helpers of the sjframe neuron kernels (CUDA C, also compiled as host C++ via host_shim.h).
//
// Storage types: float, double, sj_half (IEEE binary16 bits) and sj_bf16 (bfloat16 bits). The
// 16-bit types are plain 2-byte structs so that no CUDA header is needed (NVRTC and g++ alike);
// arithmetic always happens in the accumulation type (float, or double for double storage):
//   sj_widen(x)        storage -> accumulation type
//   sj_narrow(&out, v) accumulation -> storage, round to nearest even
// Surrogate helpers used by Surrogate.cuda_expr(): sj_sq, sj_sigmoid, sj_max0.
#ifndef SJ_COMMON_CUH
#define SJ_COMMON_CUH

#define SJ_HD __host__ __device__ __forceinline__
#define SJ_CAT_(a, b) a##b
#define SJ_CAT(a, b) SJ_CAT_(a, b)

typedef long long sj_index;

struct sj_half {
    unsigned short bits;
};
struct sj_bf16 {
    unsigned short bits;
};

// ------------------------------------------------------------------ math helpers (surrogates)
SJ_HD float sj_sq(float v) { return v * v; }
SJ_HD double sj_sq(double v) { return v * v; }
SJ_HD float sj_max0(float v) { return v > 0.0f ? v : 0.0f; }
SJ_HD double sj_max0(double v) { return v > 0.0 ? v : 0.0; }
SJ_HD float sj_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }
SJ_HD double sj_sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

// ------------------------------------------------------------------ 16-bit conversions
// binary16 -> float: exact.
SJ_HD float sj_half_bits_to_float(unsigned short h) {
#if defined(__CUDA_ARCH__)
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    const unsigned int sign = ((unsigned int)h & 0x8000u) << 16;
    const unsigned int expo = ((unsigned int)h >> 10) & 0x1fu;
    const unsigned int mant = (unsigned int)h & 0x3ffu;
    if (expo == 0u) {  // zero or subnormal: mant * 2^-24 (exact in float)
        const float mag = (float)mant * 5.9604644775390625e-8f;
        return sign ? -mag : mag;
    }
    if (expo == 31u) {  // inf / nan
        return __uint_as_float(sign | 0x7f800000u | (mant << 13));
    }
    return __uint_as_float(sign | ((expo + 112u) << 23) | (mant << 13));
#endif
}

// float -> binary16 bits, round to nearest even (overflow to inf, NaN kept).
SJ_HD unsigned short sj_float_to_half_bits(float f) {
#if defined(__CUDA_ARCH__)
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#else
    unsigned int u = __float_as_uint(f);
    const unsigned int sign = (u >> 16) & 0x8000u;
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return (unsigned short)(sign | 0x7e00u);  // nan
    if (u >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // >= 65520 (and inf) -> inf
    if (u >= 0x38800000u) {  // normal half range [2^-14, 65520)
        unsigned int r = (u - 0x38000000u) >> 13;
        const unsigned int rem = u & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r += 1u;
        return (unsigned short)(sign | r);
    }
    if (u <= 0x33000000u) return (unsigned short)sign;  // <= 2^-25 rounds to (signed) zero
    // subnormal half: value / 2^-24 = mant * 2^(expo - 126), 14 <= 126 - expo <= 24
    const unsigned int expo = u >> 23;
    const unsigned int mant = (u & 0x7fffffu) | 0x800000u;
    const unsigned int shift = 126u - expo;
    unsigned int r = mant >> shift;
    const unsigned int rem = mant & ((1u << shift) - 1u);
    const unsigned int half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) r += 1u;
    return (unsigned short)(sign | r);
#endif
}

// bfloat16 <-> float (the same integer code on host and device).
SJ_HD float sj_bf16_bits_to_float(unsigned short b) { return __uint_as_float(((unsigned int)b) << 16); }

SJ_HD unsigned short sj_float_to_bf16_bits(float f) {
    const unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);  // quiet nan
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// ------------------------------------------------------------------ storage <-> accumulation
SJ_HD float sj_widen(float v) { return v; }
SJ_HD double sj_widen(double v) { return v; }
SJ_HD float sj_widen(sj_half v) { return sj_half_bits_to_float(v.bits); }
SJ_HD float sj_widen(sj_bf16 v) { return sj_bf16_bits_to_float(v.bits); }

SJ_HD void sj_narrow(float* out, float v) { *out = v; }
SJ_HD void sj_narrow(double* out, double v) { *out = v; }
SJ_HD void sj_narrow(sj_half* out, float v) { out->bits = sj_float_to_half_bits(v); }
SJ_HD void sj_narrow(sj_bf16* out, float v) { out->bits = sj_float_to_bf16_bits(v); }

// Load with a null pointer meaning "zero" (an absent incoming gradient).
template <typename S>
SJ_HD auto sj_load_or_zero(const S* p, sj_index k) -> decltype(sj_widen(*p)) {
    typedef decltype(sj_widen(*p)) A;
    return p ? sj_widen(p[k]) : (A)0;
}

// The value v after a round trip through the storage type S (identity for float / double).
template <typename S, typename A>
SJ_HD A sj_round_to(A v) {
    S tmp;
    sj_narrow(&tmp, v);
    return sj_widen(tmp);
}

// Global thread index of a 1-D launch (one thread per neuron).
SJ_HD sj_index sj_thread_index() { return (sj_index)blockIdx.x * (sj_index)blockDim.x + (sj_index)threadIdx.x; }

// ------------------------------------------------------------------ lanes (the neuron kernels)
// A neuron kernel handles the SJ_MAX_LANES consecutive neurons n = sj_n0 + j, j < sj_lanes, of its thread:
//     SJ_LANES_BEGIN(N);                      // sj_n0, sj_lanes; returns when the thread has no neuron
//     acc_t v[SJ_MAX_LANES];                  // one register per lane
//     for (int t = 0; t < T; ++t) { SJ_FOR_LANES(j) { ... neuron sj_n0 + j at step t ... } }
// On the GPU and in the host check build SJ_MAX_LANES = 1 (one thread per neuron; the one-element arrays
// are registers). The fast CPU build (cupy_neurons/build.py, SJ_CPU_LANES = L) gives each call L neurons:
// the time loop outside, the lanes inside as an `omp simd` loop, so consecutive neurons of one step
// (contiguous in memory) are processed as vectors, with the same per-lane arithmetic.
#if defined(SJ_CPU_LANES)
#define SJ_MAX_LANES SJ_CPU_LANES
#define SJ_FOR_LANES(j) _Pragma("omp simd") for (int j = 0; j < sj_lanes; ++j)
#else
#define SJ_MAX_LANES 1
#define SJ_FOR_LANES(j) for (int j = 0; j < 1; ++j)
#endif
// ------------------------------------------------------------------ write-only [T, N] rows
// A sequence the kernel only writes (s, h, I_{t-1}, w_{t-1} forward; dx backward) is stored through a row:
//     SJ_OUT_ROW(scalar_t, s_row);                             // before the time loop
//     SJ_FOR_LANES(j) { ... sj_narrow(SJ_OUT_AT(s_row, s_seq, k, j), s); }
//     SJ_OUT_FLUSH(s_row, s_seq, row);                         // after the lane loop of step t
// On the GPU and in the host check build this is a plain store to seq + k (the row is not declared and
// the flush does nothing). In the fast CPU build the lanes fill a row buffer (L1-resident) and the flush
// writes it to seq[row .. row + lanes) with non-temporal stores (sj_stream_row, host_shim.h; nothing when
// seq is null): a plain store of write-only data first reads the line from memory (read for ownership),
// a non-temporal one does not, so a forward moves 5 instead of 7 sequences' bytes (LIF, CuLIF).
#if defined(SJ_CPU_LANES) && !defined(SJ_PLAIN_STORES)
#define SJ_OUT_ROW(type, name) type name[SJ_MAX_LANES]
#define SJ_OUT_AT(name, seq, k, j) ((name) + (j))
#define SJ_OUT_FLUSH(name, seq, row) sj_stream_row((seq), (row), (name), sj_lanes)
#else
#define SJ_OUT_ROW(type, name)
#define SJ_OUT_AT(name, seq, k, j) ((seq) + (k))
#define SJ_OUT_FLUSH(name, seq, row) ((void)0)
#endif
// ------------------------------------------------------------------ prefetch (forward kernels)
// SJ_PREFETCH_ROW(seq, row): in the fast CPU build, ask for the lanes' elements seq[row .. row + lanes) ahead of the
// lane loop that reads them; a forward kernel, before the lanes of step t: its input's row of step t + 1. Rows are N
// elements apart, so each row of a call's lanes starts in another 4 KiB page, where the hardware prefetchers stop:
// without it the first loads of every row wait for memory. Nothing on the GPU and in the check build. Measured
// (forward kernels alone, old and new text replayed in one process, T = 100, B = 128, N = 256, 2026-12-04): 5-22 %
// faster at 1 and 2 threads (AdLIF at 2 threads 2.27 -> 1.76 ms, CuLIF 1.36 -> 1.12, LIF 1.14 -> 1.08); one, two
// or four steps ahead alike; into level 2 only, 20-30 % slower. The backward kernels: SJ_PREFETCH_PASS below.
#if defined(SJ_CPU_LANES)
#define SJ_PREFETCH_ROW(seq, row) sj_prefetch_row((seq), (row), sj_lanes)
#else
#define SJ_PREFETCH_ROW(seq, row) ((void)0)
#endif
// ------------------------------------------------------------------ several steps per pass (backward kernels)
// A backward kernel carries each neuron's state (its gradient carries, h_t, the parameter-gradient sums) from step to
// step. With the time loop outside the lanes, that state is a set of lane arrays (level-1 cache) that every step loads
// and stores again. The fast CPU build runs SJ_STEPS steps per pass over the lanes instead: each lane's state is
// loaded into locals (registers), carried through SJ_STEPS steps, and stored once:
//     int t = T - 1;
//     SJ_OUT_ROWS(scalar_t, dx_rows);                 // SJ_STEPS write-only rows (below)
//     for (; t >= SJ_STEPS; t -= SJ_STEPS) {          // steps t, t - 1, ..., t - SJ_STEPS + 1: all > 0
//         SJ_FOR_LANES(j) { state g = lanes[j]; SJ_FOR_STEPS(u, SJ_STEPS) { step t - u; dx to u's row } lanes[j] = g; }
//         SJ_OUT_FLUSH_STEPS(dx_rows, dx_seq, (sj_index)t * N + sj_n0, -N, SJ_STEPS);   // row of step t - u: row - u N
//     }
//     for (; t >= 0; --t) { the same with SJ_FOR_STEPS(u, 1) (step 0 reads the initial states) }
// Each neuron's arithmetic, and its order, is that of one step per pass: only where the state waits between two steps
// changes (measured: the backward kernels 10-30 % faster with 4 steps per pass, bit-identical outputs). SJ_STEPS = 1 on
// the GPU and in the check build, where the state is in registers anyway.
#if defined(SJ_CPU_LANES)
#define SJ_STEPS SJ_CPU_STEPS
#define SJ_FOR_STEPS(u, steps) _Pragma("GCC unroll 16") for (int u = 0; u < (steps); ++u)
#else
#define SJ_STEPS 1
#define SJ_FOR_STEPS(u, steps) for (int u = 0; u < (steps); ++u)
#endif
// SJ_PREFETCH_PASS(seq, t_first): in the fast CPU build, a backward kernel before its pass's lanes asks for the rows its
// next pass reads: the lanes' elements of seq at steps t_first, t_first - 1, ..., t_first - SJ_STEPS + 1 (those >= 0;
// nothing when seq is null), into the level-2 cache. A pass reads SJ_STEPS rows of each input, N elements apart, each
// in other 4 KiB pages, so the hardware prefetchers barely start. Level 2, not level 1 as SJ_PREFETCH_ROW: the next
// pass's rows (16 KiB for AdLIF) likely crowd the current pass's rows and lane arrays out of the 32 KiB level-1 cache
// and hold its miss buffers. Measured (backward kernels alone, old and new text replayed in one process, T = 100,
// B = 128, N = 256, 2026-12-04): 2 threads AdLIF 3.42 -> 2.41 ms, CuLIF 1.71 -> 1.35, LIF 1.16 -> 0.91; 1 thread AdLIF
// 6.23 -> 4.50; into level 1 instead, AdLIF slower than without (6.40 ms); two passes ahead as one. Nothing on the GPU
// and in the check build.
#if defined(SJ_CPU_LANES)
#define SJ_PREFETCH_PASS(seq, t_first) sj_prefetch_pass((seq), (t_first), SJ_STEPS, N, sj_n0, sj_lanes)
#else
#define SJ_PREFETCH_PASS(seq, t_first) ((void)0)
#endif
// The write-only sequence of such a kernel (dx) through SJ_STEPS rows, as SJ_OUT_ROW above: SJ_OUT_STEP_AT(name, seq,
// k, j, u) is where lane j's value of the pass's step u goes (element k); SJ_OUT_FLUSH_STEPS(name, seq, row, stride,
// steps) writes rows 0 .. steps - 1 to seq[row + u stride ...] (the fast CPU build; a plain store elsewhere).
#if defined(SJ_CPU_LANES) && !defined(SJ_PLAIN_STORES)
#define SJ_OUT_ROWS(type, name) type name[SJ_STEPS][SJ_MAX_LANES]
#define SJ_OUT_STEP_AT(name, seq, k, j, u) ((name)[u] + (j))
#define SJ_OUT_FLUSH_STEPS(name, seq, row, stride, steps) \
    for (int sj_u = 0; sj_u < (steps); ++sj_u) sj_stream_row((seq), (row) + sj_u * (stride), (name)[sj_u], sj_lanes)
#else
#define SJ_OUT_ROWS(type, name)
#define SJ_OUT_STEP_AT(name, seq, k, j, u) ((seq) + (k))
#define SJ_OUT_FLUSH_STEPS(name, seq, row, stride, steps) ((void)0)
#endif
// The lanes of a thread: SJ_MAX_LANES on the GPU and in the check build (1); in the fast CPU build the launch's
// lane count sj_host_lanes (host_shim.h, <= SJ_MAX_LANES, chosen per kernel by cupy_neurons/build.py: cpu_lanes).
#if defined(SJ_CPU_LANES)
#define SJ_THREAD_LANES ((sj_index)sj_host_lanes)
#else
#define SJ_THREAD_LANES ((sj_index)SJ_MAX_LANES)
#endif
// The per-neuron parameters of the lanes: dst[j] = src[(sj_n0 + j) % P], j < sj_lanes (P entries: 1 per layer, or one per
// feature). The lanes are consecutive neurons, so the entry steps by one and wraps at P: one division per call, not one
// per lane (in the fast CPU build perf put 5-9 % of a kernel's samples on a 64-bit division per lane and parameter;
// without them the kernels ran 1-5 % faster). On the GPU and in the check build (one lane) it is the plain src[n % P].
template <typename A>
SJ_HD void sj_lane_params(A* __restrict__ dst, const A* __restrict__ src, const sj_index n0, const int lanes,
                          const sj_index P) {
    sj_index p = n0 % P;
    for (int j = 0; j < lanes; ++j) {
        dst[j] = src[p];
        if (++p == P) p = 0;
    }
}
#define SJ_LANES_BEGIN(N)                                                                              \
    const sj_index sj_n0 = sj_thread_index() * SJ_THREAD_LANES;                                        \
    if (sj_n0 >= (N)) return;                                                                          \
    const int sj_lanes = (N) - sj_n0 < SJ_THREAD_LANES ? (int)((N) - sj_n0) : (int)SJ_THREAD_LANES;    \
    (void)sj_lanes

#endif  // SJ_COMMON_CUH

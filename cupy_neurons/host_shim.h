// Host shim: lets the CUDA kernel sources of cupy_neurons/ compile as plain host C++ (g++), so
// that their arithmetic can be checked on a machine without a GPU (DESIGN.md convention 6).
//
// * __global__ / __device__ / __host__ / __forceinline__ / __restrict__ map to host C++.
// * blockIdx, threadIdx, blockDim, gridDim are thread-local variables; sj_host_launch(grid,
//   block, body) runs the body once per (block, thread), sequentially, setting them.
//   Kernels of this package use no shared memory and no __syncthreads, so a sequential run is an
//   exact model of the launch; any __syncthreads use fails to compile on purpose.
// * __float_as_uint / __uint_as_float and atomicAdd (sequential, so a plain add) are provided.
// * SJ_HOST_PARALLEL (the fast CPU build): sj_host_launch_parallel shares the blocks among OpenMP
//   threads, and atomicAdd is an OpenMP atomic.
#ifndef SJ_HOST_SHIM_H
#define SJ_HOST_SHIM_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict

struct sj_dim3 {
    unsigned int x, y, z;
};
static thread_local sj_dim3 threadIdx = {0u, 0u, 0u};
static thread_local sj_dim3 blockIdx = {0u, 0u, 0u};
static thread_local sj_dim3 blockDim = {1u, 1u, 1u};
static thread_local sj_dim3 gridDim = {1u, 1u, 1u};
// Neurons per thread of a lane kernel in the fast build (set by sj_host_launch_parallel; at most SJ_CPU_LANES).
static thread_local int sj_host_lanes = 1;

static inline float __uint_as_float(unsigned int u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    memcpy(&u, &f, sizeof u);
    return u;
}

// atomicAdd: a plain add when blocks run one after another (check build); an OpenMP atomic when the
// fast build (SJ_HOST_PARALLEL) runs blocks on several threads.
#if defined(SJ_HOST_PARALLEL)
#define SJ_HOST_ATOMIC_ADD(T)                        \
    static inline T atomicAdd(T* address, T value) { \
        T old;                                       \
        _Pragma("omp atomic capture") {              \
            old = *address;                          \
            *address += value;                       \
        }                                            \
        return old;                                  \
    }
#else
#define SJ_HOST_ATOMIC_ADD(T)                        \
    static inline T atomicAdd(T* address, T value) { \
        const T old = *address;                      \
        *address = old + value;                      \
        return old;                                  \
    }
#endif
SJ_HOST_ATOMIC_ADD(float)
SJ_HOST_ATOMIC_ADD(double)
SJ_HOST_ATOMIC_ADD(int)
SJ_HOST_ATOMIC_ADD(unsigned long long)
#undef SJ_HOST_ATOMIC_ADD

// Run `body` for every (block, thread) of a 1-D launch <<<grid, block>>>.
template <typename Body>
static inline void sj_host_launch(unsigned int grid, unsigned int block, Body body) {
    gridDim = {grid, 1u, 1u};
    blockDim = {block, 1u, 1u};
    for (unsigned int b = 0; b < grid; ++b) {
        blockIdx = {b, 0u, 0u};
        for (unsigned int t = 0; t < block; ++t) {
            threadIdx = {t, 0u, 0u};
            body();
        }
    }
}

#if defined(SJ_HOST_PARALLEL)
#if defined(__SSE2__)
#include <immintrin.h>
#endif
// Non-temporal row store of the fast build (SJ_OUT_FLUSH of common.cuh): copy n values of buf to
// seq[row .. row + n), the whole vector-aligned part with streaming stores (no read for ownership; the
// widest the build's ISA has), the unaligned head and tail with memcpy. Nothing when seq is null.
// Streaming stores are weakly ordered: sj_store_fence() (in sj_host_launch_parallel) orders them before the
// launch returns.
#if defined(__AVX512F__)
#define SJ_STREAM_BYTES 64
#elif defined(__AVX__)
#define SJ_STREAM_BYTES 32
#elif defined(__SSE2__)
#define SJ_STREAM_BYTES 16
#else
#define SJ_STREAM_BYTES 0
#endif
template <typename S>
static inline void sj_stream_row(S* seq, long long row, const S* buf, int n) {
    if (seq == nullptr || n <= 0) return;
    char* dst = (char*)(seq + row);
    const char* src = (const char*)buf;
    size_t bytes = (size_t)n * sizeof(S);
#if SJ_STREAM_BYTES > 0
    const size_t head = (SJ_STREAM_BYTES - ((uintptr_t)dst % SJ_STREAM_BYTES)) % SJ_STREAM_BYTES;
    if (head >= bytes) {
        memcpy(dst, src, bytes);
        return;
    }
    memcpy(dst, src, head);
    dst += head;
    src += head;
    bytes -= head;
    for (; bytes >= SJ_STREAM_BYTES; bytes -= SJ_STREAM_BYTES, dst += SJ_STREAM_BYTES, src += SJ_STREAM_BYTES) {
#if defined(__AVX512F__)
        _mm512_stream_si512((__m512i*)dst, _mm512_loadu_si512((const void*)src));
#elif defined(__AVX__)
        _mm256_stream_si256((__m256i*)dst, _mm256_loadu_si256((const __m256i*)src));
#else
        _mm_stream_si128((__m128i*)dst, _mm_loadu_si128((const __m128i*)src));
#endif
    }
#endif
    memcpy(dst, src, bytes);
}
// Prefetches of the fast build (SJ_PREFETCH_ROW / SJ_PREFETCH_PASS of common.cuh). A hint: it faults on no address
// and changes no value. All three are always inlined: a prefetch has no side effect, so GCC counts a helper holding
// only prefetches as a `const` function and drops its calls where it does not inline it (it did so in the large
// backward kernels: no prefetcht1 in their code, and no gain, until this attribute).
// sj_prefetch_lines<Locality>: one prefetch for reading per 64-byte line of p[0 .. n) (Locality 3: into every cache
// level, prefetcht0 on x86; 2: into level 2, prefetcht1). (p is a row of a [T, N] tensor, 64-byte aligned where N is a
// multiple of 64 / sizeof(S); otherwise the line of the row's last values may be left out, which costs that line's
// wait and nothing else.)
template <int Locality, typename S>
static inline __attribute__((always_inline)) void sj_prefetch_lines(const S* p, int n) {
    for (int q = 0; q < n; q += (int)(64 / sizeof(S))) __builtin_prefetch(p + q, 0, Locality);
}
// sj_prefetch_row: seq[row .. row + n) into every level (a forward kernel's next input row).
template <typename S>
static inline __attribute__((always_inline)) void sj_prefetch_row(const S* seq, long long row, int n) {
    sj_prefetch_lines<3>(seq + row, n);
}
// sj_prefetch_pass: the rows seq[t N + n0 .. t N + n0 + n) of steps t = t_first, t_first - 1, ..., t_first - steps + 1
// (those >= 0) into level 2 (a backward kernel's next pass); nothing when seq is null.
template <typename S>
static inline __attribute__((always_inline)) void sj_prefetch_pass(const S* seq, long long t_first, int steps,
                                                                   long long N, long long n0, int n) {
    if (seq == nullptr) return;
    for (int u = 0; u < steps && t_first - u >= 0; ++u) sj_prefetch_lines<2>(seq + (t_first - u) * N + n0, n);
}
static inline void sj_store_fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

// The fast CPU build: the blocks of a launch shared by `threads` OpenMP threads (static schedule: each
// thread a contiguous range of blocks, so of neurons), the threads of a block run in turn. The lane
// kernels are launched with one thread per block, `lanes` neurons each (1 <= lanes <= SJ_CPU_LANES, the size
// of their lane arrays; common.cuh). A grid of fewer blocks than `threads` runs on `grid` threads: an idle
// OpenMP thread would still be woken and waited for (on a virtual machine, waking a sleeping core costs more
// than a small layer's whole kernel).
template <typename Body>
static inline void sj_host_launch_parallel(unsigned int grid, unsigned int block, int threads, int lanes, Body body) {
    if ((long long)threads > (long long)grid) threads = grid > 0 ? (int)grid : 1;
#pragma omp parallel num_threads(threads)
    {
        sj_host_lanes = lanes;
#pragma omp for schedule(static)
        for (long long b = 0; b < (long long)grid; ++b) {
            gridDim = {grid, 1u, 1u};
            blockDim = {block, 1u, 1u};
            blockIdx = {(unsigned int)b, 0u, 0u};
            for (unsigned int t = 0; t < block; ++t) {
                threadIdx = {t, 0u, 0u};
                body();
            }
        }
        sj_store_fence();  // this thread's streaming stores (sj_stream_row) done before the barrier
    }
}
#endif

#endif  // SJ_HOST_SHIM_H

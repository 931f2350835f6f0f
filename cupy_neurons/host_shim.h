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
// The fast CPU build: the blocks of a launch shared by `threads` OpenMP threads (static schedule: each
// thread a contiguous range of blocks, so of neurons), the threads of a block run in turn. The lane
// kernels are launched with one thread per block, SJ_CPU_LANES neurons each (common.cuh).
template <typename Body>
static inline void sj_host_launch_parallel(unsigned int grid, unsigned int block, int threads, Body body) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long long b = 0; b < (long long)grid; ++b) {
        gridDim = {grid, 1u, 1u};
        blockDim = {block, 1u, 1u};
        blockIdx = {(unsigned int)b, 0u, 0u};
        for (unsigned int t = 0; t < block; ++t) {
            threadIdx = {t, 0u, 0u};
            body();
        }
    }
}
#endif

#endif  // SJ_HOST_SHIM_H

// Host shim: lets the CUDA kernel sources of cupy_neurons/ compile as plain host C++ (g++), so
// that their arithmetic can be checked on a machine without a GPU (DESIGN.md convention 6).
//
// * __global__ / __device__ / __host__ / __forceinline__ / __restrict__ map to host C++.
// * blockIdx, threadIdx, blockDim, gridDim are thread-local variables; sj_host_launch(grid,
//   block, body) runs the body once per (block, thread), sequentially, setting them.
//   Kernels of this package use no shared memory and no __syncthreads, so a sequential run is an
//   exact model of the launch; any __syncthreads use fails to compile on purpose.
// * __float_as_uint / __uint_as_float and atomicAdd (sequential, so a plain add) are provided.
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

static inline float atomicAdd(float* address, float value) {
    const float old = *address;
    *address = old + value;
    return old;
}
static inline double atomicAdd(double* address, double value) {
    const double old = *address;
    *address = old + value;
    return old;
}
static inline int atomicAdd(int* address, int value) {
    const int old = *address;
    *address = old + value;
    return old;
}
static inline unsigned long long atomicAdd(unsigned long long* address, unsigned long long value) {
    const unsigned long long old = *address;
    *address = old + value;
    return old;
}

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

#endif  // SJ_HOST_SHIM_H

/*===- fake_cuda.h - The kernels of test models for the fake driver -*- C
 *-*-===*
 *
 * libfakecuda.so stands in for libcuda.so.1 in the runtime's tests, on
 * machines without a GPU (MOERT_LIBCUDA points the runtime at it). It exists
 * ONLY to test libmoert's CUDA plumbing (driver loading, contexts, streams,
 * device memory, module loading with the PTX fallback, launches, error
 * reporting): "device" memory is host memory and "kernels" are host
 * functions. It says nothing about real GPUs or moec's generated code.
 *
 * A fixture model's device code is one of the images below, and each kernel
 * K is a host function that the fixture exports as `fake_cuda_kernel_K`; the
 * fake finds it through the library that holds the image (dladdr).
 *
 * Images: a cubin is "FAKECUBIN <arch>" (accepted when <arch> is the fake
 * device's, MOERT_FAKE_CUDA_ARCH, default sm_90, else
 * CUDA_ERROR_NO_BINARY_FOR_GPU); anything else is PTX, accepted unless it
 * contains "fake-jit-error" (then CUDA_ERROR_INVALID_PTX, with a JIT error
 * log).
 *
 * Environment, read at every call:
 *   MOERT_FAKE_CUDA_DEVICES=N     devices the fake reports (default 1)
 *   MOERT_FAKE_CUDA_ARCH=sm_XY    their architecture (default sm_90)
 *   MOERT_FAKE_CUDA_FAIL=NAME=CODE[,NAME=CODE...]
 *                                 every call of entry point NAME (e.g.
 *                                 cuLaunchKernel) fails with CUresult CODE
 *
 * Streams run their work when synchronised, in order, so a runtime that
 * reads a copy before waiting for its stream sees stale data; copies from
 * host memory take their source when enqueued (as the driver does for
 * pageable memory). Calls that need a context fail with
 * CUDA_ERROR_INVALID_CONTEXT unless cuCtxSetCurrent made one current on the
 * calling thread.
 *
 *===----------------------------------------------------------------------===*/
#ifndef MOERT_TEST_FAKE_CUDA_H
#define MOERT_TEST_FAKE_CUDA_H

#include <stdint.h>

/* A kernel: `num_params` parameters of 8 bytes each (pointers, int64,
 * double), and the host function that plays every thread of the grid. */
typedef struct fake_cuda_kernel {
  int32_t num_params;
  void (*body)(void *const *params, const uint32_t grid[3],
               const uint32_t block[3]);
} fake_cuda_kernel;

/* Exported by libfakecuda.so for the tests: device blocks currently
 * allocated, and images loaded from PTX so far. */
typedef int64_t (*fake_cuda_counter_fn)(void);
#define FAKE_CUDA_LIVE_ALLOCATIONS "fake_cuda_live_allocations"
#define FAKE_CUDA_PTX_LOADS "fake_cuda_ptx_loads"

#endif /* MOERT_TEST_FAKE_CUDA_H */

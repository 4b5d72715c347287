/*===- moe_abi.h - The model ABI between moec output and libmoert -*- C -*-===*
 *
 * A model compiled by moec is a shared library (model.so) that exports one
 * symbol, MOE_ABI_QUERY_SYMBOL, of type moe_abi_query_fn. It returns a static,
 * immutable description of the model: its entry points (forward, train_step,
 * ...), each entry point's arguments, and an invoke function per entry point.
 * The runtime (libmoert) dlopen()s the library, calls the query function once,
 * checks abi_version, and from then on talks to the model only through this
 * table. Conversely the model reaches the runtime only through the
 * moe_runtime_services table passed to every invoke call, so model.so needs
 * nothing but libc.
 *
 * Plain C99, no dependencies, shared verbatim by the compiler (which emits
 * data in exactly these layouts) and the runtime.
 *
 * Versioning: MOE_ABI_VERSION changes whenever a layout or a convention in
 * this file changes; the runtime refuses a model with another version.
 *
 *===----------------------------------------------------------------------===*/
#ifndef MOE_ABI_MOE_ABI_H
#define MOE_ABI_MOE_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOE_ABI_VERSION 2u
#define MOE_ABI_QUERY_SYMBOL "moe_abi_query"

/* Extent of a dynamic dimension in moe_abi_arg.shape. */
#define MOE_ABI_DYNAMIC (-1)

/* Element types. Values are stable across ABI versions. */
typedef enum moe_abi_dtype {
  MOE_ABI_F32 = 1,
  MOE_ABI_F16 = 2,
  MOE_ABI_BF16 = 3,
  MOE_ABI_F64 = 4,
  MOE_ABI_I8 = 5,
  MOE_ABI_I32 = 6,
  MOE_ABI_I64 = 7,
  MOE_ABI_BOOL = 8 /* one byte per element, 0 or 1 */
} moe_abi_dtype;

/* What an argument is to the caller. Inputs and parameters are read by the
 * model; outputs and metrics are produced by it. */
typedef enum moe_abi_role {
  MOE_ABI_INPUT = 1,           /* data: token ids, masks, seeds */
  MOE_ABI_PARAMETER = 2,       /* trainable weight, loaded from safetensors */
  MOE_ABI_OUTPUT = 3,          /* result: logits, loss, hidden states */
  MOE_ABI_METRIC = 4,          /* result for monitoring: router losses, load */
  MOE_ABI_GRADIENT = 5,        /* result: gradient of a parameter */
  MOE_ABI_OPTIMIZER_STATE = 6  /* read and written: e.g. AdamW moments */
} moe_abi_role;

/* One argument of an entry point. */
typedef struct moe_abi_arg {
  const char *name;             /* unique within the entry point */
  int32_t role;                 /* moe_abi_role */
  int32_t dtype;                /* moe_abi_dtype */
  int32_t rank;                 /* 0 for scalars */
  const int64_t *shape;         /* rank extents, MOE_ABI_DYNAMIC if dynamic */
  const char *const *dim_names; /* rank entries: the symbol of a dynamic
                                   extent ("batch", "seq", "tokens"), equal
                                   names must have equal extents at run time;
                                   NULL for a static extent */
} moe_abi_arg;

/* A strided view of a tensor: exactly MLIR's ranked memref descriptor for a
 * rank-N memref, { allocated, aligned, offset, sizes[N], strides[N] },
 * followed here by its 2*N int64 entries. Elements live at
 * aligned + (offset + sum_i index_i * strides[i]) * element_size. */
typedef struct moe_abi_memref {
  void *allocated; /* what was allocated (for freeing), may equal aligned */
  void *aligned;   /* base of the elements */
  int64_t offset;  /* in elements */
  int64_t sizes_and_strides[]; /* sizes[rank], then strides[rank] */
} moe_abi_memref;

/* Services the runtime provides to the model during one invoke call. All
 * memory the model returns was obtained from `alloc`; the runtime owns it
 * afterwards. Functions may be called from the model's worker threads.
 * Memory that the model allocates and frees itself also goes through
 * alloc/free, so a runtime may pool or account for it. */
typedef struct moe_runtime_services {
  uint32_t abi_version; /* MOE_ABI_VERSION of the runtime */
  uint32_t struct_size; /* sizeof(moe_runtime_services) of the runtime */
  void *context;        /* passed back to every service */
  /* Returns memory aligned to `alignment` (a power of two, at most 4096),
   * or NULL when out of memory. */
  void *(*alloc)(void *context, size_t bytes, size_t alignment);
  void (*free)(void *context, void *pointer);
  /* Runs body(closure, begin, end) over disjoint chunks covering
   * [0, iterations), possibly on several threads, and returns when all
   * chunks are done. A body never calls parallel_for itself. */
  void (*parallel_for)(void *context, int64_t iterations,
                       void (*body)(void *closure, int64_t begin, int64_t end),
                       void *closure);
  int32_t num_threads; /* workers parallel_for uses, >= 1 */
  /* Where `alloc` places memory, a moe_abi_device. A model refuses services
   * for a device it was not compiled for (MOE_ABI_INVALID_ARGUMENT). */
  int32_t device;
  /* CUDA services: NULL unless device is MOE_ABI_DEVICE_CUDA.
   *
   * Ordering: every launch, copy, alloc and free of one invoke call is
   * enqueued, in call order, on one stream that the runtime chose for the
   * call (alloc and free are stream-ordered), and the runtime waits for that
   * stream once, after invoke returns. The model therefore never
   * synchronises, and never dereferences memory from alloc on the host.
   *
   * Failures (an unknown kernel, a launch the driver rejects) are recorded
   * by the runtime and fail the invoke call with the CUDA error's name; the
   * model does not check for them. */
  /* The kernel `kernel_name` of the model's device code (loaded once per
   * device), or NULL after recording a failure. `kernel_name` is one of the
   * model's kernel_names; the pointer stays valid, so runtimes may key a
   * cache on it. */
  void *(*cuda_function)(void *context, const char *kernel_name);
  /* Enqueues function<<<grid, block, shared_bytes>>>(params...); params is
   * cuLaunchKernel's kernelParams array. Extents are >= 1. */
  void (*cuda_launch)(void *context, void *function, int64_t grid_x,
                      int64_t grid_y, int64_t grid_z, int64_t block_x,
                      int64_t block_y, int64_t block_z, int32_t shared_bytes,
                      void **params);
  /* Enqueues a copy of `bytes` bytes; either side may be host memory (for
   * instance a constant inside model.so) or device memory. */
  void (*cuda_copy)(void *context, void *dst, const void *src, size_t bytes);
} moe_runtime_services;

/* Where memory and computation live. */
typedef enum moe_abi_device {
  MOE_ABI_DEVICE_HOST = 0, /* the CPU: memory the host dereferences */
  MOE_ABI_DEVICE_CUDA = 1  /* an NVIDIA GPU: CUDA device memory */
} moe_abi_device;

/* Status codes of an invoke call. */
typedef enum moe_abi_status {
  MOE_ABI_OK = 0,
  MOE_ABI_OUT_OF_MEMORY = 1,    /* an alloc service call returned NULL */
  MOE_ABI_INVALID_ARGUMENT = 2, /* a shape or value the model cannot take */
  MOE_ABI_INTERNAL = 3
} moe_abi_status;

/* One entry point, e.g. "forward".
 *
 * invoke(args, services): args has num_args entries in the order of `args`;
 * each points to a moe_abi_memref of that argument's rank (rank-0 arguments
 * are memrefs with no sizes and strides). For INPUT, PARAMETER and
 * OPTIMIZER_STATE arguments the caller fills the descriptor and keeps the
 * memory; for OUTPUT, METRIC and GRADIENT arguments the model fills the
 * descriptor. A produced descriptor either owns memory from services->alloc
 * (its `allocated` pointer came from alloc and the caller must release it
 * with services->free) or is a view of memory the caller does not own
 * (for instance a constant inside model.so or an input the result aliases);
 * the caller tells the two apart by remembering what alloc returned.
 *
 * CUDA models (model->device == MOE_ABI_DEVICE_CUDA): every descriptor
 * points to device memory, except rank-0 INPUT arguments, which the model
 * reads on the host and uploads itself where kernels need them (seeds,
 * scalar hyperparameters and the like stay cheap to pass).
 * Returns a moe_abi_status.
 *
 * Thread safety: invoke may be called concurrently from several threads with
 * distinct argument memory; the model keeps no mutable global state. */
typedef struct moe_abi_entry {
  const char *name;
  int32_t num_args;
  const moe_abi_arg *args;
  int32_t (*invoke)(void *const *args, const moe_runtime_services *services);
} moe_abi_entry;

/* The whole model. Static and immutable; valid while the library is
 * loaded. */
typedef struct moe_abi_model {
  uint32_t abi_version;        /* MOE_ABI_VERSION the model was built for */
  uint32_t struct_size;        /* sizeof(moe_abi_model) of the compiler */
  const char *producer;        /* e.g. "moec 0.1.0" */
  const char *target;          /* e.g. "cpu x86_64 znver3" or "cuda sm_90" */
  int32_t num_entries;
  const moe_abi_entry *entries;
  const char *signature_json;  /* the same description as JSON */
  /* Device code of CUDA models; NULL/0 for CPU models. device_blob is a
   * cubin for device_arch (NULL when moec had no ptxas); device_ptx, always
   * present, is the PTX it was assembled from, which the driver compiles for
   * GPUs the cubin does not run on. kernel_names lists every kernel. */
  const void *device_blob;
  uint64_t device_blob_size;
  int32_t num_kernels;
  const char *const *kernel_names;
  const char *device_ptx;  /* NUL-terminated PTX text */
  const char *device_arch; /* e.g. "sm_90" */
  int32_t device;          /* moe_abi_device the model runs on */
} moe_abi_model;

typedef const moe_abi_model *(*moe_abi_query_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* MOE_ABI_MOE_ABI_H */

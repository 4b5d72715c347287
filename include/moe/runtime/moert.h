/*===- moert.h - The moert runtime C API --------------------------*- C -*-===*
 *
 * libmoert loads a model compiled by moec (model.so, see moe/abi/moe_abi.h),
 * holds its parameters and runs its entry points on the CPU or, for models
 * compiled with `moec --target=cuda`, on an NVIDIA GPU (see "Devices").
 *
 * Conventions, true for every function below unless its comment says
 * otherwise:
 *
 * Errors. A function that can fail returns `moe_status *`: NULL means
 * success; anything else is an error object the caller owns and frees with
 * moe_status_free(). Its message names the file, argument or tensor that is
 * wrong and what is wrong with it. On error, out-parameters are left
 * untouched. No function throws or aborts on bad input.
 *
 * Handles. moe_model, moe_session, moe_tensor and moe_tensor_list are
 * reference counted. A function that hands out a handle through an
 * out-parameter (`**out`) gives the caller one reference, which the caller
 * drops with the matching *_release(). *_retain() adds a reference.
 * Releasing NULL is a no-op. Functions that return a handle as their result
 * (moe_tensor_list_get, moe_session_get_model, ...) return a borrowed
 * pointer, valid as long as its owner is; retain it to keep it longer.
 * Strings returned by the API are owned by the object they come from.
 * Functions that return a value rather than a status (getters) require
 * non-NULL handles; functions that return a status report NULL arguments.
 *
 * Thread safety. Retain and release are atomic for every handle type and may
 * be called from any thread. Models are immutable after loading: every
 * moe_model_* query is safe from any number of threads. Sessions are fully
 * thread-safe (see moe_session_run). Tensors and tensor lists are not
 * synchronised: concurrent reads are safe, but a thread that modifies one
 * (moe_tensor_data writes, moe_tensor_fill_*, moe_tensor_list_add) must not
 * race with any other use of it.
 *
 *===----------------------------------------------------------------------===*/
#ifndef MOE_RUNTIME_MOERT_H
#define MOE_RUNTIME_MOERT_H

#include "moe/abi/moe_abi.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define MOERT_API __attribute__((visibility("default")))
#else
#define MOERT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this runtime, e.g. "0.1.0". Static string. */
MOERT_API const char *moe_runtime_version(void);

/*===------------------------------ Status ------------------------------===*/

typedef struct moe_status moe_status;

typedef enum moe_status_code {
  MOE_STATUS_OK = 0,                 /* never carried by a status object */
  MOE_STATUS_INVALID_ARGUMENT = 1,   /* NULL pointer, unknown name, wrong
                                        dtype or shape, bad option */
  MOE_STATUS_NOT_FOUND = 2,          /* a file does not exist */
  MOE_STATUS_IO_ERROR = 3,           /* reading or writing a file failed */
  MOE_STATUS_INVALID_FILE = 4,       /* a malformed file: not ELF, truncated,
                                        bad safetensors or npy contents */
  MOE_STATUS_INCOMPATIBLE_MODEL = 5, /* not a moec model, another ABI
                                        version, invalid ABI tables */
  MOE_STATUS_MODEL_FAILED = 6,       /* invoke returned MOE_ABI_INTERNAL,
                                        misused a service or produced
                                        malformed results (a model returning
                                        MOE_ABI_INVALID_ARGUMENT or
                                        MOE_ABI_OUT_OF_MEMORY gives
                                        INVALID_ARGUMENT / OUT_OF_MEMORY) */
  MOE_STATUS_OUT_OF_MEMORY = 7,
  MOE_STATUS_UNSUPPORTED = 8, /* well-formed input this runtime cannot
                                 handle yet (Fortran-order npy) */
  MOE_STATUS_INTERNAL = 9,
  MOE_STATUS_NON_FINITE = 10,  /* a NaN or infinity where training needs
                                  finite values: a gradient, a loss (see
                                  moert_train.h) */
  MOE_STATUS_DEVICE_ERROR = 11 /* the CUDA driver is missing or failed: no
                                  device, a bad ordinal, a refused module, a
                                  failed launch or copy; the message names
                                  the operation and the CUDA error
                                  (CUDA_ERROR_...) */
} moe_status_code;

/* Code of a status; MOE_STATUS_OK for NULL. */
MOERT_API moe_status_code moe_status_get_code(const moe_status *status);
/* Message of a status, owned by it; "" for NULL. */
MOERT_API const char *moe_status_get_message(const moe_status *status);
/* Frees a status. NULL is a no-op. */
MOERT_API void moe_status_free(moe_status *status);
/* Static name of a code, e.g. "invalid argument"; "unknown" if invalid. */
MOERT_API const char *moe_status_code_name(moe_status_code code);

/*===------------------------- Types and roles --------------------------===*/

/* Element types: the ABI's, plus U8, which models cannot declare but npy and
 * safetensors files carry (images, byte data). */
typedef enum moe_dtype {
  MOE_F32 = MOE_ABI_F32,
  MOE_F16 = MOE_ABI_F16,
  MOE_BF16 = MOE_ABI_BF16,
  MOE_F64 = MOE_ABI_F64,
  MOE_I8 = MOE_ABI_I8,
  MOE_I32 = MOE_ABI_I32,
  MOE_I64 = MOE_ABI_I64,
  MOE_BOOL = MOE_ABI_BOOL, /* one byte, 0 or 1 */
  MOE_U8 = 64              /* runtime only: far from the ABI's numbering */
} moe_dtype;

typedef enum moe_role {
  MOE_ROLE_INPUT = MOE_ABI_INPUT,
  MOE_ROLE_PARAMETER = MOE_ABI_PARAMETER,
  MOE_ROLE_OUTPUT = MOE_ABI_OUTPUT,
  MOE_ROLE_METRIC = MOE_ABI_METRIC,
  MOE_ROLE_GRADIENT = MOE_ABI_GRADIENT,
  MOE_ROLE_OPTIMIZER_STATE = MOE_ABI_OPTIMIZER_STATE
} moe_role;

/* Size of one element in bytes; 0 for an invalid dtype. */
MOERT_API size_t moe_dtype_size(moe_dtype dtype);
/* Static lower-case name ("f32", "bf16", "bool", "u8"); NULL if invalid. */
MOERT_API const char *moe_dtype_name(moe_dtype dtype);
/* Static name ("input", "parameter", ...); NULL if invalid. */
MOERT_API const char *moe_role_name(moe_role role);

/* Largest rank of a tensor or model argument. */
#define MOE_MAX_RANK 16
/* Extent of a dynamic dimension in moe_arg_info.shape. */
#define MOE_DYNAMIC MOE_ABI_DYNAMIC

/*===------------------------------ Tensors -----------------------------===*/

/* A dense row-major (C order) array. Either owned (its memory lives as long
 * as the tensor) or a view (it borrows caller memory, which must outlive
 * it). */
typedef struct moe_tensor moe_tensor;

/* New owned tensor filled with zeros; data is 64-byte aligned. `shape` has
 * `rank` extents, each >= 0 (it may be NULL when rank is 0). */
MOERT_API moe_status *moe_tensor_create(moe_dtype dtype, int32_t rank,
                                        const int64_t *shape, moe_tensor **out);
/* New owned tensor holding a copy of `data`; `byte_size` must equal the
 * tensor's size in bytes. */
MOERT_API moe_status *moe_tensor_create_copy(moe_dtype dtype, int32_t rank,
                                             const int64_t *shape,
                                             const void *data, size_t byte_size,
                                             moe_tensor **out);
/* New view of caller memory, which must stay valid and be aligned to the
 * element size; `byte_size` must equal the tensor's size in bytes. The
 * runtime never frees `data`. */
MOERT_API moe_status *moe_tensor_create_view(moe_dtype dtype, int32_t rank,
                                             const int64_t *shape, void *data,
                                             size_t byte_size,
                                             moe_tensor **out);
MOERT_API void moe_tensor_retain(moe_tensor *tensor);
MOERT_API void moe_tensor_release(moe_tensor *tensor);

MOERT_API moe_dtype moe_tensor_dtype(const moe_tensor *tensor);
MOERT_API int32_t moe_tensor_rank(const moe_tensor *tensor);
/* `rank` extents, owned by the tensor (NULL for rank 0). */
MOERT_API const int64_t *moe_tensor_shape(const moe_tensor *tensor);
MOERT_API int64_t moe_tensor_num_elements(const moe_tensor *tensor);
MOERT_API size_t moe_tensor_byte_size(const moe_tensor *tensor);
/* The elements, contiguous in C order. Writable; not synchronised. */
MOERT_API void *moe_tensor_data(const moe_tensor *tensor);
/* 1 for a view of caller memory, 0 for an owned tensor. */
MOERT_API int moe_tensor_is_view(const moe_tensor *tensor);

/* New owned tensor with the elements of `tensor` converted to `dtype`.
 * Allowed: anything to a floating type (round to nearest even; bool is 0/1);
 * integer or bool to integer or bool, failing if a value does not fit (bool
 * takes only 0 and 1). Floating to integer is refused (it would truncate). */
MOERT_API moe_status *moe_tensor_cast(const moe_tensor *tensor, moe_dtype dtype,
                                      moe_tensor **out);

/* Fills a floating-point tensor with normal(mean, stddev) samples. The
 * values depend only on (seed, number of elements), not on the platform's
 * C++ library. */
MOERT_API moe_status *moe_tensor_fill_normal(moe_tensor *tensor, uint64_t seed,
                                             double mean, double stddev);
/* Fills an integer or bool tensor with integers drawn uniformly from
 * [low, high), which must fit the dtype. */
MOERT_API moe_status *moe_tensor_fill_uniform_int(moe_tensor *tensor,
                                                  uint64_t seed, int64_t low,
                                                  int64_t high);

/*===--------------------------- Tensor lists ---------------------------===*/

/* An ordered list of uniquely named tensors: named inputs and outputs of a
 * run, the contents of a safetensors file. */
typedef struct moe_tensor_list moe_tensor_list;

MOERT_API moe_status *moe_tensor_list_create(moe_tensor_list **out);
MOERT_API void moe_tensor_list_retain(moe_tensor_list *list);
MOERT_API void moe_tensor_list_release(moe_tensor_list *list);
/* Appends `tensor` under `name` (copied) and retains the tensor; fails if
 * the name is empty or already present. */
MOERT_API moe_status *moe_tensor_list_add(moe_tensor_list *list,
                                          const char *name, moe_tensor *tensor);
MOERT_API int32_t moe_tensor_list_size(const moe_tensor_list *list);
/* Name / tensor at `index`; NULL if out of range. Borrowed. */
MOERT_API const char *moe_tensor_list_name(const moe_tensor_list *list,
                                           int32_t index);
MOERT_API moe_tensor *moe_tensor_list_get(const moe_tensor_list *list,
                                          int32_t index);
/* Tensor called `name`; NULL if absent. Borrowed. */
MOERT_API moe_tensor *moe_tensor_list_find(const moe_tensor_list *list,
                                           const char *name);

/*===------------------------------- Files ------------------------------===*/

/* Reads every tensor of a safetensors file into owned tensors, in file
 * order. The header is validated in full (see docs/runtime.md). */
MOERT_API moe_status *moe_safetensors_read(const char *path,
                                           moe_tensor_list **out);
/* Writes `tensors` as a safetensors file, atomically: a temporary file in
 * the same directory is written, fsync'ed and renamed over `path`, so
 * `path` is either untouched or complete. */
MOERT_API moe_status *moe_safetensors_write(const char *path,
                                            const moe_tensor_list *tensors);
/* Reads a .npy file (format 1.0, 2.0 or 3.0, C order, little-endian f32,
 * f16, f64, i8, i32, i64, u8 or bool) into an owned tensor. */
MOERT_API moe_status *moe_npy_read(const char *path, moe_tensor **out);
/* Writes a tensor as .npy (format 1.0, C order, little-endian),
 * atomically. bf16 has no npy type and is refused: cast to f32 first. */
MOERT_API moe_status *moe_npy_write(const char *path, const moe_tensor *tensor);

/*===------------------------------ Devices -----------------------------===*/

/* Where a model runs. The model's compiled target decides: a model compiled
 * for the CPU runs only on the CPU, one compiled with `moec --target=cuda`
 * only on a CUDA device. */
typedef enum moe_device {
  MOE_DEVICE_CPU = MOE_ABI_DEVICE_HOST,
  MOE_DEVICE_CUDA = MOE_ABI_DEVICE_CUDA
} moe_device;

/* Static name: "cpu" or "cuda"; NULL if invalid. */
MOERT_API const char *moe_device_name(moe_device device);

/*===------------------------------- Models -----------------------------===*/

typedef struct moe_model moe_model;

/* One argument of an entry point, as declared by the model. */
typedef struct moe_arg_info {
  const char *name;
  moe_role role;
  moe_dtype dtype;
  int32_t rank;
  const int64_t *shape;         /* rank extents, MOE_DYNAMIC if dynamic;
                                   NULL for rank 0 */
  const char *const *dim_names; /* rank entries: the extent's symbol
                                   (extents with one symbol are equal at
                                   run time), NULL when it has none; the
                                   array is NULL for rank 0 */
} moe_arg_info;

/* Loads model.so: checks that it is a complete ELF shared library for this
 * machine, dlopen()s it (RTLD_NOW | RTLD_LOCAL), calls MOE_ABI_QUERY_SYMBOL,
 * checks the ABI version and validates every table. Loading the library runs
 * its initialisers: load only files you trust. Thread-safe. */
MOERT_API moe_status *moe_model_load(const char *path, moe_model **out);
MOERT_API void moe_model_retain(moe_model *model);
/* The library is unloaded when the last reference (including those held by
 * sessions) goes away. Tensors never point into it. */
MOERT_API void moe_model_release(moe_model *model);

/* The path given to moe_model_load. */
MOERT_API const char *moe_model_path(const moe_model *model);
/* The model's producer / target / JSON signature strings ("" if absent). */
MOERT_API const char *moe_model_producer(const moe_model *model);
MOERT_API const char *moe_model_target(const moe_model *model);
MOERT_API const char *moe_model_signature_json(const moe_model *model);
/* The device the model was compiled for. */
MOERT_API moe_device moe_model_device(const moe_model *model);
/* Human-readable, multi-line description of every entry and argument. */
MOERT_API const char *moe_model_description(const moe_model *model);

MOERT_API int32_t moe_model_num_entries(const moe_model *model);
/* Name of entry `entry`; NULL if out of range. */
MOERT_API const char *moe_model_entry_name(const moe_model *model,
                                           int32_t entry);
/* Index of the entry called `name`, or -1. */
MOERT_API int32_t moe_model_find_entry(const moe_model *model,
                                       const char *name);
/* Number of arguments of entry `entry`, or -1 if out of range. */
MOERT_API int32_t moe_model_num_args(const moe_model *model, int32_t entry);
/* Argument `arg` of entry `entry`, owned by the model; NULL if out of
 * range. */
MOERT_API const moe_arg_info *moe_model_arg(const moe_model *model,
                                            int32_t entry, int32_t arg);
/* The value to use for INPUT argument `arg` of entry `entry` when the caller
 * has no better one (moec records it for train_step's loss coefficients):
 * returns 1 and sets `*value`, or returns 0 when the argument has none. */
MOERT_API int moe_model_arg_default(const moe_model *model, int32_t entry,
                                    int32_t arg, double *value);
/* The parameter groups of PARAMETER argument `arg` of entry `entry` that
 * moec found ("router", "experts", "shared_experts", "attention", "norms",
 * "embeddings", "head"): their number (0 when unknown or out of range) and
 * the name of group `group` (owned by the model; NULL if out of range). */
MOERT_API int32_t moe_model_arg_num_groups(const moe_model *model,
                                           int32_t entry, int32_t arg);
MOERT_API const char *moe_model_arg_group(const moe_model *model, int32_t entry,
                                          int32_t arg, int32_t group);

/*===------------------------------ Sessions ----------------------------===*/

/* A model ready to run: its parameters and optimizer state (one tensor per
 * distinct PARAMETER / OPTIMIZER_STATE argument name over all entries), and
 * a thread pool that serves the model's parallel_for. Every function is
 * thread-safe: runs share the session (they may proceed concurrently, except
 * that a run of an entry with OPTIMIZER_STATE arguments, which the model
 * updates in place, is exclusive), and functions that change parameters wait
 * for runs in progress.
 *
 * On a CUDA device the model reads parameters and optimizer state from
 * device memory; the session also keeps a host copy of each, which the
 * parameter functions below (and the optimizer of moert_train.h) read and
 * write: a changed parameter is copied to the device before the next run
 * that reads it, and optimizer state that a run updates on the device is
 * copied back when the run ends. Inputs and results stay host tensors: a run
 * copies inputs to the device and results back. Concurrent runs of one CUDA
 * session each get their own stream and proceed in parallel on the GPU. */
typedef struct moe_session moe_session;

/* Creates a session for `model` (retained) on the device it was compiled
 * for (CUDA models: device 0) with `num_threads` workers for parallel_for
 * (at most 4096); 0 means one per CPU this process may use. Parameters start
 * uninitialised (runs fail until moe_session_init_parameters,
 * moe_session_load_parameters or moe_session_set_parameter has given each a
 * value); optimizer state starts at zero. */
MOERT_API moe_status *moe_session_create(moe_model *model, int32_t num_threads,
                                         moe_session **out);
/* The same on a chosen device: MOE_DEVICE_CPU (ordinal ignored), or
 * MOE_DEVICE_CUDA and the CUDA device ordinal (0 for the first GPU). The
 * device must be the one the model was compiled for: anything else fails
 * with INVALID_ARGUMENT, saying how to recompile. On a CUDA device the
 * session loads the CUDA driver (libcuda.so.1, or the file that the
 * environment variable MOERT_LIBCUDA names; the runtime never links it),
 * retains the device's primary context, loads the model's device code (its
 * cubin, else the PTX compiled by the driver) and allocates device memory
 * for every parameter and optimizer-state tensor; a missing driver, no
 * device, an ordinal out of range or refused device code fail with
 * DEVICE_ERROR and a message naming the CUDA error. */
MOERT_API moe_status *moe_session_create_on(moe_model *model,
                                            int32_t num_threads,
                                            moe_device device, int32_t ordinal,
                                            moe_session **out);
MOERT_API void moe_session_retain(moe_session *session);
MOERT_API void moe_session_release(moe_session *session);

/* The session's model, borrowed. */
MOERT_API moe_model *moe_session_get_model(const moe_session *session);
MOERT_API int32_t moe_session_num_threads(const moe_session *session);
/* The session's device, its ordinal (0 on the CPU) and a description owned
 * by the session: "cpu" or e.g. "cuda:0 (NVIDIA H100 80GB HBM3, sm_90)". */
MOERT_API moe_device moe_session_device(const moe_session *session);
MOERT_API int32_t moe_session_device_ordinal(const moe_session *session);
MOERT_API const char *
moe_session_device_description(const moe_session *session);

/* The parameters and optimizer-state tensors, in order of first appearance
 * in the model's entries. Info owned by the model; NULL if out of range. */
MOERT_API int32_t moe_session_num_parameters(const moe_session *session);
MOERT_API const moe_arg_info *
moe_session_parameter_info(const moe_session *session, int32_t index);

/* Gives every parameter a deterministic random value from `seed` and zeroes
 * the optimizer state. The rule, by parameter name (case-insensitive) and
 * rank, first match wins: integer and bool parameters -> zeros; a name
 * containing "bias" -> zeros; rank 1 and a name containing "norm" -> ones;
 * every other parameter -> normal(0, 0.02). Each parameter's values depend
 * only on the seed and its name, not on the other parameters. On error the
 * session is unchanged. */
MOERT_API moe_status *moe_session_init_parameters(moe_session *session,
                                                  uint64_t seed);
/* Loads parameters from a safetensors file (memory-mapped, header fully
 * validated). Every parameter must be present with the declared dtype and
 * shape; optimizer-state tensors are loaded when present and zeroed when
 * not; other tensors in the file are ignored. All or nothing: on error the
 * session is unchanged. */
MOERT_API moe_status *moe_session_load_parameters(moe_session *session,
                                                  const char *path);
/* Saves parameters and optimizer state as safetensors, atomically (see
 * moe_safetensors_write). Fails if a parameter is uninitialised. */
MOERT_API moe_status *moe_session_save_parameters(moe_session *session,
                                                  const char *path);
/* New owned tensor with a copy of the parameter (or optimizer state)
 * `name`. */
MOERT_API moe_status *moe_session_get_parameter(moe_session *session,
                                                const char *name,
                                                moe_tensor **out);
/* Copies `value` into the parameter `name`; dtype and shape must match. */
MOERT_API moe_status *moe_session_set_parameter(moe_session *session,
                                                const char *name,
                                                const moe_tensor *value);

/* Runs entry point `entry`. `inputs` names a tensor for every INPUT argument
 * (no more, no less; NULL when the entry has none); parameters and optimizer
 * state come from the session. Checks dtypes, ranks, static extents and that
 * dynamic dimensions with the same symbol have the same extent. On success
 * `*outputs` is a new list with one owned, contiguous tensor per OUTPUT,
 * METRIC and GRADIENT argument, in declaration order. The input tensors are
 * only read, and may be used by concurrent runs. */
MOERT_API moe_status *moe_session_run(moe_session *session, const char *entry,
                                      const moe_tensor_list *inputs,
                                      moe_tensor_list **outputs);

/* Where the time of a run went, in milliseconds of wall-clock time. */
typedef struct moe_run_timing {
  double upload_ms;   /* copying inputs, and parameters changed since the
                         last run, to the device (0 on the CPU) */
  double invoke_ms;   /* the model's invoke call and, on a CUDA device,
                         waiting for the stream to finish its work */
  double download_ms; /* turning results into host tensors: copying them
                         from the device (on the CPU: copying views) */
} moe_run_timing;

/* moe_session_run that also measures its phases into `*timing` (which may be
 * NULL). On a CUDA device a timed run waits for the stream after each phase
 * (an untimed run waits once, at the end) so that the phases do not
 * overlap. */
MOERT_API moe_status *moe_session_run_timed(moe_session *session,
                                            const char *entry,
                                            const moe_tensor_list *inputs,
                                            moe_tensor_list **outputs,
                                            moe_run_timing *timing);

#ifdef __cplusplus
}
#endif

#endif /* MOE_RUNTIME_MOERT_H */

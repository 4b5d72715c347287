/*===- fake_cuda.c - A host-only stand-in for libcuda, for tests only -----===*
 *
 * See fake_cuda.h: this implements just the driver entry points libmoert
 * resolves, on host memory, to test the runtime's plumbing without a GPU.
 *
 *===----------------------------------------------------------------------===*/
#define _GNU_SOURCE
#include "fake_cuda.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum {
  SUCCESS = 0,
  INVALID_VALUE = 1,
  OUT_OF_MEMORY = 2,
  NOT_INITIALIZED = 3,
  INVALID_DEVICE = 101,
  INVALID_IMAGE = 200,
  INVALID_CONTEXT = 201,
  NO_BINARY_FOR_GPU = 209,
  INVALID_PTX = 218,
  INVALID_HANDLE = 400,
  NOT_FOUND = 500,
  LAUNCH_OUT_OF_RESOURCES = 701,
  LAUNCH_FAILED = 719,
};

static const struct {
  CUresult code;
  const char *name;
} error_names[] = {
    {0, "CUDA_SUCCESS"},
    {1, "CUDA_ERROR_INVALID_VALUE"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY"},
    {3, "CUDA_ERROR_NOT_INITIALIZED"},
    {34, "CUDA_ERROR_STUB_LIBRARY"},
    {100, "CUDA_ERROR_NO_DEVICE"},
    {101, "CUDA_ERROR_INVALID_DEVICE"},
    {200, "CUDA_ERROR_INVALID_IMAGE"},
    {201, "CUDA_ERROR_INVALID_CONTEXT"},
    {209, "CUDA_ERROR_NO_BINARY_FOR_GPU"},
    {218, "CUDA_ERROR_INVALID_PTX"},
    {400, "CUDA_ERROR_INVALID_HANDLE"},
    {500, "CUDA_ERROR_NOT_FOUND"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS"},
    {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"},
    {719, "CUDA_ERROR_LAUNCH_FAILED"},
    {801, "CUDA_ERROR_NOT_SUPPORTED"},
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static __thread int current_context; /* 1 + device ordinal, 0: none */
static int contexts[64];             /* Primary context handles. */

/* Live device blocks. */
struct block {
  char *base;
  size_t size;
  struct block *next;
};
static struct block *blocks;
static int64_t live_blocks;
static int64_t ptx_loads;

/* Work queued on a stream. */
enum op_kind { OP_COPY, OP_LAUNCH, OP_FREE };
struct op {
  enum op_kind kind;
  void *dst;
  const void *src;
  void *staged; /* Owned copy of a host source, or NULL. */
  size_t bytes;
  const fake_cuda_kernel *kernel;
  uint64_t params[32];
  uint32_t grid[3], block[3];
  struct op *next;
};
struct stream {
  struct op *head, *tail;
};

/* Whether entry point `name` must fail, and with which code. */
static CUresult injected(const char *name) {
  const char *spec = getenv("MOERT_FAKE_CUDA_FAIL");
  size_t length = strlen(name);
  while (spec && *spec) {
    if (strncmp(spec, name, length) == 0 && spec[length] == '=')
      return atoi(spec + length + 1);
    spec = strchr(spec, ',');
    if (spec)
      ++spec;
  }
  return SUCCESS;
}

#define ENTRY(name)                                                            \
  do {                                                                         \
    CUresult forced = injected(#name);                                         \
    if (forced != SUCCESS)                                                     \
      return forced;                                                           \
  } while (0)

#define NEEDS_CONTEXT()                                                        \
  do {                                                                         \
    if (!initialized)                                                          \
      return NOT_INITIALIZED;                                                  \
    if (!current_context)                                                      \
      return INVALID_CONTEXT;                                                  \
  } while (0)

static int device_count(void) {
  const char *count = getenv("MOERT_FAKE_CUDA_DEVICES");
  return count ? atoi(count) : 1;
}

static const char *device_arch(void) {
  const char *arch = getenv("MOERT_FAKE_CUDA_ARCH");
  return arch ? arch : "sm_90";
}

/* The block holding [pointer, pointer + bytes), or NULL. Caller locks. */
static struct block *find_block(const void *pointer, size_t bytes) {
  const char *p = pointer;
  for (struct block *b = blocks; b; b = b->next)
    if (p >= b->base && p <= b->base + b->size &&
        bytes <= (size_t)(b->base + b->size - p))
      return b;
  return NULL;
}

EXPORT int64_t fake_cuda_live_allocations(void) {
  pthread_mutex_lock(&lock);
  int64_t count = live_blocks;
  pthread_mutex_unlock(&lock);
  return count;
}

EXPORT int64_t fake_cuda_ptx_loads(void) {
  pthread_mutex_lock(&lock);
  int64_t count = ptx_loads;
  pthread_mutex_unlock(&lock);
  return count;
}

EXPORT CUresult cuInit(unsigned flags) {
  ENTRY(cuInit);
  if (flags != 0)
    return INVALID_VALUE;
  if (device_count() == 0)
    return 100; /* CUDA_ERROR_NO_DEVICE */
  initialized = 1;
  return SUCCESS;
}

EXPORT CUresult cuGetErrorName(CUresult error, const char **name) {
  for (size_t i = 0; i < sizeof(error_names) / sizeof(error_names[0]); ++i)
    if (error_names[i].code == error) {
      *name = error_names[i].name;
      return SUCCESS;
    }
  *name = NULL;
  return INVALID_VALUE;
}

EXPORT CUresult cuDeviceGetCount(int *count) {
  ENTRY(cuDeviceGetCount);
  if (!initialized)
    return NOT_INITIALIZED;
  *count = device_count();
  return SUCCESS;
}

EXPORT CUresult cuDeviceGet(int *device, int ordinal) {
  ENTRY(cuDeviceGet);
  if (ordinal < 0 || ordinal >= device_count() || ordinal >= 64)
    return INVALID_DEVICE;
  *device = ordinal;
  return SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char *name, int length, int device) {
  ENTRY(cuDeviceGetName);
  snprintf(name, (size_t)length, "Fake CUDA device %d (moert tests)", device);
  return SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int *value, int attribute, int device) {
  ENTRY(cuDeviceGetAttribute);
  (void)device;
  const char *arch = device_arch(); /* "sm_XY" */
  switch (attribute) {
  case 75: /* Compute capability, major. */
    *value = arch[3] - '0';
    return SUCCESS;
  case 76:
    *value = arch[4] - '0';
    return SUCCESS;
  case 115: /* Memory pools. */
    *value = 1;
    return SUCCESS;
  }
  return INVALID_VALUE;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(void **context, int device) {
  ENTRY(cuDevicePrimaryCtxRetain);
  if (device < 0 || device >= 64)
    return INVALID_DEVICE;
  contexts[device] = device + 1;
  *context = &contexts[device];
  return SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(int device) {
  (void)device;
  return SUCCESS;
}

EXPORT CUresult cuCtxSetCurrent(void *context) {
  ENTRY(cuCtxSetCurrent);
  current_context = context ? *(int *)context : 0;
  return SUCCESS;
}

EXPORT CUresult cuStreamCreate(void **stream, unsigned flags) {
  ENTRY(cuStreamCreate);
  NEEDS_CONTEXT();
  (void)flags;
  *stream = calloc(1, sizeof(struct stream));
  return *stream ? SUCCESS : OUT_OF_MEMORY;
}

static void enqueue(struct stream *stream, struct op *op) {
  pthread_mutex_lock(&lock);
  if (stream->tail)
    stream->tail->next = op;
  else
    stream->head = op;
  stream->tail = op;
  pthread_mutex_unlock(&lock);
}

static void free_block(void *pointer) {
  pthread_mutex_lock(&lock);
  for (struct block **b = &blocks; *b; b = &(*b)->next)
    if ((*b)->base == pointer) {
      struct block *dead = *b;
      *b = dead->next;
      free(dead->base);
      free(dead);
      --live_blocks;
      break;
    }
  pthread_mutex_unlock(&lock);
}

/* Runs the stream's work in order. */
static void drain(struct stream *stream) {
  pthread_mutex_lock(&lock);
  struct op *op = stream->head;
  stream->head = stream->tail = NULL;
  pthread_mutex_unlock(&lock);
  while (op) {
    struct op *next = op->next;
    switch (op->kind) {
    case OP_COPY:
      memcpy(op->dst, op->staged ? op->staged : op->src, op->bytes);
      break;
    case OP_LAUNCH: {
      void *params[32];
      for (int i = 0; i < op->kernel->num_params; ++i)
        params[i] = &op->params[i];
      op->kernel->body(params, op->grid, op->block);
      break;
    }
    case OP_FREE:
      free_block(op->dst);
      break;
    }
    free(op->staged);
    free(op);
    op = next;
  }
}

EXPORT CUresult cuStreamSynchronize(void *stream) {
  NEEDS_CONTEXT();
  drain(stream);
  /* Checked after the work, as an asynchronous failure is. */
  ENTRY(cuStreamSynchronize);
  return SUCCESS;
}

EXPORT CUresult cuStreamDestroy_v2(void *stream) {
  ENTRY(cuStreamDestroy_v2);
  drain(stream);
  free(stream);
  return SUCCESS;
}

static CUresult allocate(CUdeviceptr *pointer, size_t bytes) {
  if (bytes == 0)
    return INVALID_VALUE;
  struct block *b = malloc(sizeof(*b));
  /* The driver aligns blocks to 256 bytes at least. */
  char *base = aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!b || !base) {
    free(b);
    free(base);
    return OUT_OF_MEMORY;
  }
  memset(base, 0xA5, bytes); /* Never zeros: uninitialised reads show. */
  b->base = base;
  b->size = bytes;
  pthread_mutex_lock(&lock);
  b->next = blocks;
  blocks = b;
  ++live_blocks;
  pthread_mutex_unlock(&lock);
  *pointer = (CUdeviceptr)base;
  return SUCCESS;
}

static int is_block(CUdeviceptr pointer) {
  pthread_mutex_lock(&lock);
  int found = 0;
  for (struct block *b = blocks; b; b = b->next)
    found |= b->base == (char *)pointer;
  pthread_mutex_unlock(&lock);
  return found;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *pointer, size_t bytes) {
  ENTRY(cuMemAlloc_v2);
  NEEDS_CONTEXT();
  return allocate(pointer, bytes);
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr pointer) {
  ENTRY(cuMemFree_v2);
  NEEDS_CONTEXT();
  if (!is_block(pointer))
    return INVALID_VALUE;
  free_block((void *)pointer);
  return SUCCESS;
}

EXPORT CUresult cuMemAllocAsync(CUdeviceptr *pointer, size_t bytes,
                                void *stream) {
  ENTRY(cuMemAllocAsync);
  NEEDS_CONTEXT();
  (void)stream;
  return allocate(pointer, bytes);
}

EXPORT CUresult cuMemFreeAsync(CUdeviceptr pointer, void *stream) {
  ENTRY(cuMemFreeAsync);
  NEEDS_CONTEXT();
  if (!is_block(pointer))
    return INVALID_VALUE;
  struct op *op = calloc(1, sizeof(*op));
  if (!op)
    return OUT_OF_MEMORY;
  op->kind = OP_FREE;
  op->dst = (void *)pointer;
  enqueue(stream, op);
  return SUCCESS;
}

/* Enqueues a copy; a host source is staged now. */
static CUresult copy(void *dst, const void *src, size_t bytes, void *stream,
                     int dst_device, int src_device) {
  pthread_mutex_lock(&lock);
  int bad = (dst_device && !find_block(dst, bytes)) ||
            (src_device && !find_block(src, bytes));
  pthread_mutex_unlock(&lock);
  if (bad)
    return INVALID_VALUE;
  struct op *op = calloc(1, sizeof(*op));
  if (!op)
    return OUT_OF_MEMORY;
  op->kind = OP_COPY;
  op->dst = dst;
  op->src = src;
  op->bytes = bytes;
  if (!src_device) {
    op->staged = malloc(bytes ? bytes : 1);
    if (!op->staged) {
      free(op);
      return OUT_OF_MEMORY;
    }
    memcpy(op->staged, src, bytes);
  }
  enqueue(stream, op);
  return SUCCESS;
}

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src,
                                     size_t bytes, void *stream) {
  ENTRY(cuMemcpyHtoDAsync_v2);
  NEEDS_CONTEXT();
  return copy((void *)dst, src, bytes, stream, 1, 0);
}

EXPORT CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t bytes,
                                     void *stream) {
  ENTRY(cuMemcpyDtoHAsync_v2);
  NEEDS_CONTEXT();
  return copy(dst, (const void *)src, bytes, stream, 0, 1);
}

EXPORT CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                              void *stream) {
  ENTRY(cuMemcpyAsync);
  NEEDS_CONTEXT();
  /* Unified addressing: the pointers say where they live. */
  pthread_mutex_lock(&lock);
  int dst_device = find_block((void *)dst, 0) != NULL;
  int src_device = find_block((void *)src, 0) != NULL;
  pthread_mutex_unlock(&lock);
  return copy((void *)dst, (const void *)src, bytes, stream, dst_device,
              src_device);
}

/* A loaded module: the fixture library that holds the image. */
struct module {
  void *library;
};

EXPORT CUresult cuModuleLoadDataEx(void **module, const void *image,
                                   unsigned num_options, int *options,
                                   void **values) {
  ENTRY(cuModuleLoadDataEx);
  NEEDS_CONTEXT();
  const char *text = image;
  char *error_log = NULL;
  size_t error_log_size = 0;
  for (unsigned i = 0; i < num_options; ++i) {
    if (options[i] == 5) /* CU_JIT_ERROR_LOG_BUFFER */
      error_log = values[i];
    else if (options[i] == 6) /* CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES */
      error_log_size = (size_t)values[i];
  }
  int is_cubin = strncmp(text, "FAKECUBIN ", 10) == 0;
  if (is_cubin && strcmp(text + 10, device_arch()) != 0)
    return NO_BINARY_FOR_GPU;
  if (!is_cubin && strstr(text, "fake-jit-error")) {
    if (error_log && error_log_size)
      snprintf(error_log, error_log_size,
               "ptxas fatal   : fake-jit-error: the fake JIT refuses this "
               "PTX\n");
    return INVALID_PTX;
  }
  Dl_info info;
  if (!dladdr(image, &info) || !info.dli_fname)
    return INVALID_IMAGE;
  struct module *loaded = malloc(sizeof(*loaded));
  if (!loaded)
    return OUT_OF_MEMORY;
  loaded->library = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
  if (!loaded->library) {
    free(loaded);
    return INVALID_IMAGE;
  }
  if (!is_cubin) {
    pthread_mutex_lock(&lock);
    ++ptx_loads;
    pthread_mutex_unlock(&lock);
  }
  *module = loaded;
  return SUCCESS;
}

EXPORT CUresult cuModuleUnload(void *module) {
  struct module *loaded = module;
  dlclose(loaded->library);
  free(loaded);
  return SUCCESS;
}

EXPORT CUresult cuModuleGetFunction(void **function, void *module,
                                    const char *name) {
  ENTRY(cuModuleGetFunction);
  NEEDS_CONTEXT();
  char symbol[256];
  snprintf(symbol, sizeof(symbol), "fake_cuda_kernel_%s", name);
  *function = dlsym(((struct module *)module)->library, symbol);
  return *function ? SUCCESS : NOT_FOUND;
}

EXPORT CUresult cuLaunchKernel(void *function, unsigned grid_x, unsigned grid_y,
                               unsigned grid_z, unsigned block_x,
                               unsigned block_y, unsigned block_z,
                               unsigned shared_bytes, void *stream,
                               void **params, void **extra) {
  ENTRY(cuLaunchKernel);
  NEEDS_CONTEXT();
  const fake_cuda_kernel *kernel = function;
  if (!kernel || extra || kernel->num_params > 32 ||
      (kernel->num_params > 0 && !params))
    return INVALID_VALUE;
  if (!grid_x || !grid_y || !grid_z || !block_x || !block_y || !block_z)
    return INVALID_VALUE;
  if ((uint64_t)block_x * block_y * block_z > 1024 || shared_bytes > 49152)
    return LAUNCH_OUT_OF_RESOURCES;
  struct op *op = calloc(1, sizeof(*op));
  if (!op)
    return OUT_OF_MEMORY;
  op->kind = OP_LAUNCH;
  op->kernel = kernel;
  /* The driver copies the parameter values at launch. */
  for (int i = 0; i < kernel->num_params; ++i)
    memcpy(&op->params[i], params[i], sizeof(uint64_t));
  op->grid[0] = grid_x;
  op->grid[1] = grid_y;
  op->grid[2] = grid_z;
  op->block[0] = block_x;
  op->block[1] = block_y;
  op->block[2] = block_z;
  enqueue(stream, op);
  return SUCCESS;
}

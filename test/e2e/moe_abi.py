"""Calls a compiled model.so through the raw model ABI (include/moe/abi/moe_abi.h).

This is a second, independent client of the ABI next to libmoert: the
end-to-end numerics tests use it to run compiled code on NumPy arrays and
compare with test/reference/moe_reference.py, and it checks the ABI tables
(names, roles, dtypes, shapes) that moec writes. Allocation goes through
services implemented here, so the tests also see which outputs the model
owns and which are views.
"""
import ctypes
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ABI_VERSION = 2
DEVICE_HOST = 0
DYNAMIC = -1
# NumPy has no bfloat16: bf16 arguments travel as their raw 16-bit patterns.
DTYPES = {1: np.float32, 2: np.float16, 3: np.uint16, 4: np.float64,
          5: np.int8, 6: np.int32, 7: np.int64, 8: np.bool_}
ROLES = {1: "input", 2: "parameter", 3: "output", 4: "metric",
         5: "gradient", 6: "optimizer_state"}
PRODUCED = {"output", "metric", "gradient"}


class _Arg(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("role", ctypes.c_int32),
                ("dtype", ctypes.c_int32), ("rank", ctypes.c_int32),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("dim_names", ctypes.POINTER(ctypes.c_char_p))]


_Invoke = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p),
                           ctypes.c_void_p)


class _Entry(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("num_args", ctypes.c_int32),
                ("args", ctypes.POINTER(_Arg)), ("invoke", _Invoke)]


class _Model(ctypes.Structure):
    _fields_ = [("abi_version", ctypes.c_uint32),
                ("struct_size", ctypes.c_uint32),
                ("producer", ctypes.c_char_p), ("target", ctypes.c_char_p),
                ("num_entries", ctypes.c_int32),
                ("entries", ctypes.POINTER(_Entry)),
                ("signature_json", ctypes.c_char_p),
                ("device_blob", ctypes.c_void_p),
                ("device_blob_size", ctypes.c_uint64),
                ("num_kernels", ctypes.c_int32),
                ("kernel_names", ctypes.POINTER(ctypes.c_char_p)),
                ("device_ptx", ctypes.c_char_p),
                ("device_arch", ctypes.c_char_p),
                ("device", ctypes.c_int32)]


_Alloc = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                          ctypes.c_size_t)
_Free = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_Body = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
_ParallelFor = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, _Body,
                                ctypes.c_void_p)


class _Services(ctypes.Structure):
    # This client runs CPU models only: device is host and the CUDA services
    # (cuda_function, cuda_launch, cuda_copy) stay NULL.
    _fields_ = [("abi_version", ctypes.c_uint32),
                ("struct_size", ctypes.c_uint32),
                ("context", ctypes.c_void_p), ("alloc", _Alloc),
                ("free", _Free), ("parallel_for", _ParallelFor),
                ("num_threads", ctypes.c_int32), ("device", ctypes.c_int32),
                ("cuda_function", ctypes.c_void_p),
                ("cuda_launch", ctypes.c_void_p),
                ("cuda_copy", ctypes.c_void_p)]


def _memref_type(rank):
    fields = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p),
              ("offset", ctypes.c_int64)]
    if rank:
        fields += [("sizes", ctypes.c_int64 * rank),
                   ("strides", ctypes.c_int64 * rank)]
    return type("Memref%d" % rank, (ctypes.Structure,), {"_fields_": fields})


class ArgInfo:
    def __init__(self, arg):
        self.name = arg.name.decode()
        self.role = ROLES[arg.role]
        self.dtype = np.dtype(DTYPES[arg.dtype])
        self.shape = [arg.shape[i] for i in range(arg.rank)]
        self.dims = [arg.dim_names[i].decode() if arg.dim_names[i] else None
                     for i in range(arg.rank)]

    def __repr__(self):
        return "%s %s %s%s" % (self.role, self.name, self.dtype, self.shape)


class Model:
    """A loaded model.so. parallel_for splits the iterations into one chunk
    per thread; ctypes releases the GIL while a chunk runs, so chunks run in
    parallel."""

    def __init__(self, path, threads=None, alloc_limit=None):
        self.lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_LOCAL)
        query = self.lib.moe_abi_query
        query.restype = ctypes.POINTER(_Model)
        self.model = query().contents
        if self.model.abi_version != ABI_VERSION:
            raise RuntimeError("ABI version %d" % self.model.abi_version)
        if self.model.struct_size != ctypes.sizeof(_Model):
            raise RuntimeError("moe_abi_model is %d bytes, expected %d" %
                               (self.model.struct_size,
                                ctypes.sizeof(_Model)))
        if self.model.device != DEVICE_HOST:
            raise RuntimeError("this client runs CPU models only (device %d)"
                               % self.model.device)
        self.signature = json.loads(self.model.signature_json.decode())
        self.entries = {}
        for i in range(self.model.num_entries):
            entry = self.model.entries[i]
            args = [ArgInfo(entry.args[j]) for j in range(entry.num_args)]
            self.entries[entry.name.decode()] = (entry, args)
        self._live = {}
        # Allocations larger than this many bytes fail (tests of the model's
        # out-of-memory path).
        self.alloc_limit = alloc_limit
        self._lock = threading.Lock()
        self.allocations = 0
        self._alloc = _Alloc(self._allocate)
        self._free = _Free(self._release)
        self.threads = threads or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self.threads)
        self._parallel_for = _ParallelFor(self._run_chunks)
        self.services = _Services(ABI_VERSION, ctypes.sizeof(_Services), None,
                                  self._alloc, self._free, self._parallel_for,
                                  self.threads, DEVICE_HOST, None, None, None)

    def _run_chunks(self, _context, iterations, body, closure):
        if iterations <= 0:
            return
        chunks = min(self.threads, iterations)
        bounds = [iterations * i // chunks for i in range(chunks + 1)]
        futures = [self._pool.submit(body, closure, bounds[i], bounds[i + 1])
                   for i in range(1, chunks)]
        if chunks:
            body(closure, bounds[0], bounds[1])
        for future in futures:
            future.result()

    def _allocate(self, _context, size, alignment):
        if self.alloc_limit is not None and size > self.alloc_limit:
            return None
        buffer = np.empty(size + alignment, dtype=np.uint8)
        address = buffer.ctypes.data
        address += (-address) % alignment
        with self._lock:
            self._live[address] = buffer
            self.allocations += 1
        return address

    def _release(self, _context, pointer):
        with self._lock:
            self._live.pop(pointer, None)

    def args(self, entry="forward"):
        return self.entries[entry][1]

    def run(self, entry="forward", **values):
        """Runs `entry` on NumPy arrays given by argument name; returns the
        produced arguments by name (copies owned by the caller)."""
        raw, infos = self.entries[entry]
        keep, pointers, produced = [], [], []
        for info in infos:
            descriptor = _memref_type(len(info.shape))()
            if info.role not in PRODUCED:
                # np.require keeps 0-d arrays 0-d (ascontiguousarray would
                # make them 1-d).
                array = np.require(values.pop(info.name), dtype=info.dtype,
                                   requirements="C")
                if array.ndim != len(info.shape):
                    raise ValueError("%s: rank %d, expected %s" %
                                     (info.name, array.ndim, info.shape))
                keep.append(array)
                descriptor.allocated = descriptor.aligned = array.ctypes.data
                for d, extent in enumerate(array.shape):
                    descriptor.sizes[d] = extent
                    descriptor.strides[d] = array.strides[d] // array.itemsize
            else:
                produced.append((info, descriptor))
            keep.append(descriptor)
            pointers.append(ctypes.cast(ctypes.pointer(descriptor),
                                        ctypes.c_void_p))
        if values:
            raise ValueError("unknown arguments: %s" % sorted(values))
        argv = (ctypes.c_void_p * len(pointers))(*[p.value for p in pointers])
        status = raw.invoke(argv, ctypes.addressof(self.services))
        if status != 0:
            raise RuntimeError("invoke returned %d" % status)
        results = {}
        for info, descriptor in produced:
            rank = len(info.shape)
            sizes = [descriptor.sizes[d] for d in range(rank)]
            strides = [descriptor.strides[d] * info.dtype.itemsize
                       for d in range(rank)]
            if not all(sizes):
                results[info.name] = np.empty(sizes, dtype=info.dtype)
                self._release(None, descriptor.allocated)
                continue
            base = descriptor.aligned + descriptor.offset * info.dtype.itemsize
            extent = (sum((s - 1) * abs(st) for s, st in zip(sizes, strides))
                      + info.dtype.itemsize)
            raw_bytes = (ctypes.c_uint8 * extent).from_address(base)
            view = np.lib.stride_tricks.as_strided(
                np.frombuffer(raw_bytes, dtype=info.dtype), sizes, strides)
            results[info.name] = np.array(view)
            self._release(None, descriptor.allocated)
        return results

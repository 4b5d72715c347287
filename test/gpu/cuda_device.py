"""Is an NVIDIA GPU usable here? Asks the CUDA driver itself (libcuda.so.1
through ctypes), so the answer needs neither PyTorch nor the toolkit, and a
machine with only the toolkit's link stub (libcuda.so in .../stubs) reads as
"no GPU".

    python3 test/gpu/cuda_device.py     # prints the device or why there is none
"""
import ctypes
import sys

# CUdevice_attribute values (cuda.h).
_COMPUTE_CAPABILITY_MAJOR = 75
_COMPUTE_CAPABILITY_MINOR = 76
# Names of the errors cuInit gives on machines without a usable GPU, for
# drivers whose cuGetErrorName fails too (the toolkit's stub does).
_ERRORS = {34: "CUDA_ERROR_STUB_LIBRARY", 100: "CUDA_ERROR_NO_DEVICE",
           999: "CUDA_ERROR_UNKNOWN"}


def _error_name(lib, code):
    name = ctypes.c_char_p()
    if lib.cuGetErrorName(code, ctypes.byref(name)) == 0 and name.value:
        return name.value.decode()
    return _ERRORS.get(code, "CUDA error %d" % code)


def probe():
    """(description, None) for the first usable device, else (None, reason),
    where reason is one line saying what is missing."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as error:
        return None, "no NVIDIA driver: libcuda.so.1 cannot be loaded (%s)" % (
            error)
    code = lib.cuInit(0)
    if code != 0:
        return None, "cuInit failed: %s" % _error_name(lib, code)
    count = ctypes.c_int(0)
    code = lib.cuDeviceGetCount(ctypes.byref(count))
    if code != 0:
        return None, "cuDeviceGetCount failed: %s" % _error_name(lib, code)
    if count.value == 0:
        return None, "the NVIDIA driver reports no CUDA device"
    device = ctypes.c_int(0)
    if lib.cuDeviceGet(ctypes.byref(device), 0) != 0:
        return None, "cuDeviceGet(0) failed"
    name = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(name, len(name), device)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), _COMPUTE_CAPABILITY_MAJOR,
                             device)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), _COMPUTE_CAPABILITY_MINOR,
                             device)
    return "%s (sm_%d%d), %d device(s)" % (name.value.decode(), major.value,
                                           minor.value, count.value), None


if __name__ == "__main__":
    found, missing = probe()
    print(found or missing)
    sys.exit(0 if found else 1)

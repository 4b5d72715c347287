"""Reads and writes safetensors files (the format moe-train checkpoints and
the parameters `moec model.onnx` writes next to model.so): an 8-byte
little-endian header length, a JSON header {name: {dtype, shape,
data_offsets}}, then the raw tensor bytes."""
import json
import pathlib
import struct

import numpy as np

# BF16 tensors are read as their raw 16-bit patterns (NumPy has no bfloat16).
DTYPES = {"F16": np.float16, "BF16": np.uint16, "F32": np.float32,
          "F64": np.float64, "I8": np.int8, "I32": np.int32,
          "I64": np.int64, "BOOL": np.bool_}
NAMES = {np.dtype(v): k for k, v in DTYPES.items() if k != "BF16"}


def read_safetensors(path):
    """{name: ndarray} from a safetensors file."""
    data = pathlib.Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    base = 8 + length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        tensors[name] = np.frombuffer(
            data[base + begin:base + end],
            dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return tensors


def write_safetensors(path, tensors, bf16=()):
    """Writes {name: ndarray}; each array keeps its dtype, except that the
    names in `bf16` hold raw 16-bit patterns (uint16, as read) written as
    BF16."""
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        blob = array.tobytes()
        if name in bf16:
            assert array.dtype == np.uint16, (name, array.dtype)
        header[name] = {"dtype": "BF16" if name in bf16 else
                        NAMES[array.dtype],
                        "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    pathlib.Path(path).write_bytes(struct.pack("<Q", len(text)) + text +
                                   b"".join(blobs))

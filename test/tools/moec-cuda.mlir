// REQUIRES: cuda-toolkit, ptxas
// RUN: moec %s --target=cuda --emit=ptx -o %t.ptx
// RUN: FileCheck %s --check-prefix=PTX < %t.ptx
// RUN: %ptxas -arch=sm_90 %t.ptx -o %t.cubin
// RUN: moec %s --target=cuda --gpu-arch=sm_80 --emit=ptx -o - | FileCheck %s --check-prefix=SM80
// RUN: moec %s --target=cuda --emit=llvm -o %t.ll
// RUN: FileCheck %s --check-prefix=HOST < %t.ll
// RUN: not grep -E "llvm.global_ctors|declare .*@mgpu" %t.ll
// RUN: moec %s --target=cuda -o %t.so && llvm-nm -D --defined-only %t.so | FileCheck %s --check-prefix=SYMBOLS
// RUN: llvm-readelf -d %t.so | FileCheck %s --check-prefix=NEEDED
// RUN: moec %moec_src_root/examples/mixtral_layer.mlir --target=cuda --emit=ptx -o %t.moe.ptx && %ptxas -arch=sm_90 %t.moe.ptx -o %t.moe.cubin
// RUN: moec %moec_src_root/examples/tiny_moe_lm.mlir --target=cuda -o %t.lm.so
// RUN: moec %moec_src_root/examples/tiny_moe_lm.mlir --target=cuda --mode=train --emit=ptx -o %t.train.ptx && %ptxas -arch=sm_90 %t.train.ptx -o %t.train.cubin
// RUN: not moec %s --target=cuda --cuda-toolkit=%t.nowhere -o %t.so 2>&1 | FileCheck %s --check-prefix=NOTOOLKIT
// RUN: not moec %s --target=cuda --gpu-arch=gfx90a -o %t.so 2>&1 | FileCheck %s --check-prefix=ARCH
// RUN: not moec %s --gpu-arch=sm_90 -o %t.so 2>&1 | FileCheck %s --check-prefix=NOTCUDA

// A dense block (RMSNorm, matmul, GELU with erf from libdevice) for the
// CUDA target: every loop nest is a kernel of @moe_kernels, libdevice is
// linked (no external functions left) and ptxas accepts the PTX.

// PTX: .target sm_90
// PTX-DAG: .visible .entry forward_kernel_0(
// PTX-DAG: .visible .entry forward_kernel_4(
// PTX-NOT: .extern
// SM80: .target sm_80

// The host code launches the kernels through the runtime's CUDA services:
// the mgpu* functions MLIR's lowering calls are defined (and inlined) in the
// model, the
// device code sits in the ABI tables (cubin, PTX, kernel names), and the
// module loader constructor is gone (the grep above).
// HOST-DAG: @.moe.cubin = private constant
// HOST-DAG: c"forward_kernel_0\00"
// HOST-DAG: c"cuda sm_90 host

// SYMBOLS: T moe_abi_query
// NEEDED-NOT: libcuda
// NEEDED: Shared library: [libc.so.6]
// NEEDED-NOT: libcuda

// NOTOOLKIT: error: the CUDA target needs libdevice, not found at '{{.*}}nowhere/nvvm/libdevice/libdevice.10.bc': pass --cuda-toolkit=<dir>
// ARCH: moec: unknown --gpu-arch=gfx90a; expected sm_<number>, e.g. sm_90
// NOTCUDA: moec: --gpu-arch and --cuda-toolkit need --target=cuda

func.func @forward(%x: tensor<?x64xf32> {moe.name = "x", moe.dims = ["tokens", ""]},
                   %w: tensor<64x96xf32> {moe.name = "w", moe.role = "parameter"},
                   %g: tensor<64xf32> {moe.name = "g", moe.role = "parameter"})
    -> (tensor<?x96xf32> {moe.name = "y"}) {
  %n = nn.rms_norm %x, %g : tensor<?x64xf32>, tensor<64xf32>
  %h = nn.linear %n, %w : tensor<?x64xf32>, tensor<64x96xf32>
  %y = nn.gelu %h : tensor<?x96xf32>
  return %y : tensor<?x96xf32>
}

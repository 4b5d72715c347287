// REQUIRES: cuda-toolkit, ptxas
// RUN: sed -e 's/xf32>/xbf16>/g' %moec_src_root/examples/mixtral_layer.mlir > %t.bf16.mlir
// RUN: moec %t.bf16.mlir --target=cuda --emit=ptx -o %t.ptx
// RUN: FileCheck %s < %t.ptx
// RUN: %ptxas -arch=sm_90 %t.ptx -o %t.cubin
// RUN: moec %t.bf16.mlir --target=cuda --gpu-arch=sm_80 --emit=ptx -o - | FileCheck %s
// RUN: sed -e 's/xf32>/xf16>/g' %moec_src_root/examples/mixtral_layer.mlir > %t.f16.mlir
// RUN: moec %t.f16.mlir --target=cuda --emit=ptx -o %t.f16.ptx
// RUN: FileCheck %s --check-prefix=F16 < %t.f16.ptx
// RUN: %ptxas -arch=sm_90 %t.f16.ptx -o %t.f16.cubin
// RUN: moec %moec_src_root/examples/mixtral_layer.mlir --target=cuda --emit=ptx -o - | FileCheck %s --check-prefix=F32
// RUN: moec %S/Inputs/moe-bf16-train.mlir --target=cuda --mode=train --emit=ptx -o %t.train.ptx
// RUN: FileCheck %s --check-prefix=TRAIN < %t.train.ptx
// RUN: %ptxas -arch=sm_90 %t.train.ptx -o %t.train.cubin

// The experts of the Mixtral layer in bf16 (as the GPU suite converts it)
// run on the tensor cores: the grouped GEMM kernels (x @ W1/W3 in bf16, the
// f32 hidden activation @ W2 as two bf16 terms) issue mma.sync m16n8k16
// with f32 accumulators and stage their tiles in shared memory, and ptxas
// accepts them; sm_80 (Ampere) has the same instruction. f16 models use
// the f16 form; f32 models keep SIMT kernels.

// CHECK-DAG: .visible .entry grouped_gemm_bf16_bf16_i32(
// CHECK-DAG: .visible .entry grouped_gemm_f32_bf16_i32(
// CHECK-DAG: .shared .align 4 .b8
// CHECK-DAG: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// CHECK-DAG: bar.sync 0

// F16: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
// F32-NOT: mma.sync
// F32-NOT: grouped_gemm

// The backward pass of a bf16 layer: dh = dy @ W2^T (bf16 lhs) and
// dx = da @ W^T (f32 lhs, split in two bf16 terms) on the tensor cores too.
// TRAIN-DAG: .visible .entry grouped_gemm_bf16_bf16_i32(
// TRAIN-DAG: .visible .entry grouped_gemm_f32_bf16_i32(
// TRAIN-DAG: .visible .entry grouped_gemm_bf16_bf16_i32_wt(
// TRAIN-DAG: .visible .entry grouped_gemm_f32_bf16_i32_wt(
// TRAIN: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32

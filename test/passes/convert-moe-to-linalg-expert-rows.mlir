// RUN: moe-opt %s --convert-moe-to-linalg="expert-rows device-kernels" --split-input-file | FileCheck %s
// RUN: moe-opt %s --convert-moe-to-linalg="expert-rows" --split-input-file | FileCheck %s --check-prefix=NOKERNELS

// A bf16 SwiGLU expert FFN with device kernels: fc1 and fc3 (bf16 x bf16)
// share one tensor-core grouped GEMM kernel, fc2 (the f32 hidden activation
// x bf16) another that splits the f32 operand into two bf16 terms. Each
// kernel is a gpu.func of @moe_kernels with its workgroup buffers of packed
// bf16 pairs (64 rows of 16 + 4 words), launched through a declaration on
// 128 threads; the operands reach it with dynamic shapes.
// CHECK-LABEL: func.func private @__moe_launch.grouped_gemm_f32_bf16_i32(index, index, index, index, index, index, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?x?x?xbf16, strided<[?, ?, ?], offset: ?>>, memref<?xi32, strided<[?], offset: ?>>, memref<?x?xf32>)
// CHECK-LABEL: func.func private @__moe_launch.grouped_gemm_bf16_bf16_i32(index, index, index, index, index, index, memref<?x?xbf16, strided<[?, ?], offset: ?>>, memref<?x?x?xbf16, strided<[?, ?, ?], offset: ?>>, memref<?xi32, strided<[?], offset: ?>>, memref<?x?xf32>)
// CHECK-SAME: attributes {moe.launch = @moe_kernels::@grouped_gemm_bf16_bf16_i32}
// CHECK-LABEL: func.func @expert_ffn_bf16
// CHECK-DAG: %[[C128:.*]] = arith.constant 128 : index
// CHECK-DAG: %[[XD:.*]] = tensor.cast %{{.*}} : tensor<?x16xbf16> to tensor<?x?xbf16>
// CHECK: %[[XB:.*]] = bufferization.to_buffer %[[XD]] read_only
// CHECK: %[[H1:.*]] = memref.alloc
// CHECK: call @__moe_launch.grouped_gemm_bf16_bf16_i32(%{{.*}}, %{{.*}}, %{{.*}}, %[[C128]], %{{.*}}, %{{.*}}, %[[XB]], %{{.*}}, %{{.*}}, %[[H1]])
// CHECK: call @__moe_launch.grouped_gemm_bf16_bf16_i32(
// CHECK: linalg.generic
// CHECK: call @__moe_launch.grouped_gemm_f32_bf16_i32(
// CHECK: linalg.generic
// CHECK: gpu.module @moe_kernels
// CHECK: gpu.func @grouped_gemm_bf16_bf16_i32({{.*}}) workgroup(%{{.*}} : memref<64x20xi32, #gpu.address_space<workgroup>>, %{{.*}} : memref<64x20xi32, #gpu.address_space<workgroup>>) kernel
// CHECK: gpu.thread_id x
// CHECK: scf.for
// CHECK: scf.if
// CHECK: scf.for
// CHECK: gpu.barrier
// CHECK-COUNT-16: nvvm.mma.sync {{.*}}multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>
// CHECK-NOT: nvvm.mma.sync
// CHECK: gpu.barrier
// CHECK: gpu.return
// CHECK: gpu.func @grouped_gemm_f32_bf16_i32({{.*}}) workgroup(%{{.*}} : memref<64x20xi32, #gpu.address_space<workgroup>>, %{{.*}} : memref<64x20xi32, #gpu.address_space<workgroup>>, %{{.*}} : memref<64x20xi32, #gpu.address_space<workgroup>>) kernel
// CHECK: arith.truncf {{.*}} : f32 to bf16
// CHECK-COUNT-32: nvvm.mma.sync
// CHECK-NOT: nvvm.mma.sync
// CHECK: gpu.return

// Without device kernels the products stay linalg.generic ops.
// NOKERNELS-LABEL: func.func @expert_ffn_bf16
// NOKERNELS-NOT: __moe_launch
// NOKERNELS-NOT: gpu.module
func.func @expert_ffn_bf16(%xs: tensor<?x16xbf16>, %off: tensor<5xi32>,
                           %w1: tensor<4x16x32xbf16>, %w2: tensor<4x32x16xbf16>,
                           %w3: tensor<4x16x32xbf16>) -> tensor<?x16xbf16> {
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<4x16x32xbf16>
      : tensor<?x16xbf16>, tensor<5xi32>, tensor<4x16x32xbf16>, tensor<4x32x16xbf16>
  return %ys : tensor<?x16xbf16>
}

// -----

// f16 operands are mma f16 registers (vector<2xf16>, bitcast from the
// packed words).
// CHECK-LABEL: func.func @expert_ffn_f16
// CHECK: call @__moe_launch.grouped_gemm_f16_f16_i32(
// CHECK: call @__moe_launch.grouped_gemm_f32_f16_i32(
// CHECK: gpu.func @grouped_gemm_f16_f16_i32
// CHECK: llvm.bitcast %{{.*}} : i32 to vector<2xf16>
// CHECK: nvvm.mma.sync {{.*}}shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (vector<2xf16>, vector<2xf16>, f32) -> !llvm.struct<(f32, f32, f32, f32)>
func.func @expert_ffn_f16(%xs: tensor<?x8xf16>, %off: tensor<3xi32>,
                          %w1: tensor<2x8x24xf16>, %w2: tensor<2x24x8xf16>)
    -> tensor<?x8xf16> {
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2
      : tensor<?x8xf16>, tensor<3xi32>, tensor<2x8x24xf16>, tensor<2x24x8xf16>
  return %ys : tensor<?x8xf16>
}

// -----

// f32 FFNs keep the grouped linalg.generic products (no tensor cores for
// f32 operands).
// CHECK-LABEL: func.func @expert_ffn_f32
// CHECK-NOT: __moe_launch
// CHECK-NOT: gpu.module
func.func @expert_ffn_f32(%xs: tensor<?x16xf32>, %off: tensor<5xi32>,
                          %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>)
    -> tensor<?x16xf32> {
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2
      : tensor<?x16xf32>, tensor<5xi32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>
  return %ys : tensor<?x16xf32>
}

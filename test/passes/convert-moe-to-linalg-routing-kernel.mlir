// RUN: moe-opt %s --convert-moe-to-linalg=device-kernels --cse --split-input-file | FileCheck %s
// RUN: moe-opt %s --convert-moe-to-linalg=device-kernels --cse --split-input-file | FileCheck %s --check-prefix=NEST --strict-whitespace
// RUN: moe-opt %s --convert-moe-to-linalg --split-input-file | FileCheck %s --check-prefix=HOST

// With device-kernels, moe.token_choice (softmax / sigmoid, one group) and
// the dropless moe.dispatch of its indices and weights become one launch of
// a fused routing kernel (passes/MoELowering/RoutingKernel.cpp); other
// routing keeps the loop lowering, as does every routing without the option.
// HOST-NOT: gpu.
// HOST-NOT: __moe_launch

// The launch declaration, then the host side: the logits' buffer and one
// fresh buffer per result, one block of 1024 threads, the results as tensors;
// the load-balancing loss reads the kernel's indices and probs.
// CHECK: func.func private @__moe_launch.moe_routing_softmax_e8_k2_norm_x3F800000_f32(index, index, index, index, index, index, memref<?x8xf32, strided<[?, ?], offset: ?>>, memref<?x2xf32>, memref<?x2xi32>, memref<?x8xf32>, memref<?xi32>, memref<?xf32>, memref<9xi32>) attributes {moe.launch = @moe_kernels::@moe_routing_softmax_e8_k2_norm_x3F800000_f32}
// CHECK-LABEL: func.func @mixtral
// CHECK-SAME: (%[[L:.*]]: tensor<?x8xf32>)
// CHECK-DAG: %[[C1:.*]] = arith.constant 1 : index
// CHECK-DAG: %[[C1024:.*]] = arith.constant 1024 : index
// CHECK: %[[LB:.*]] = bufferization.to_buffer %[[L]] read_only
// CHECK: %[[W:.*]] = memref.alloc(%{{.*}}) : memref<?x2xf32>
// CHECK: %[[I:.*]] = memref.alloc(%{{.*}}) : memref<?x2xi32>
// CHECK: %[[P:.*]] = memref.alloc(%{{.*}}) : memref<?x8xf32>
// CHECK: %[[RT:.*]] = memref.alloc(%{{.*}}) : memref<?xi32>
// CHECK: %[[RW:.*]] = memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK: %[[OFF:.*]] = memref.alloc() : memref<9xi32>
// CHECK: call @__moe_launch.moe_routing_softmax_e8_k2_norm_x3F800000_f32(%[[C1]], %[[C1]], %[[C1]], %[[C1024]], %[[C1]], %[[C1]], %[[LB]], %[[W]], %[[I]], %[[P]], %[[RT]], %[[RW]], %[[OFF]])
// CHECK: %[[IT:.*]] = bufferization.to_tensor %[[I]] restrict writable
// CHECK: %[[PT:.*]] = bufferization.to_tensor %[[P]] restrict writable
// CHECK: %[[RTT:.*]] = bufferization.to_tensor %[[RT]] restrict writable
// CHECK: %[[RWT:.*]] = bufferization.to_tensor %[[RW]] restrict writable
// CHECK: %[[OFFT:.*]] = bufferization.to_tensor %[[OFF]] restrict writable
// CHECK: tensor.extract %[[IT]]
// CHECK: ins(%[[PT]] : tensor<?x8xf32>)
// CHECK: return %[[RTT]], %[[RWT]], %[[OFFT]]

// The kernel: shared counts [E + 1] and placement masks [E, 32 warps].
// CHECK: gpu.module @moe_kernels
// CHECK: gpu.func @moe_routing_softmax_e8_k2_norm_x3F800000_f32(%[[LOGITS:.*]]: memref<?x8xf32, strided<[?, ?], offset: ?>>, %[[WEIGHTS:.*]]: memref<?x2xf32>, %[[INDICES:.*]]: memref<?x2xi32>, %[[PROBS:.*]]: memref<?x8xf32>, %[[ROWTOKEN:.*]]: memref<?xi32>, %[[ROWWEIGHT:.*]]: memref<?xf32>, %[[OFFSETS:.*]]: memref<9xi32>) workgroup(%[[COUNTS:.*]] : memref<9xi32, #gpu.address_space<workgroup>>, %[[MASKS:.*]] : memref<8x32xi32, #gpu.address_space<workgroup>>) kernel attributes {known_block_size = array<i32: 1024, 1, 1>}
// CHECK: %[[TID:.*]] = gpu.thread_id x
// CHECK: %[[T:.*]] = memref.dim %[[LOGITS]], %{{.*}}
// CHECK: memref.store %{{.*}}, %[[COUNTS]]
// CHECK: memref.store %{{.*}}, %[[MASKS]]
// CHECK: gpu.barrier
// Sweep 1: thread i routes tokens i, i + 1024, ...: softmax (max, sum of
// exp(x - max), divide), k selection passes, each pick counted.
// CHECK: scf.for %[[TOK:.*]] = %[[TID]] to %[[T]] step %{{.*}} {
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: arith.addf
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: memref.store %{{.*}}, %[[PROBS]][%[[TOK]], %{{.*}}]
// CHECK: memref.load %[[PROBS]]
// CHECK: memref.store %{{.*}}, %[[INDICES]][%[[TOK]], %{{.*}}]
// CHECK: memref.atomic_rmw addi %{{.*}}, %[[COUNTS]]
// CHECK: arith.divf
// CHECK: memref.store %{{.*}}, %[[WEIGHTS]][%[[TOK]], %{{.*}}]
// CHECK: gpu.barrier
// Thread 0: offsets, and each expert's first row in the shared counts.
// CHECK: arith.cmpi eq, %[[TID]], %{{.*}}
// CHECK: scf.if
// CHECK: memref.store %{{.*}}, %[[OFFSETS]]
// CHECK: gpu.barrier
// Padding rows past offsets[E].
// CHECK: memref.load %[[COUNTS]]
// CHECK: memref.store %{{.*}}, %[[ROWTOKEN]]
// Stable placement, 1024 tokens per step: lane bits in the masks, then a
// row from the earlier warps' and lower lanes' bits.
// CHECK: %[[LANE:.*]] = arith.remui %[[TID]]
// CHECK: arith.shli %{{.*}}, %{{.*}} : i32
// CHECK: arith.ceildivui %[[T]]
// CHECK: scf.for
// CHECK: memref.atomic_rmw ori %{{.*}}, %[[MASKS]]
// CHECK: gpu.barrier
// CHECK: math.ctpop
// CHECK: math.ctpop
// CHECK: memref.load %[[COUNTS]]
// CHECK: memref.store %{{.*}}, %[[ROWTOKEN]]
// CHECK: memref.load %[[WEIGHTS]]
// CHECK: memref.store %{{.*}}, %[[ROWWEIGHT]]
// CHECK: gpu.barrier
// CHECK: memref.store %{{.*}}, %[[MASKS]]
// CHECK: math.ctpop
// CHECK: memref.store %{{.*}}, %[[COUNTS]]
// CHECK: gpu.barrier
// CHECK: gpu.return

// Every thread reaches every barrier: they sit in the kernel body or
// directly in the placement loop (same trip count on all threads), never in
// an scf.if.
// NEST-LABEL: gpu.func @moe_routing_softmax_e8_k2_norm_x3F800000_f32
// NEST: {{^      }}gpu.barrier
// NEST: {{^      }}gpu.barrier
// NEST: {{^      }}gpu.barrier
// NEST: {{^      }}scf.for %{{.*}} = %c0 to %{{.*}} step %c1 {
// NEST: {{^        }}gpu.barrier
// NEST: {{^        }}gpu.barrier
// NEST: {{^        }}gpu.barrier
// NEST-NEXT: {{^      }}}
// NEST-NEXT: {{^      }}gpu.return

func.func @mixtral(%logits: tensor<?x8xf32>)
    -> (tensor<?xi32>, tensor<?xf32>, tensor<9xi32>, tensor<f32>) {
  %w, %idx, %p = moe.token_choice softmax %logits top 2 {normalize}
      : tensor<?x8xf32>
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64}
      : tensor<?x2xi32>, tensor<?x2xf32>
  %aux = moe.load_balancing_loss %p, %idx : tensor<?x8xf32>, tensor<?x2xi32>
  return %rt, %rw, %off, %aux
      : tensor<?xi32>, tensor<?xf32>, tensor<9xi32>, tensor<f32>
}


// -----

// Sigmoid with a selection bias and a scaling factor on bf16 logits with a
// static token count: the kernel takes any T (casts), reads the bias, and
// has an extra f32 [T, E] buffer for the unrounded probabilities.
// CHECK: func.func private @__moe_launch.moe_routing_sigmoid_e8_k2_bias_x40200000_bf16(index, index, index, index, index, index, memref<?x8xbf16, strided<[?, ?], offset: ?>>, memref<8xbf16, strided<[?], offset: ?>>, memref<?x2xbf16>, memref<?x2xi32>, memref<?x8xbf16>, memref<?xi32>, memref<?xbf16>, memref<9xi32>, memref<?x8xf32>)
// CHECK-LABEL: func.func @sigmoid_bias_bf16
// CHECK: tensor.cast %{{.*}} : tensor<5x8xbf16> to tensor<?x8xbf16>
// CHECK: %[[SCRATCH:.*]] = memref.alloc(%{{.*}}) : memref<?x8xf32>
// CHECK: call @__moe_launch.moe_routing_sigmoid_e8_k2_bias_x40200000_bf16({{.*}}, %[[SCRATCH]])
// CHECK: tensor.cast %{{.*}} : tensor<?x2xbf16> to tensor<5x2xbf16>
// CHECK: tensor.cast %{{.*}} : tensor<?xbf16> to tensor<10xbf16>
// CHECK: gpu.func @moe_routing_sigmoid_e8_k2_bias_x40200000_bf16(%[[LOGITS:.*]]: memref<?x8xbf16, strided<[?, ?], offset: ?>>, %[[BIAS:.*]]: memref<8xbf16, strided<[?], offset: ?>>, %{{.*}}: memref<?x2xbf16>, %{{.*}}, %[[PROBS:.*]]: memref<?x8xbf16>, %{{.*}}, %{{.*}}, %{{.*}}, %[[PROBS32:.*]]: memref<?x8xf32>)
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: arith.negf
// CHECK: math.exp
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: memref.store %{{.*}}, %[[PROBS]]
// CHECK: memref.store %{{.*}}, %[[PROBS32]]
// CHECK: memref.load %[[PROBS32]]
// CHECK: memref.load %[[BIAS]]
// CHECK: arith.addf
// CHECK: arith.constant 2.500000e+00 : f32
// CHECK: arith.truncf %{{.*}} : f32 to bf16


func.func @sigmoid_bias_bf16(%logits: tensor<5x8xbf16>, %bias: tensor<8xbf16>)
    -> (tensor<5x2xbf16>, tensor<5x2xi32>, tensor<5x8xbf16>, tensor<10xi32>,
        tensor<10xbf16>, tensor<9xi32>) {
  %w, %idx, %p = moe.token_choice sigmoid %logits top 2 bias %bias
      {scaling_factor = 2.5 : f32} : tensor<5x8xbf16>, tensor<8xbf16>
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64}
      : tensor<5x2xi32>, tensor<5x2xbf16>
  return %w, %idx, %p, %rt, %rw, %off
      : tensor<5x2xbf16>, tensor<5x2xi32>, tensor<5x8xbf16>, tensor<10xi32>,
        tensor<10xbf16>, tensor<9xi32>
}


// -----

// Two routings of the same configuration share one kernel.
// CHECK-LABEL: func.func @shared_kernel
// CHECK-COUNT-2: call @__moe_launch.moe_routing_softmax_e16_k4_x3F800000_f32(
// CHECK-COUNT-1: gpu.func @moe_routing
// CHECK-NOT: gpu.func


func.func @shared_kernel(%a: tensor<?x16xf32>, %b: tensor<?x16xf32>)
    -> (tensor<?xi32>, tensor<?xi32>) {
  %w, %idx, %p = moe.token_choice softmax %a top 4 : tensor<?x16xf32>
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 16 : i64}
      : tensor<?x4xi32>, tensor<?x4xf32>
  %w2, %idx2, %p2 = moe.token_choice softmax %b top 4 : tensor<?x16xf32>
  %rt2, %rw2, %off2 = moe.dispatch %idx2, %w2 {num_experts = 16 : i64}
      : tensor<?x4xi32>, tensor<?x4xf32>
  return %rt, %rt2 : tensor<?xi32>, tensor<?xi32>
}


// -----

// Not fused: a capacity (dropping, priority).
// CHECK-LABEL: func.func @capacity
// CHECK-NOT: __moe_launch
// CHECK-NOT: gpu.module
// CHECK: scf.for


func.func @capacity(%logits: tensor<?x8xf32>) -> tensor<?xi32> {
  %w, %idx, %p = moe.token_choice softmax %logits top 1 : tensor<?x8xf32>
  %rt, %rw, %off = moe.dispatch %idx, %w
      {num_experts = 8 : i64, capacity_factor = 1.25 : f64}
      : tensor<?x1xi32>, tensor<?x1xf32>
  return %rt : tensor<?xi32>
}


// -----

// Not fused: expert groups.
// CHECK-LABEL: func.func @groups
// CHECK-NOT: __moe_launch
// CHECK-NOT: gpu.module
// CHECK: scf.for


func.func @groups(%logits: tensor<?x8xf32>) -> tensor<?xi32> {
  %w, %idx, %p = moe.token_choice sigmoid %logits top 2
      {num_groups = 4 : i64, topk_groups = 2 : i64} : tensor<?x8xf32>
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64}
      : tensor<?x2xi32>, tensor<?x2xf32>
  return %rt : tensor<?xi32>
}


// -----

// Not fused: SparseMixer scores.
// CHECK-LABEL: func.func @sparse_mixer
// CHECK-NOT: __moe_launch
// CHECK-NOT: gpu.module
// CHECK: scf.for


func.func @sparse_mixer(%logits: tensor<?x16xf32>) -> tensor<?xi32> {
  %w, %idx, %p = moe.token_choice sparse_mixer %logits top 2 : tensor<?x16xf32>
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 16 : i64}
      : tensor<?x2xi32>, tensor<?x2xf32>
  return %rt : tensor<?xi32>
}


// -----

// Not fused: more experts than the shared-memory masks hold (256).
// CHECK-LABEL: func.func @many_experts
// CHECK-NOT: __moe_launch
// CHECK-NOT: gpu.module
// CHECK: scf.for


func.func @many_experts(%logits: tensor<?x320xf32>) -> tensor<?xi32> {
  %w, %idx, %p = moe.token_choice softmax %logits top 2 : tensor<?x320xf32>
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 320 : i64}
      : tensor<?x2xi32>, tensor<?x2xf32>
  return %rt : tensor<?xi32>
}


// -----

// Not fused: the dispatch's weights are not the routing's.
// CHECK-LABEL: func.func @other_weights
// CHECK-NOT: __moe_launch
// CHECK-NOT: gpu.module
// CHECK: scf.for


func.func @other_weights(%logits: tensor<?x8xf32>, %w: tensor<?x2xf32>) -> tensor<?xi32> {
  %w0, %idx, %p = moe.token_choice softmax %logits top 2 : tensor<?x8xf32>
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64}
      : tensor<?x2xi32>, tensor<?x2xf32>
  return %rt : tensor<?xi32>
}

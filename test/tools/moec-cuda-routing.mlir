// REQUIRES: cuda-toolkit, ptxas
// RUN: moec %moec_src_root/examples/mixtral_layer.mlir --target=cuda --emit=ptx -o %t.ptx
// RUN: FileCheck %s < %t.ptx
// RUN: %ptxas -arch=sm_90 -v %t.ptx -o %t.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS
// RUN: sed -e 's/xf32>/xbf16>/g' %moec_src_root/examples/mixtral_layer.mlir > %t.bf16.mlir
// RUN: moec %t.bf16.mlir --target=cuda --emit=ptx -o %t.bf16.ptx
// RUN: FileCheck %s --check-prefix=BF16 < %t.bf16.ptx
// RUN: %ptxas -arch=sm_90 %t.bf16.ptx -o %t.bf16.cubin
// RUN: moec %s --target=cuda --emit=ptx -o %t.e256.ptx
// RUN: FileCheck %s --check-prefix=E256 < %t.e256.ptx
// RUN: %ptxas -arch=sm_90 -v %t.e256.ptx -o %t.e256.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS256
// RUN: moec %moec_src_root/examples/switch_layer.mlir --target=cuda --emit=ptx -o %t.switch.ptx
// RUN: not grep moe_routing %t.switch.ptx

// Mixtral's routing (softmax top-2, renormalised, dropless) is one fused
// kernel of one 1024-thread block: shared-memory atomics for the histogram
// and the placement masks, popc for the ranks, bar.sync between phases.
// The block size bounds ptxas to 64 registers per thread, without spills.
// CHECK: .visible .entry moe_routing_softmax_e8_k2_norm_x3F800000_f32(
// CHECK: .maxntid 1024, 1, 1
// CHECK: bar.sync
// CHECK: atom.shared.add.u32
// CHECK: atom.shared.or.b32
// CHECK: popc.b32
// PTXAS: Compiling entry function 'moe_routing_softmax_e8_k2_norm_x3F800000_f32' for 'sm_90'
// PTXAS-NEXT: Function properties
// PTXAS-NEXT: 0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
// BF16: .visible .entry moe_routing_softmax_e8_k2_norm_x3F800000_bf16(

// The largest routing the kernel takes, 256 experts (32 KiB of masks, within
// the 48 KiB of static shared memory), with a selection bias and a scaling
// factor; the switch layer's dispatch has a capacity and is not fused.
// E256: .visible .entry moe_routing_sigmoid_e256_k8_norm_bias_x40200000_f32(
// E256: .shared .align 4 .b8 {{.*}}[32768];
// PTXAS256: Compiling entry function 'moe_routing_sigmoid_e256_k8_norm_bias_x40200000_f32' for 'sm_90'
// PTXAS256-NEXT: Function properties
// PTXAS256-NEXT: 0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
// PTXAS256-NEXT: used 1 barriers, 33796 bytes smem

func.func @forward(%logits: tensor<?x256xf32> {moe.name = "logits", moe.dims = ["tokens", ""]},
                   %bias: tensor<256xf32> {moe.name = "bias", moe.role = "parameter"})
    -> (tensor<?xi32> {moe.name = "row_token"},
        tensor<?xf32> {moe.name = "row_weight"},
        tensor<257xi32> {moe.name = "offsets"}) {
  %w, %idx, %p = moe.token_choice sigmoid %logits top 8 bias %bias
      {normalize, scaling_factor = 2.5 : f32} : tensor<?x256xf32>, tensor<256xf32>
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 256 : i64}
      : tensor<?x8xi32>, tensor<?x8xf32>
  return %rt, %rw, %off : tensor<?xi32>, tensor<?xf32>, tensor<257xi32>
}

// RUN: moe-opt %s --moe-autodiff --split-input-file --verify-diagnostics | FileCheck %s
// RUN: not moe-opt %s --moe-autodiff="freeze=b*" --split-input-file 2>&1 | FileCheck %s --check-prefix=FROZEN

// The smallest differentiable function: the loss is a parameter, its
// gradient the seed 1. train_step keeps the inputs, returns the objective and
// one gradient per trainable parameter; an unused parameter gets none (and a
// remark). Forward is unchanged apart from the parameter groups.

// CHECK-LABEL: func.func @forward
// CHECK-SAME: moe.groups = []
// CHECK-LABEL: func.func @train_step
// CHECK-SAME: (%[[A:.*]]: tensor<f32> {moe.groups = [], moe.name = "a", moe.role = "parameter"}, %{{.*}}: tensor<3xf32> {moe.groups = [], moe.name = "b", moe.role = "parameter"})
// CHECK-SAME: -> (tensor<f32> {moe.name = "loss", moe.role = "output"}, tensor<f32> {moe.name = "grad.a", moe.role = "gradient"})
// CHECK-SAME: attributes {moe.training}
// CHECK: %[[ONE:.*]] = arith.constant dense<1.000000e+00> : tensor<f32>
// CHECK: return %[[A]], %[[ONE]]

// A frozen parameter gets no gradient.
// FROZEN-LABEL: func.func @train_step(%arg0
// FROZEN-SAME: -> (tensor<f32> {moe.name = "loss", moe.role = "output"}, tensor<f32> {moe.name = "grad.a", moe.role = "gradient"})
// expected-remark @below {{parameter 'b' does not affect the loss; it gets no gradient}}
func.func @forward(%a: tensor<f32> {moe.name = "a", moe.role = "parameter"},
                   %b: tensor<3xf32> {moe.name = "b", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"}) {
  return %a : tensor<f32>
}

// -----

// The objective needs a loss result.
// expected-error @below {{'func.func' op needs a 0-d floating-point result named 'loss' (moe.name) to differentiate}}
func.func @forward(%a: tensor<3xf32> {moe.name = "a", moe.role = "parameter"})
    -> (tensor<3xf32> {moe.name = "loss"}) {
  return %a : tensor<3xf32>
}

// -----

// expected-error @below {{moe-autodiff: no function @forward to differentiate}}
module {
  func.func @predict(%a: tensor<f32>) -> tensor<f32> {
    return %a : tensor<f32>
  }
}

// -----

func.func @forward(%a: tensor<f32> {moe.name = "a", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"}) {
  return %a : tensor<f32>
}
// expected-error @below {{moe-autodiff: the module already defines @train_step}}
func.func @train_step() {
  return
}

// -----

// The vector-Jacobian product of moe.expert_ffn keeps its activation and
// SwiGLU parameters on moe.expert_ffn_grad.

// CHECK-LABEL: func.func @train_step
// CHECK: moe.expert_ffn swiglu {{.*}} {swiglu_alpha = 1.702000e+00 : f32, swiglu_beta = 1.000000e+00 : f32, swiglu_limit = 7.000000e+00 : f32}
// CHECK: moe.expert_ffn_grad swiglu {{.*}} {swiglu_alpha = 1.702000e+00 : f32, swiglu_beta = 1.000000e+00 : f32, swiglu_limit = 7.000000e+00 : f32}
func.func @forward(%xs: tensor<6x4xf32> {moe.name = "xs"},
                   %off: tensor<3xi32> {moe.name = "off"},
                   %w1: tensor<2x4x8xf32> {moe.name = "w1", moe.role = "parameter"},
                   %w2: tensor<2x8x4xf32> {moe.name = "w2", moe.role = "parameter"},
                   %w3: tensor<2x4x8xf32> {moe.name = "w3", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"}) {
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<2x4x8xf32>
      {swiglu_alpha = 1.702 : f32, swiglu_beta = 1.0 : f32,
       swiglu_limit = 7.0 : f32}
      : tensor<6x4xf32>, tensor<3xi32>, tensor<2x4x8xf32>, tensor<2x8x4xf32>
  %loss = moe.z_loss %ys : tensor<6x4xf32>
  return %loss : tensor<f32>
}

// -----

// SparseMixer routing has no gradient: the router cannot be trained through
// it.
func.func @forward(%x: tensor<6x4xf32> {moe.name = "x"},
                   %wg: tensor<4x8xf32> {moe.name = "wg", moe.role = "parameter"},
                   %w1: tensor<8x4x8xf32> {moe.name = "w1", moe.role = "parameter"},
                   %w2: tensor<8x8x4xf32> {moe.name = "w2", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"}) {
  %logits = moe.gate %x, %wg : tensor<6x4xf32>, tensor<4x8xf32>
  // expected-error @+1 {{'moe.token_choice' op cannot be differentiated: sparse_mixer routing is inference only}}
  %w, %idx, %p = moe.token_choice sparse_mixer %logits top 2 : tensor<6x8xf32>
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64}
      : tensor<6x2xi32>, tensor<6x2xf32>
  %xs = moe.permute %x, %rt : tensor<6x4xf32>, tensor<12xi32>
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2
      : tensor<12x4xf32>, tensor<9xi32>, tensor<8x4x8xf32>, tensor<8x8x4xf32>
  %zeros = arith.constant dense<0.0> : tensor<6x4xf32>
  %y = moe.combine %ys, %rt, %rw into %zeros
      : tensor<12x4xf32>, tensor<12xi32>, tensor<12xf32>, tensor<6x4xf32>
  %loss = moe.z_loss %y : tensor<6x4xf32>
  return %loss : tensor<f32>
}

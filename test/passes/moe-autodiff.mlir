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

//===- DifferentiableOpInterface.td - Reverse-mode VJPs ----*- tablegen -*-===//
//
// Every differentiable nn and moe op implements this interface; the
// `moe-autodiff` pass walks a function backwards and asks each op for its
// vector-Jacobian product.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMMON_DIFFERENTIABLE_OP_INTERFACE
#define MOEC_COMMON_DIFFERENTIABLE_OP_INTERFACE

include "mlir/IR/OpBase.td"

def DifferentiableOpInterface : OpInterface<"DifferentiableOpInterface"> {
  let cppNamespace = "::moec";
  let description = [{
    An op whose results can be differentiated with respect to its floating
    point operands. `buildVJP` emits, at the builder's insertion point, the
    ops that compute the vector-Jacobian product: given the gradient of a
    scalar loss with respect to each result, the gradient with respect to
    each operand. The forward op's operands and results are in scope and may
    be used (VJPs recompute what they need from them).
  }];
  let methods = [
    InterfaceMethod<[{
        Emits the VJP. `resultGrads` has one entry per result: the gradient
        of the loss with respect to that result (same type as the result),
        or a null Value where it is zero (unused results, integer results).
        At least one entry is non-null. `requiredOperandGrads` marks the
        operands whose gradient the caller needs; the op must set
        `operandGrads[i]` (pre-sized to the number of operands, all null)
        for each of them to a value whose type is the operand's type or
        differs only in static versus dynamic extents. It may leave an
        entry null where the operand is not differentiable (integer plans,
        seeds), and should skip work for operands that are not required
        (frozen parameters). Returns failure, after emitting an error on the
        op, for configurations it cannot differentiate.
      }], "::llvm::LogicalResult", "buildVJP",
      (ins "::mlir::OpBuilder &":$builder,
           "::llvm::ArrayRef<::mlir::Value>":$resultGrads,
           "const ::llvm::BitVector &":$requiredOperandGrads,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads)>
  ];
}

#endif // MOEC_COMMON_DIFFERENTIABLE_OP_INTERFACE

//===- Emit.h - Small IR-building helpers for the moe lowering -----*- C++ -*-===//
//
// The moe lowering builds a fair amount of scalar control flow on tensors
// (scf.for / scf.if with tensor iter_args, tensor.extract / tensor.insert)
// next to a few dense linalg ops. These helpers keep that code readable:
// every helper takes an ImplicitLocOpBuilder, integers in loops are `index`,
// and routing arithmetic is f32.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_PASSES_MOELOWERING_EMIT_H
#define MOEC_PASSES_MOELOWERING_EMIT_H

#include "dialects/MoE/MoEDialect.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Utils/StructuredOpsUtils.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SmallVector.h"

#include <optional>

namespace moec::lowering {

using mlir::AffineMap;
using mlir::ArrayRef;
using mlir::RankedTensorType;
using mlir::SmallVector;
using mlir::Type;
using mlir::Value;
using mlir::ValueRange;
using IB = mlir::ImplicitLocOpBuilder;

/// Marks the math.erf ops this lowering creates; the pass expands exactly
/// those with upstream's polynomial approximation (math.erf has no LLVM
/// lowering) and removes the marker.
inline constexpr llvm::StringLiteral kExpandErfAttr = "__moe_expand_erf";

//===----------------------------------------------------------------------===//
// Constants, casts, arithmetic
//===----------------------------------------------------------------------===//

Value cIdx(IB &b, int64_t value);
Value cInt(IB &b, Type type, int64_t value);
Value cI32(IB &b, int64_t value);
Value cI64(IB &b, int64_t value);
Value cF32(IB &b, double value);
Value cF64(IB &b, double value);
Value cFloat(IB &b, Type type, double value);

/// The type of a ranked tensor value.
RankedTensorType tensorType(Value value);
/// Extent `d` of a ranked tensor as an index (a constant when static).
Value dim(IB &b, Value tensor, int64_t d);

/// Integer <-> index casts (signed).
Value toIndex(IB &b, Value integer);
Value toInt(IB &b, Value index, Type type);
/// A float scalar widened to f32 (unchanged when already f32).
Value toF32(IB &b, Value value);
/// An f32 scalar narrowed to `type` (unchanged when `type` is f32).
Value fromF32(IB &b, Value value, Type type);
/// Signed index -> f32 / f64 (through i64).
Value indexToF32(IB &b, Value index);
Value indexToF64(IB &b, Value index);

Value addI(IB &b, Value x, Value y);
Value subI(IB &b, Value x, Value y);
Value mulI(IB &b, Value x, Value y);
Value minSI(IB &b, Value x, Value y);
Value maxSI(IB &b, Value x, Value y);
Value cmpI(IB &b, mlir::arith::CmpIPredicate predicate, Value x, Value y);
Value cmpF(IB &b, mlir::arith::CmpFPredicate predicate, Value x, Value y);
Value andI(IB &b, Value x, Value y);
Value orI(IB &b, Value x, Value y);
Value select(IB &b, Value cond, Value x, Value y);
/// 0 <= value < bound (both index).
Value inRange(IB &b, Value value, Value bound);

//===----------------------------------------------------------------------===//
// Tensors
//===----------------------------------------------------------------------===//

Value extract(IB &b, Value tensor, ValueRange indices);
Value insert(IB &b, Value scalar, Value tensor, ValueRange indices);
/// tensor.empty of `type`; `sizes` gives every extent as an index value and
/// only the dynamic ones are used.
Value empty(IB &b, RankedTensorType type, ArrayRef<Value> sizes);
/// `type` filled with `scalar`.
Value filled(IB &b, RankedTensorType type, ArrayRef<Value> sizes, Value scalar);
/// A rank-0 tensor holding `scalar`.
Value scalarTensor(IB &b, Value scalar);
RankedTensorType withElement(RankedTensorType type, Type element);
/// The slice `source[offsets...][sizes...]` with unit strides, rank reduced
/// to `resultShape` (dropping leading unit dimensions).
Value slice(IB &b, Value source, ArrayRef<Value> offsets, ArrayRef<Value> sizes,
            ArrayRef<int64_t> resultShape);
Value insertSlice(IB &b, Value source, Value dest, ArrayRef<Value> offsets,
                  ArrayRef<Value> sizes);

//===----------------------------------------------------------------------===//
// Control flow on values
//===----------------------------------------------------------------------===//

using LoopBody = llvm::function_ref<SmallVector<Value>(IB &, Value, ValueRange)>;
/// scf.for %iv = lb to ub step 1 iter_args(inits); `body` returns the values
/// to yield.
SmallVector<Value> forLoop(IB &b, Value lb, Value ub, ValueRange inits,
                           LoopBody body);
Value forLoop1(IB &b, Value lb, Value ub, Value init, LoopBody body);

using Branch = llvm::function_ref<SmallVector<Value>(IB &)>;
/// scf.if with results; both branches return values of the same types.
SmallVector<Value> ifElse(IB &b, Value cond, Branch thenBranch,
                          Branch elseBranch);
Value ifElse1(IB &b, Value cond, Branch thenBranch, Branch elseBranch);

//===----------------------------------------------------------------------===//
// Structured ops
//===----------------------------------------------------------------------===//

using GenericBody = llvm::function_ref<Value(IB &, ValueRange)>;
/// A single-result linalg.generic writing into `init`; the body gets the
/// block arguments (inputs, then the output) and returns the value to yield.
Value generic(IB &b, Value init, ValueRange inputs, ArrayRef<AffineMap> maps,
              ArrayRef<mlir::utils::IteratorType> iterators, GenericBody body);
/// An all-parallel elementwise linalg.generic over `init`'s shape with
/// identity maps for every input.
Value elementwise(IB &b, Value init, ValueRange inputs, GenericBody body);
/// linalg.index inside a generic body.
Value loopIndex(IB &b, int64_t d);
/// The affine map (d0 .. d{numDims-1}) -> (d{results[0]}, ...).
AffineMap projection(IB &b, unsigned numDims, ArrayRef<unsigned> results);

/// `lhs [M, K] @ rhs [K, N]` accumulated in f32 (operands of any float type
/// are widened by linalg.matmul's implicit cast); `m`, `n` are the index
/// extents.
Value matmulF32(IB &b, Value lhs, Value rhs, Value m, Value n);
/// The transpose [N, M] of the matrix `matrix` [M, N] (linalg.transpose), so
/// that products with a transposed operand stay plain linalg.matmul ops,
/// which the CPU schedule tiles.
Value transposed(IB &b, Value matrix);

//===----------------------------------------------------------------------===//
// Scalar math (f32)
//===----------------------------------------------------------------------===//

Value sigmoid(IB &b, Value x);

/// An expert FFN's activation with the SwiGLU parameters of moe.expert_ffn
/// (the defaults, plain SwiGLU, for every other op and activation). The
/// hidden value of the pre-activations z1 = x @ fc1 + b1 and, when gated,
/// z3 = x @ fc3 + b3 is activate(z1) * gatedFactor(z3).
struct FFNActivation {
  moe::Activation kind;
  double swigluAlpha = 1.0, swigluBeta = 0.0;
  std::optional<double> swigluLimit;
};

/// The activation of moe.expert_ffn and moe.expert_ffn_grad.
template <typename OpT> FFNActivation ffnActivationOf(OpT op) {
  FFNActivation activation{op.getActivation(),
                           op.getSwigluAlpha().convertToDouble(),
                           op.getSwigluBeta().convertToDouble(),
                           std::nullopt};
  if (mlir::FloatAttr limit = op.getSwigluLimitAttr())
    activation.swigluLimit = limit.getValueAsDouble();
  return activation;
}

/// The activation of z1: silu, exact gelu and gelu_tanh for the gated
/// activations, G * sigmoid(alpha * G) with G = min(z1, limit) for swiglu.
Value activate(IB &b, Value z1, const FFNActivation &activation);
/// The derivative of `activate` at z1 (0 where the limit clips z1).
Value activateGrad(IB &b, Value z1, const FFNActivation &activation);
/// The factor that gates the activation: clamp(z3, -limit, limit) + beta,
/// that is z3 itself without SwiGLU parameters.
Value gatedFactor(IB &b, Value z3, const FFNActivation &activation);
/// The gradient of z3 from `factorGrad`, that of gatedFactor(z3): 0 where
/// the limit clips z3.
Value gatedFactorGrad(IB &b, Value z3, Value factorGrad,
                      const FFNActivation &activation);

} // namespace moec::lowering

#endif // MOEC_PASSES_MOELOWERING_EMIT_H

//===- CPUTileAndVectorize.cpp - GEMM schedule for CPUs -------------------===//
//
// Matrix products carry almost all the FLOPs of an MoE model (expert FFNs,
// attention projections, the LM head). This pass gives every linalg.matmul a
// register-blocked schedule, written in the transform dialect and applied
// with the transform interpreter:
//
//   scf.forall over blocks of kRowBlock rows        (threads, see
//                                                    moe-outline-parallel-loops)
//     scf.for over kColBlock columns                (B panel stays in cache)
//       scf.for over kMicroRows rows, peeled        (full tiles unmasked,
//                                                    edge rows one by one)
//         scf.for over kMicroCols columns
//           scf.for over K, one step at a time      (accumulator in registers)
//             vector FMA of a kMicroRows x kMicroCols tile
//
// A kMicroRows x kMicroCols f32 accumulator (6 x 16) fills 12 of the 16 AVX2
// registers (or 6 of 32 AVX-512 registers with two halves each); the tiles
// that peeling leaves at the edges of dynamic extents use masked vectors.
// loop-invariant-subset-hoisting, run after this pass, keeps the accumulator
// in registers across the K loop.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Transform/IR/TransformDialect.h"
#include "mlir/Dialect/Transform/IR/TransformOps.h"
#include "mlir/Dialect/Transform/Transforms/TransformInterpreterUtils.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Parser/Parser.h"

namespace moec {
#define GEN_PASS_DEF_MOECPUTILEANDVECTORIZE
#include "passes/Passes.h.inc"
} // namespace moec

using namespace mlir;

namespace {

// The schedule; kRowBlock = 96, kColBlock = 128, kMicroRows = 6,
// kMicroCols = 16.
constexpr const char *kSchedule = R"mlir(
module attributes {transform.with_named_sequence} {
  // One matmul: loops are peeled one at a time, so each matmul gets its own
  // handles.
  transform.named_sequence @__moe_cpu_tile_matmul(
      %mm: !transform.any_op {transform.consumed}) {
    %blocks, %forall = transform.structured.tile_using_forall %mm
        tile_sizes [96, 0, 0]
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
    %panels, %panel_loop = transform.structured.tile_using_for %blocks
        tile_sizes [0, 128, 0]
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
    %rows, %row_loop = transform.structured.tile_using_for %panels
        tile_sizes [6, 0, 0]
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
    %row_for = transform.cast %row_loop
        : !transform.any_op to !transform.op<"scf.for">
    %full, %edge = transform.loop.peel %row_for
        : (!transform.op<"scf.for">) -> (!transform.any_op, !transform.any_op)
    // The last rows (fewer than 6) go one at a time: their vectors then have
    // constant masks that fold away, where a dynamic row mask would turn
    // every load and store into per-element code.
    %edge_mm = transform.structured.match ops{["linalg.matmul"]} in %edge
        : (!transform.any_op) -> !transform.any_op
    %edge_rows, %edge_loop = transform.structured.tile_using_for %edge_mm
        tile_sizes [1, 0, 0]
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
    transform.yield
  }

  transform.named_sequence @__moe_cpu_matmul(
      %root: !transform.any_op {transform.readonly}) {
    %matmuls = transform.structured.match ops{["linalg.matmul"]} in %root
        : (!transform.any_op) -> !transform.any_op
    transform.foreach %matmuls : !transform.any_op {
    ^bb0(%mm: !transform.any_op):
      transform.include @__moe_cpu_tile_matmul failures(propagate) (%mm)
          : (!transform.any_op) -> ()
    }
    %scope = transform.structured.match ops{["func.func"]} in %root
        : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %scope {
      transform.apply_patterns.scf.for_loop_canonicalization
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    %tiles = transform.structured.match ops{["linalg.matmul"]} in %root
        : (!transform.any_op) -> !transform.any_op
    %micro, %loops:2 = transform.structured.tile_using_for %tiles
        tile_sizes [0, 16, 1]
        : (!transform.any_op) -> (!transform.any_op, !transform.any_op,
                                   !transform.any_op)
    transform.structured.vectorize %micro vector_sizes [6, 16, 1]
        : !transform.any_op
    // vector.mask regions would not survive canonicalisation (a tensor.cast
    // lands inside them); masked transfers carry the mask as an operand.
    transform.apply_patterns to %scope {
      transform.apply_patterns.vector.lower_masked_transfers
    } : !transform.any_op
    transform.apply_patterns to %scope {
      transform.apply_patterns.canonicalization
      transform.apply_patterns.tensor.fold_tensor_subset_ops_into_vector_transfers
    } : !transform.any_op
    transform.apply_cse to %scope : !transform.any_op
    transform.yield
  }
}
)mlir";

struct MoECPUTileAndVectorize
    : moec::impl::MoECPUTileAndVectorizeBase<MoECPUTileAndVectorize> {
  LogicalResult initialize(MLIRContext *context) override {
    auto parsed = parseSourceString<ModuleOp>(kSchedule, context);
    if (!parsed)
      return failure();
    schedule = std::make_shared<OwningOpRef<ModuleOp>>(std::move(parsed));
    return success();
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    bool hasMatmul = false;
    module.walk([&](linalg::MatmulOp) { hasMatmul = true; });
    if (!hasMatmul)
      return;
    ModuleOp scheduleModule = schedule->get();
    auto entry = scheduleModule.lookupSymbol<transform::NamedSequenceOp>(
        "__moe_cpu_matmul");
    if (failed(transform::applyTransformNamedSequence(
            module, entry, scheduleModule, transform::TransformOptions())))
      return signalPassFailure();
  }

  // Parsed once per pass instance and shared, read-only, by its clones.
  std::shared_ptr<OwningOpRef<ModuleOp>> schedule;
};

} // namespace

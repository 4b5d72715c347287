//===- LowerStridedCopies.cpp - memref.copy of strided views -> loops -----===//
//
// finalize-memref-to-llvm turns a memref.copy between identity layouts into
// memcpy, and any other into a call to `memrefCopy`, a function of MLIR's C
// runner utilities that a model.so must not need. Copies into or out of
// strided views (concatenation into slices of a buffer, strided slices)
// become linalg.copy here, which the CPU pipeline lowers to loops. On the
// CUDA target every copy does (all-copies): the host cannot touch the
// memory, and a copy loop becomes a kernel like any other.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/PatternMatch.h"

namespace moec {
#define GEN_PASS_DEF_MOELOWERSTRIDEDCOPIES
#include "passes/Passes.h.inc"
} // namespace moec

using namespace mlir;

namespace {

bool hasIdentityLayout(Value memref) {
  return cast<MemRefType>(memref.getType()).getLayout().isIdentity();
}

struct MoELowerStridedCopies
    : moec::impl::MoELowerStridedCopiesBase<MoELowerStridedCopies> {
  using MoELowerStridedCopiesBase::MoELowerStridedCopiesBase;
  void runOnOperation() override {
    SmallVector<memref::CopyOp> copies;
    getOperation()->walk([&](memref::CopyOp copy) {
      if (allCopies || !hasIdentityLayout(copy.getSource()) ||
          !hasIdentityLayout(copy.getTarget()))
        copies.push_back(copy);
    });
    IRRewriter rewriter(&getContext());
    for (memref::CopyOp copy : copies) {
      rewriter.setInsertionPoint(copy);
      rewriter.replaceOpWithNewOp<linalg::CopyOp>(copy, copy.getSource(),
                                                  copy.getTarget());
    }
  }
};

} // namespace

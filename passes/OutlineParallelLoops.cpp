//===- OutlineParallelLoops.cpp - scf.parallel -> runtime parallel_for ----===//
//
// A compiled model runs its parallel loops on the runtime's threads, through
// the parallel_for service of include/moe/abi/moe_abi.h, so model.so needs no
// threading library of its own. This pass prepares that on memrefs: every
// outermost one-dimensional scf.parallel becomes
//
//   func.call @__moe_par_dispatch_N(%iterations, %lb, %step, %captures...)
//
// and its body moves into
//
//   func.func private @__moe_par_body_N(%begin, %end, %lb, %step,
//                                       %captures...)
//
// which runs iterations [begin, end) of the loop. The dispatch function is
// only declared here: once everything is in LLVM IR, the model emitter
// defines it to pack the (then scalar) arguments into a closure and call
// parallel_for with a trampoline that unpacks them and calls the body.
// Constants used by the body are cloned into it rather than captured.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Transforms/RegionUtils.h"

namespace moec {
#define GEN_PASS_DEF_MOEOUTLINEPARALLELLOOPS
#include "passes/Passes.h.inc"
} // namespace moec

using namespace mlir;

namespace {

bool isOutermostParallel(scf::ParallelOp loop) {
  return loop.getNumLoops() == 1 && loop.getInitVals().empty() &&
         !loop->getParentOfType<scf::ParallelOp>();
}

struct MoEOutlineParallelLoops
    : moec::impl::MoEOutlineParallelLoopsBase<MoEOutlineParallelLoops> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<scf::ParallelOp> loops;
    module.walk([&](scf::ParallelOp loop) {
      if (isOutermostParallel(loop))
        loops.push_back(loop);
    });
    unsigned counter = 0;
    SymbolTable symbols(module);
    for (scf::ParallelOp loop : loops)
      outline(loop, symbols, counter++);
  }

  void outline(scf::ParallelOp loop, SymbolTable &symbols, unsigned id) {
    MLIRContext *context = loop.getContext();
    Location loc = loop.getLoc();
    Region &region = loop.getRegion();

    // Constants are rematerialised in the body; everything else defined
    // above the loop is captured.
    SetVector<Value> used;
    getUsedValuesDefinedAbove(region, used);
    SmallVector<Value> captures;
    for (Value value : used)
      if (!matchPattern(value, m_Constant()))
        captures.push_back(value);

    Type index = IndexType::get(context);
    SmallVector<Type> dispatchTypes = {index, index, index};
    for (Value value : captures)
      dispatchTypes.push_back(value.getType());
    // The body takes [begin, end) in place of the iteration count.
    SmallVector<Type> bodyTypes = {index};
    bodyTypes.append(dispatchTypes.begin(), dispatchTypes.end());

    auto module = cast<ModuleOp>(symbols.getOp());
    OpBuilder moduleBuilder = OpBuilder::atBlockEnd(module.getBody());
    std::string suffix = std::to_string(id);
    auto dispatch = func::FuncOp::create(
        moduleBuilder, loc, "__moe_par_dispatch_" + suffix,
        FunctionType::get(context, dispatchTypes, {}));
    dispatch.setPrivate();
    auto body = func::FuncOp::create(moduleBuilder, loc,
                                     "__moe_par_body_" + suffix,
                                     FunctionType::get(context, bodyTypes, {}));
    body.setPrivate();
    symbols.insert(dispatch);
    symbols.insert(body);

    // Body: for i in [begin, end): iv = lb + i * step; <loop body>.
    Block *entry = body.addEntryBlock();
    OpBuilder b = OpBuilder::atBlockBegin(entry);
    Value begin = entry->getArgument(0), end = entry->getArgument(1);
    Value lb = entry->getArgument(2), step = entry->getArgument(3);
    IRMapping mapping;
    for (auto [capture, argument] :
         llvm::zip(captures, entry->getArguments().drop_front(4)))
      mapping.map(capture, argument);
    for (Value value : used)
      if (!mapping.contains(value))
        mapping.map(value, b.clone(*value.getDefiningOp())->getResult(0));
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    auto chunk = scf::ForOp::create(b, loc, begin, end, one);
    b.setInsertionPointToStart(chunk.getBody());
    Value iv = arith::AddIOp::create(
        b, loc, lb,
        arith::MulIOp::create(b, loc, chunk.getInductionVar(), step));
    mapping.map(loop.getInductionVars()[0], iv);
    for (Operation &op : region.front().without_terminator())
      b.clone(op, mapping);
    b.setInsertionPointToEnd(entry);
    func::ReturnOp::create(b, loc);

    // Call site: the iteration count, then what the body needs.
    OpBuilder call(loop);
    Value span = arith::SubIOp::create(call, loc, loop.getUpperBound()[0],
                                       loop.getLowerBound()[0]);
    Value iterations =
        arith::CeilDivSIOp::create(call, loc, span, loop.getStep()[0]);
    SmallVector<Value> operands = {iterations, loop.getLowerBound()[0],
                                   loop.getStep()[0]};
    operands.append(captures.begin(), captures.end());
    func::CallOp::create(call, loc, dispatch, operands);
    loop.erase();
  }
};

} // namespace

//===- GPUMapToKernels.cpp - Host code -> host code + gpu.launch kernels --===//
//
// On the CUDA target the host never touches tensor memory (it lives on the
// device): host code allocates, computes shapes and launches kernels. This
// pass splits bufferized functions whose linalg ops are already loops
// accordingly:
//
//  - every outermost scf.parallel becomes a kernel whose grid covers the
//    iteration space, one iteration per thread;
//  - other code that reads or writes memory (scalar stores, sequential loops
//    such as histograms and prefix sums) becomes a single-thread kernel,
//    together with the scalar ops that consume its results, up to the next
//    parallel loop or deallocation;
//  - scf.for / scf.if whose bodies contain parallel loops stay on the host
//    and launch kernels from their bodies;
//  - calls to the launch declarations of hand-built kernels (see
//    passes/MoELowering/DeviceKernel.h) become gpu.launch_func;
//  - constants (memref.get_global) are copied into device memory, through
//    @__moe_cuda_upload, which the model emitter defines over the runtime's
//    cuda_copy service.
//
// Moving memory-touching ops later, past host ops, is sound because host
// ops here only allocate and compute with scalars; deallocations end a
// group. A value computed on the device that host code needs (a
// data-dependent shape or loop bound) is reported as unsupported.
//
//===----------------------------------------------------------------------===//

#include "passes/MoELowering/DeviceKernel.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace moec {
#define GEN_PASS_DEF_MOEGPUMAPTOKERNELS
#include "passes/Passes.h.inc"
} // namespace moec

using namespace mlir;

namespace {

using moec::lowering::kKernelModule;
using moec::lowering::kLaunchAttr;

constexpr llvm::StringLiteral kUploadFunction = "__moe_cuda_upload";

/// Whether `op`, or anything nested in it, reads or writes memory. Ops that
/// say nothing about their effects are assumed to.
bool touchesMemory(Operation *op) {
  WalkResult result = op->walk([](Operation *inner) {
    if (inner->hasTrait<OpTrait::HasRecursiveMemoryEffects>())
      return WalkResult::advance();
    auto effects = dyn_cast<MemoryEffectOpInterface>(inner);
    if (!effects)
      return isa<func::CallOp>(inner) ? WalkResult::advance()
                                      : WalkResult::interrupt();
    if (effects.hasEffect<MemoryEffects::Read>() ||
        effects.hasEffect<MemoryEffects::Write>())
      return WalkResult::interrupt();
    return WalkResult::advance();
  });
  return result.wasInterrupted();
}

bool containsParallelLoop(Operation *op) {
  return op->walk([](scf::ParallelOp) { return WalkResult::interrupt(); })
      .wasInterrupted();
}

/// Whether `op` holds memory reads that are not inside a parallel loop: its
/// control may then depend on memory contents, which the host cannot see.
bool readsMemoryOutsideParallelLoops(Operation *op) {
  WalkResult result = op->walk<WalkOrder::PreOrder>([&](Operation *inner) {
    if (isa<scf::ParallelOp>(inner))
      return WalkResult::skip();
    auto effects = dyn_cast<MemoryEffectOpInterface>(inner);
    if (inner != op && effects && effects.hasEffect<MemoryEffects::Read>())
      return WalkResult::interrupt();
    return WalkResult::advance();
  });
  return result.wasInterrupted();
}

/// Every value defined outside `op` and used by it or inside it. (Not
/// getUsedValuesDefinedAbove: values already moved into an earlier kernel
/// are no longer "above", and those are the ones to catch.)
void collectUsedValues(Operation *op, llvm::SetVector<Value> &values) {
  op->walk([&](Operation *inner) {
    for (Value operand : inner->getOperands())
      if (!op->isAncestor(operand.getParentRegion()->getParentOp()))
        values.insert(operand);
  });
}

class KernelBuilder {
public:
  KernelBuilder(MLIRContext *context) : context(context) {}

  LogicalResult mapFunction(func::FuncOp fn) {
    if (fn.isExternal())
      return success();
    functionName = fn.getSymName().str();
    kernelCount = 0;
    if (failed(uploadConstants(fn)))
      return failure();
    return mapBlock(fn.getBody().front());
  }

private:
  /// A group of memory-touching and scalar ops that becomes one
  /// single-thread kernel.
  struct Group {
    SmallVector<Operation *> ops;
    llvm::DenseSet<Value> values; // Results of the ops.

    bool usesAny(ArrayRef<Value> used) const {
      return llvm::any_of(used, [&](Value v) { return values.contains(v); });
    }
    void add(Operation *op) {
      ops.push_back(op);
      for (Value result : op->getResults())
        values.insert(result);
    }
  };

  LogicalResult mapBlock(Block &block) {
    Group group;
    // A snapshot: flush moves ops of this block into kernels, some of them
    // ahead of the walk (see pullScalarUsers); those are skipped.
    SmallVector<Operation *> ops = llvm::map_to_vector(
        block, [](Operation &op) { return &op; });
    for (Operation *current : ops) {
      if (current->getBlock() != &block)
        continue;
      Operation &op = *current;
      llvm::SetVector<Value> usedSet;
      collectUsedValues(&op, usedSet);
      ArrayRef<Value> used = usedSet.getArrayRef();
      // Values of an earlier group live inside its kernel: nothing after it
      // may use them.
      if (llvm::any_of(used, [&](Value v) { return deviceValues.contains(v); }))
        return op.emitOpError()
               << "uses, on the host, a value that a kernel computed; the "
                  "CUDA target does not support this yet";
      if (op.hasTrait<OpTrait::IsTerminator>()) {
        if (group.usesAny(used))
          return op.emitOpError()
                 << "returns a value computed on the device";
        flush(group);
        continue;
      }
      if (auto call = dyn_cast<func::CallOp>(op)) {
        if (auto kernel = launchedKernel(call)) {
          flush(group);
          launchHandBuiltKernel(call, kernel);
          continue;
        }
      }
      if (auto loop = dyn_cast<scf::ParallelOp>(op)) {
        if (llvm::any_of(op.getOperands(),
                         [&](Value v) { return group.values.contains(v); }))
          return op.emitOpError()
                 << "has bounds that depend on values computed on the "
                    "device, which the CUDA target does not support";
        flush(group);
        if (failed(mapParallelLoop(loop)))
          return failure();
        continue;
      }
      // Loops such as combine's scatter-add read routing data to decide
      // what to do: they run on one thread, inner parallel loops included.
      bool hostControl = isa<scf::ForOp, scf::IfOp>(op) &&
                         op.getNumResults() == 0 &&
                         containsParallelLoop(&op) &&
                         !readsMemoryOutsideParallelLoops(&op);
      if (hostControl) {
        if (group.usesAny(used))
          return op.emitOpError()
                 << "is controlled by values computed on the device, which "
                    "the CUDA target does not support";
        flush(group);
        for (Region &region : op.getRegions())
          for (Block &nested : region)
            if (failed(mapBlock(nested)))
              return failure();
        continue;
      }
      if (isa<memref::AllocaOp>(op))
        return op.emitOpError()
               << "allocates host stack memory, which kernels cannot reach";
      if (touchesMemory(&op)) {
        group.add(&op);
        continue;
      }
      // A host op: allocation, views, shape arithmetic. Scalar ops on the
      // group's values join the group; deallocations end it (the group's
      // ops may still use the memory).
      if (!group.usesAny(used)) {
        if (isa<memref::DeallocOp>(op))
          flush(group);
        continue;
      }
      if (!isScalarOp(&op))
        return op.emitOpError()
               << "needs a value computed on the device (a data-dependent "
                  "shape?), which the CUDA target does not support";
      group.add(&op);
    }
    flush(group);
    return success();
  }

  /// The kernel that `call` launches when its callee is a launch
  /// declaration.
  SymbolRefAttr launchedKernel(func::CallOp call) {
    auto callee = SymbolTable::lookupNearestSymbolFrom<func::FuncOp>(
        call, call.getCalleeAttr());
    return callee ? callee->getAttrOfType<SymbolRefAttr>(kLaunchAttr)
                  : SymbolRefAttr();
  }

  /// Operands: grid x, y, z, block x, y, z, then the kernel's arguments.
  void launchHandBuiltKernel(func::CallOp call, SymbolRefAttr kernel) {
    OpBuilder b(call);
    ValueRange operands = call.getOperands();
    gpu::KernelDim3 grid{operands[0], operands[1], operands[2]};
    gpu::KernelDim3 block{operands[3], operands[4], operands[5]};
    gpu::LaunchFuncOp::create(b, call.getLoc(), kernel, grid, block,
                              /*dynamicSharedMemorySize=*/Value(),
                              operands.drop_front(6));
    call.erase();
  }

  /// A 1-d launch whose kernel will be outlined as @moe_kernels::@<fn>_<n>;
  /// null extents mean 1.
  gpu::LaunchOp createLaunch(OpBuilder &b, Location loc, Value blocks,
                             Value threads) {
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    blocks = blocks ? blocks : one;
    threads = threads ? threads : one;
    auto module = FlatSymbolRefAttr::get(context, kKernelModule);
    auto function = FlatSymbolRefAttr::get(
        context, (functionName + "_kernel_" + Twine(kernelCount++)).str());
    return gpu::LaunchOp::create(b, loc, blocks, one, one, threads, one, one,
                                 /*dynamicSharedMemorySize=*/nullptr,
                                 /*asyncTokenType=*/nullptr,
                                 /*asyncDependencies=*/{},
                                 /*workgroupAttributions=*/{},
                                 /*privateAttributions=*/{},
                                 /*clusterSizeX=*/nullptr,
                                 /*clusterSizeY=*/nullptr,
                                 /*clusterSizeZ=*/nullptr, module, function);
  }

  /// Scalar arithmetic without memory effects or regions.
  static bool isScalarOp(Operation *op) {
    return op->getNumRegions() == 0 && isMemoryEffectFree(op) &&
           llvm::none_of(op->getResultTypes(), [](Type type) {
             return isa<BaseMemRefType>(type);
           });
  }

  /// Scalar ops further down the block that use the group's values (a
  /// coefficient loaded in the forward pass, scaled again in the backward
  /// pass) move into the group when their other operands are already
  /// available: the host cannot compute them, and their results then reach
  /// later kernels like any value of the group.
  void pullScalarUsers(Group &group) {
    Block *block = group.ops.back()->getBlock();
    for (size_t i = 0; i < group.ops.size(); ++i) {
      for (Operation *user : group.ops[i]->getUsers()) {
        Operation *last = group.ops.back();
        if (user->getBlock() != block || !last->isBeforeInBlock(user) ||
            !isScalarOp(user))
          continue;
        bool available = llvm::all_of(user->getOperands(), [&](Value v) {
          Operation *def = v.getDefiningOp();
          return group.values.contains(v) || !def ||
                 def->getBlock() != block || def->isBeforeInBlock(last);
        });
        if (!available)
          continue;
        user->moveAfter(last);
        group.add(user);
      }
    }
  }

  /// One thread runs the group's ops, at the position of the last one.
  void flush(Group &group) {
    if (group.ops.empty())
      return;
    pullScalarUsers(group);
    Operation *last = group.ops.back();
    OpBuilder b(last->getContext());
    b.setInsertionPointAfter(last);
    Location loc = group.ops.front()->getLoc();
    gpu::LaunchOp launch = createLaunch(b, loc, /*blocks=*/{}, /*threads=*/{});
    Block &body = launch.getBody().front();
    b.setInsertionPointToEnd(&body);
    auto terminator = gpu::TerminatorOp::create(b, loc);
    for (Operation *op : group.ops)
      op->moveBefore(terminator);
    // Scalars that later kernels read (CSE hoists loads of routing data out
    // of loops) travel through one-element device buffers; the host itself
    // never gets them (deviceValues catches host uses).
    for (Value value : group.values) {
      SmallVector<OpOperand *> later;
      for (OpOperand &use : value.getUses())
        if (!launch->isAncestor(use.getOwner()) &&
            use.getOwner()->getBlock() != launch->getBlock())
          later.push_back(&use);
      if (later.empty() || !MemRefType::isValidElementType(value.getType())) {
        deviceValues.insert(value);
        continue;
      }
      OpBuilder host(launch);
      auto buffer = memref::AllocOp::create(
          host, loc, MemRefType::get({}, value.getType()));
      OpBuilder device(terminator);
      memref::StoreOp::create(device, loc, value, buffer);
      for (OpOperand *use : later) {
        OpBuilder reader(use->getOwner());
        use->set(memref::LoadOp::create(reader, loc, buffer.getResult(),
                                        ValueRange{}));
      }
      // Every use is in this block (or nested in it): free before its end.
      OpBuilder end(launch->getBlock()->getTerminator());
      memref::DeallocOp::create(end, loc, buffer);
      deviceValues.insert(value); // Any host use left is an error.
    }
    group = Group();
  }

  /// The loop's iterations, one per thread, over a 1-d grid of 256-thread
  /// blocks; the innermost dimension varies fastest across a warp, so
  /// neighbouring threads touch neighbouring elements.
  LogicalResult mapParallelLoop(scf::ParallelOp loop) {
    if (!loop.getInitVals().empty())
      return loop.emitOpError()
             << "with reductions cannot be mapped to a GPU grid yet";
    Location loc = loop.getLoc();
    OpBuilder b(loop);
    SmallVector<Value> counts;
    Value total = arith::ConstantIndexOp::create(b, loc, 1);
    for (auto [lb, ub, step] : llvm::zip(
             loop.getLowerBound(), loop.getUpperBound(), loop.getStep())) {
      Value extent = arith::SubIOp::create(b, loc, ub, lb);
      Value count = arith::CeilDivSIOp::create(b, loc, extent, step);
      count = arith::MaxSIOp::create(
          b, loc, count, arith::ConstantIndexOp::create(b, loc, 0));
      counts.push_back(count);
      total = arith::MulIOp::create(b, loc, total, count);
    }
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    Value blockSize = arith::ConstantIndexOp::create(b, loc, kBlockSize);
    // An empty loop still launches one block (grids are never empty); its
    // threads all fail the bounds check.
    Value blocks = arith::MaxSIOp::create(
        b, loc, arith::CeilDivSIOp::create(b, loc, total, blockSize), one);
    gpu::LaunchOp launch = createLaunch(b, loc, blocks, blockSize);
    Block &body = launch.getBody().front();
    b.setInsertionPointToEnd(&body);
    gpu::TerminatorOp::create(b, loc);
    b.setInsertionPointToStart(&body);
    Value linear = arith::AddIOp::create(
        b, loc,
        arith::MulIOp::create(b, loc, launch.getBlockIds().x, blockSize),
        launch.getThreadIds().x);
    Value inBounds = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                           linear, total);
    auto guard = scf::IfOp::create(b, loc, inBounds, /*withElse=*/false);
    b.setInsertionPoint(guard.thenBlock()->getTerminator());
    IRMapping mapping;
    Value remaining = linear;
    for (int d = loop.getNumLoops() - 1; d >= 0; --d) {
      Value index = remaining;
      if (d > 0) {
        index = arith::RemUIOp::create(b, loc, remaining, counts[d]);
        remaining = arith::DivUIOp::create(b, loc, remaining, counts[d]);
      }
      Value iv = arith::AddIOp::create(
          b, loc, loop.getLowerBound()[d],
          arith::MulIOp::create(b, loc, index, loop.getStep()[d]));
      mapping.map(loop.getInductionVars()[d], iv);
    }
    for (Operation &op : loop.getBody()->without_terminator())
      b.clone(op, mapping);
    loop.erase();
    return success();
  }

  /// Replaces every host-level memref.get_global by a device copy, freed
  /// before the function returns unless it is returned.
  LogicalResult uploadConstants(func::FuncOp fn) {
    SmallVector<memref::GetGlobalOp> constants;
    WalkResult nested = fn.walk([&](memref::GetGlobalOp get) {
      if (get->getParentOp() != fn) {
        get.emitOpError() << "inside a loop or conditional cannot be placed "
                             "on the CUDA target yet";
        return WalkResult::interrupt();
      }
      constants.push_back(get);
      return WalkResult::advance();
    });
    if (nested.wasInterrupted())
      return failure();
    if (constants.empty())
      return success();
    auto module = fn->getParentOfType<ModuleOp>();
    OpBuilder b(context);
    Type index = b.getIndexType();
    func::FuncOp upload = module.lookupSymbol<func::FuncOp>(kUploadFunction);
    if (!upload) {
      b.setInsertionPointToStart(module.getBody());
      upload = func::FuncOp::create(
          b, module.getLoc(), kUploadFunction,
          b.getFunctionType({index, index, index}, {}));
      upload.setPrivate();
    }
    for (memref::GetGlobalOp get : constants) {
      auto type = cast<MemRefType>(get.getType());
      if (!type.hasStaticShape() || !type.getLayout().isIdentity())
        return get.emitOpError() << "has a type the CUDA target cannot copy";
      Location loc = get.getLoc();
      b.setInsertionPointAfter(get);
      auto copy = memref::AllocOp::create(b, loc, type, b.getI64IntegerAttr(64));
      get.getResult().replaceAllUsesWith(copy.getResult());
      Value bytes = arith::ConstantIndexOp::create(
          b, loc,
          type.getNumElements() * type.getElementTypeBitWidth() / 8);
      Value target =
          memref::ExtractAlignedPointerAsIndexOp::create(b, loc, copy);
      Value source =
          memref::ExtractAlignedPointerAsIndexOp::create(b, loc, get);
      func::CallOp::create(b, loc, upload, ValueRange{target, source, bytes});
      bool returned = false;
      SmallVector<Value> worklist = {copy.getResult()};
      while (!worklist.empty() && !returned) {
        Value value = worklist.pop_back_val();
        for (Operation *user : value.getUsers()) {
          returned |= isa<func::ReturnOp>(user);
          if (isa<ViewLikeOpInterface>(user))
            llvm::append_range(worklist, user->getResults());
        }
      }
      if (returned)
        continue;
      fn.walk([&](func::ReturnOp ret) {
        OpBuilder before(ret);
        memref::DeallocOp::create(before, loc, copy);
      });
    }
    return success();
  }

  static constexpr int64_t kBlockSize = 256;
  MLIRContext *context;
  std::string functionName;
  unsigned kernelCount = 0;
  llvm::DenseSet<Value> deviceValues;
};

struct MoEGPUMapToKernels
    : moec::impl::MoEGPUMapToKernelsBase<MoEGPUMapToKernels> {
  void runOnOperation() override {
    SmallVector<func::FuncOp> functions(
        getOperation().getOps<func::FuncOp>());
    for (func::FuncOp fn : functions) {
      if (fn->hasAttr(kLaunchAttr))
        continue;
      KernelBuilder builder(&getContext());
      if (failed(builder.mapFunction(fn)))
        return signalPassFailure();
    }
    // Every call to a launch declaration is a gpu.launch_func now.
    for (func::FuncOp fn : functions)
      if (fn->hasAttr(kLaunchAttr))
        fn.erase();
  }
};

} // namespace

//===- Pipeline.cpp - The named phases of the moec pipeline ---------------===//

#include "moec/Compiler.h"

#include "dialects/MoE/MoEDialect.h"
#include "dialects/NN/NNDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

namespace moec {

namespace {
struct PhaseInfo {
  Phase phase;
  llvm::StringLiteral name;
  /// The phase's passes, as a textual pipeline nested in builtin.module.
  const char *pipeline;
};

// The lowering passes of the nn and moe dialects run in `lower`. Matmuls get
// their tiled, vectorised schedule on tensors at the start of `bufferize`
// (tiling on tensors lets the accumulator be hoisted into registers);
// bufferization returns buffers from functions (the runtime takes them over),
// so function results keep identity layouts. `codegen` lowers what remains to
// loops and unrolls vector transfers for the LLVM dialect. In `llvm`, bf16
// rounding is expanded into integer ops (no compiler-rt call), and math ops
// without an LLVM intrinsic (erf) become libm calls.
const PhaseInfo kPhases[] = {
    {Phase::Import, "import", ""},
    {Phase::Graph, "graph",
     "moe-raise-decomposed,moe-decompose-layer,canonicalize,cse"},
    // Built from the options in addAutodiffPasses.
    {Phase::Autodiff, "autodiff", ""},
    {Phase::Lower, "lower",
     "func.func(convert-nn-to-linalg),convert-moe-to-linalg,canonicalize,cse"},
    {Phase::Bufferize, "bufferize",
     "func.func(linalg-fuse-elementwise-ops),moe-cpu-tile-and-vectorize,"
     "loop-invariant-subset-hoisting,func.func(lower-vector-mask),canonicalize,cse,"
     "one-shot-bufferize{bufferize-function-boundaries "
     "function-boundary-type-conversion=identity-layout-map},"
     "canonicalize,buffer-deallocation-pipeline,canonicalize"},
    {Phase::Codegen, "codegen",
     "convert-bufferization-to-memref,"
     "func.func(moe-lower-strided-copies,convert-linalg-to-loops,"
     "scf-forall-to-parallel),"
     "moe-outline-parallel-loops,"
     "convert-vector-to-scf{full-unroll},lower-affine,canonicalize,cse"},
    {Phase::LLVM, "llvm",
     "arith-expand{include-bf16},convert-vector-to-llvm,convert-scf-to-cf,"
     "expand-strided-metadata,lower-affine,"
     "finalize-memref-to-llvm{use-generic-functions},convert-math-to-llvm,"
     "convert-math-to-libm,convert-to-llvm,"
     "reconcile-unrealized-casts,canonicalize"},
};
/// The ABI lends inputs and parameters to the model read-only; without this
/// one-shot bufferization may update an argument in place.
void markEntryArgumentsReadOnly(ModuleOp module) {
  for (auto fn : module.getOps<func::FuncOp>()) {
    if (!fn.isPublic() || fn.isExternal())
      continue;
    for (unsigned i = 0; i < fn.getNumArguments(); ++i)
      if (isa<TensorType>(fn.getArgumentTypes()[i]))
        fn.setArgAttr(i, bufferization::BufferizationDialect::kWritableAttrName,
                      BoolAttr::get(module.getContext(), false));
  }
}

/// Training builds differentiate @forward into @train_step; the options
/// (globs may contain commas) go to the pass directly, not through a
/// textual pipeline. Then every entry point keeps one routing
/// configuration: train_step the training one, the others evaluation unless
/// asked otherwise.
void addAutodiffPasses(PassManager &pm, const CompileOptions &options) {
  if (options.mode == Mode::Train) {
    MoEAutodiffOptions autodiff;
    autodiff.freeze.assign(options.freeze.begin(), options.freeze.end());
    autodiff.auxLossCoef = options.auxLossCoef;
    autodiff.zLossCoef = options.zLossCoef;
    pm.addPass(createMoEAutodiff(autodiff));
  }
  MoESpecializeRoutingOptions routing;
  routing.mode = options.trainRouting ? "train" : "eval";
  pm.addPass(createMoESpecializeRouting(routing));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

} // namespace

std::optional<Phase> parsePhase(llvm::StringRef name) {
  for (const PhaseInfo &info : kPhases)
    if (info.name == name)
      return info.phase;
  return std::nullopt;
}

std::string phaseNames() {
  std::string names;
  for (const PhaseInfo &info : kPhases) {
    if (!names.empty())
      names += ", ";
    names += info.name.str();
  }
  return names;
}

void registerCompilerDialects(DialectRegistry &registry) {
  registry.insert<nn::NNDialect, moe::MoEDialect>();
  registerAllDialects(registry);
  registerAllExtensions(registry);
}

LogicalResult runPhases(ModuleOp module, Phase last,
                        const CompileOptions &options, Phase first) {
  // Registration is idempotent; the textual pipelines need the passes.
  static const bool registered = [] {
    registerAllPasses();
    registerMoECPasses();
    return true;
  }();
  (void)registered;

  for (const PhaseInfo &info : kPhases) {
    if (info.phase > last)
      break;
    if (info.phase < first)
      continue;
    PassManager pm(module.getContext());
    // A plain pass list parses into the module-anchored manager (a
    // builtin.module(...) wrapper here would nest and silently run nothing).
    std::string error;
    llvm::raw_string_ostream errorStream(error);
    if (failed(parsePassPipeline(info.pipeline, pm, errorStream)))
      return module.emitError() << "internal error: cannot parse the '"
                                << info.name << "' pipeline: " << error;
    if (info.phase == Phase::Autodiff)
      addAutodiffPasses(pm, options);
    if (pm.size() == 0)
      continue;
    if (options.printIRAfterAll) {
      module.getContext()->disableMultithreading();
      pm.enableIRPrinting(
          /*shouldPrintBeforePass=*/[](Pass *, Operation *) { return false; },
          /*shouldPrintAfterPass=*/[](Pass *, Operation *) { return true; },
          /*printModuleScope=*/true, /*printAfterOnlyOnChange=*/false);
    }
    if (info.phase == Phase::Bufferize)
      markEntryArgumentsReadOnly(module);
    if (failed(pm.run(module)))
      return module.emitError() << "phase '" << info.name << "' failed";
  }
  return success();
}

} // namespace moec

//===- Pipeline.cpp - The named phases of the moec pipeline ---------------===//

#include "moec/Compiler.h"

#include "dialects/MoE/MoEDialect.h"
#include "dialects/NN/NNDialect.h"
#include "passes/Passes.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
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

// The lowering passes of the nn and moe dialects run in `lower`; everything
// after it is upstream MLIR. `bufferize` returns buffers from functions (the
// runtime takes them over), so function results keep identity layouts.
const PhaseInfo kPhases[] = {
    {Phase::Import, "import", ""},
    {Phase::Graph, "graph", "moe-decompose-layer,canonicalize,cse"},
    {Phase::Lower, "lower", "canonicalize,cse"},
    {Phase::Bufferize, "bufferize",
     "func.func(linalg-fuse-elementwise-ops),"
     "one-shot-bufferize{bufferize-function-boundaries "
     "function-boundary-type-conversion=identity-layout-map},"
     "canonicalize,buffer-deallocation-pipeline,canonicalize"},
    {Phase::Codegen, "codegen",
     "func.func(convert-linalg-to-loops),lower-affine,canonicalize,cse"},
    {Phase::LLVM, "llvm",
     "convert-scf-to-cf,expand-strided-metadata,lower-affine,"
     "finalize-memref-to-llvm{use-generic-functions},convert-to-llvm,"
     "reconcile-unrealized-casts,canonicalize"},
};
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
                        const CompileOptions &options) {
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
    if (!*info.pipeline)
      continue;
    PassManager pm(module.getContext());
    // A plain pass list parses into the module-anchored manager (a
    // builtin.module(...) wrapper here would nest and silently run nothing).
    std::string error;
    llvm::raw_string_ostream errorStream(error);
    if (failed(parsePassPipeline(info.pipeline, pm, errorStream)))
      return module.emitError() << "internal error: cannot parse the '"
                                << info.name << "' pipeline: " << error;
    if (options.printIRAfterAll) {
      module.getContext()->disableMultithreading();
      pm.enableIRPrinting(
          /*shouldPrintBeforePass=*/[](Pass *, Operation *) { return false; },
          /*shouldPrintAfterPass=*/[](Pass *, Operation *) { return true; },
          /*printModuleScope=*/true, /*printAfterOnlyOnChange=*/false);
    }
    if (failed(pm.run(module)))
      return module.emitError() << "phase '" << info.name << "' failed";
  }
  return success();
}

} // namespace moec

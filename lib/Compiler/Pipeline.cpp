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
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

namespace moec {

namespace {
struct PhaseInfo {
  Phase phase;
  llvm::StringLiteral name;
  /// The phase's passes for each target, as a textual pipeline nested in
  /// builtin.module; @CHIP@, @FEATURES@ and @TOOLKIT@ stand for CUDA
  /// options.
  const char *cpu;
  const char *cuda;
};

// The lowering passes of the nn and moe dialects run in `lower`. On the CPU,
// matmuls get their tiled, vectorised schedule on tensors at the start of
// `bufferize` (tiling on tensors lets the accumulator be hoisted into
// registers); bufferization returns buffers from functions (the runtime
// takes them over), so function results keep identity layouts. `codegen`
// lowers what remains to loops and unrolls vector transfers for the LLVM
// dialect; on CUDA it splits host code from kernels, which all go into
// @moe_kernels. In `llvm`, bf16 rounding is expanded into integer ops (no
// compiler-rt call), math ops without an LLVM intrinsic (erf) become libm
// calls on the host and libdevice calls in kernels, and the kernels become
// PTX; libdevice is linked from the toolkit (without `toolkit`
// gpu-module-to-binary silently leaves __nv_* functions unresolved).
const PhaseInfo kPhases[] = {
    {Phase::Import, "import", "", ""},
    {Phase::Graph, "graph",
     "moe-raise-decomposed,moe-decompose-layer,canonicalize,cse",
     "moe-raise-decomposed,moe-decompose-layer,canonicalize,cse"},
    // Built from the options in addAutodiffPasses.
    {Phase::Autodiff, "autodiff", "", ""},
    {Phase::Lower, "lower",
     "func.func(convert-nn-to-linalg),convert-moe-to-linalg,canonicalize,cse",
     "func.func(convert-nn-to-linalg),convert-moe-to-linalg{expert-rows device-kernels},"
     "canonicalize,cse"},
    {Phase::Bufferize, "bufferize",
     "func.func(linalg-fuse-elementwise-ops),moe-cpu-tile-and-vectorize,"
     "loop-invariant-subset-hoisting,func.func(lower-vector-mask),canonicalize,"
     "cse,"
     "one-shot-bufferize{bufferize-function-boundaries "
     "function-boundary-type-conversion=identity-layout-map},"
     "canonicalize,buffer-deallocation-pipeline,canonicalize",
     "func.func(linalg-fuse-elementwise-ops),canonicalize,cse,"
     "one-shot-bufferize{bufferize-function-boundaries "
     "function-boundary-type-conversion=identity-layout-map},"
     "canonicalize,func.func(buffer-hoisting,buffer-loop-hoisting),"
     "buffer-deallocation-pipeline,canonicalize"},
    {Phase::Codegen, "codegen",
     "convert-bufferization-to-memref,"
     "func.func(moe-lower-strided-copies,convert-linalg-to-loops,"
     "scf-forall-to-parallel),"
     "moe-outline-parallel-loops,"
     "convert-vector-to-scf{full-unroll},lower-affine,canonicalize,cse",
     "convert-bufferization-to-memref,"
     "func.func(moe-lower-strided-copies{all-copies},"
     "convert-linalg-to-parallel-loops,scf-forall-to-parallel),"
     "canonicalize,moe-gpu-map-to-kernels,scf-parallel-for-to-nested-fors,"
     "gpu-kernel-outlining,lower-affine,canonicalize,cse"},
    {Phase::LLVM, "llvm",
     "arith-expand{include-bf16},convert-vector-to-llvm,convert-scf-to-cf,"
     "expand-strided-metadata,lower-affine,"
     "finalize-memref-to-llvm{use-generic-functions},convert-math-to-llvm,"
     "convert-math-to-libm,convert-to-llvm,"
     "reconcile-unrealized-casts,canonicalize",
     "arith-expand{include-bf16},convert-scf-to-cf,expand-strided-metadata,"
     "lower-affine,"
     "nvvm-attach-target{module=moe_kernels chip=@CHIP@ features=@FEATURES@ "
     "O=3},"
     "gpu.module(convert-gpu-to-nvvm,convert-math-to-llvm,canonicalize,cse,"
     "reconcile-unrealized-casts),"
     "gpu-module-to-binary{format=isa toolkit=@TOOLKIT@},"
     "finalize-memref-to-llvm{use-generic-functions},convert-math-to-llvm,"
     "convert-math-to-libm,gpu-to-llvm,convert-to-llvm,"
     "reconcile-unrealized-casts,canonicalize"},
};

/// The oldest PTX ISA that knows `arch` and that LLVM 22 emits.
llvm::StringRef ptxFeatures(llvm::StringRef arch) {
  unsigned number = 0;
  arch.drop_front(3).take_while(llvm::isDigit).getAsInteger(10, number);
  return number >= 100 ? "+ptx87" : "+ptx80";
}

std::string replaceAll(std::string text, llvm::StringRef from,
                       llvm::StringRef to) {
  for (size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to.str());
  return text;
}

/// The phase's pipeline for the options' target.
std::string pipelineFor(const PhaseInfo &info, const CompileOptions &options) {
  if (options.target == Target::CPU)
    return options.cpuExpertRows
               ? replaceAll(info.cpu, "convert-moe-to-linalg,",
                            "convert-moe-to-linalg{expert-rows},")
               : info.cpu;
  std::string pipeline = replaceAll(info.cuda, "@CHIP@", options.gpuArch);
  pipeline = replaceAll(pipeline, "@FEATURES@", ptxFeatures(options.gpuArch));
  return replaceAll(pipeline, "@TOOLKIT@",
                    "\"" + options.cudaToolkit + "\"");
}

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

bool isValidGPUArch(llvm::StringRef arch) {
  if (!arch.consume_front("sm_"))
    return false;
  arch.consume_back("a");
  unsigned number;
  return !arch.getAsInteger(10, number) && number >= 70 && number < 1000;
}

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
  // gpu-module-to-binary and the model emitter translate to LLVM IR.
  registerAllToLLVMIRTranslations(registry);
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
    if (failed(parsePassPipeline(pipelineFor(info, options), pm, errorStream)))
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

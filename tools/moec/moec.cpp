//===- moec.cpp - The moec compiler driver --------------------------------===//
//
//   moec model.mlir -o model.so            compile to a shared library
//   moec model.mlir --compile-to=lower     stop after a phase and print IR
//   moec model.mlir --emit=llvm -o -       print LLVM IR
//   moec model.onnx -o model.so            import ONNX; parameters go to
//                                          model.safetensors
//
//===----------------------------------------------------------------------===//

#include "moec/Compiler.h"
#include "moec/ImportONNX.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

#include <cstdlib>

using namespace mlir;
namespace cl = llvm::cl;

// moec's own options; --help hides the hundreds that LLVM registers.
static cl::OptionCategory moecCategory("moec options");
static const std::string compileToHelp =
    "Stop after this phase and print the IR: " + moec::phaseNames();

static cl::opt<std::string> inputFilename(cl::Positional,
                                          cl::desc("<model.mlir|model.onnx>"),
                                          cl::Required, cl::cat(moecCategory));
static cl::opt<std::string> paramsOut(
    "params-out",
    cl::desc("ONNX input: where to write the parameters (the float "
             "initializers) as safetensors (default: the output path with "
             "the extension .safetensors)"),
    cl::value_desc("path"), cl::cat(moecCategory));
static cl::opt<std::string>
    outputFilename("o", cl::desc("Output file (default: <input>.so, or "
                                 "stdout for IR)"),
                   cl::value_desc("path"), cl::cat(moecCategory));
static cl::opt<std::string> compileTo("compile-to", cl::desc(compileToHelp),
                                      cl::value_desc("phase"), cl::cat(moecCategory));
static cl::opt<std::string> emit("emit",
                                 cl::desc("What to produce: mlir (the LLVM "
                                          "dialect), llvm, obj, so, or ptx "
                                          "(CUDA kernels)"),
                                 cl::init("so"), cl::cat(moecCategory));
static cl::opt<std::string>
    cpu("cpu",
        cl::desc("Target CPU of the model's (CUDA: host) code (default: the "
                 "host CPU), e.g. znver3"),
        cl::value_desc("name"), cl::cat(moecCategory));
static cl::opt<std::string>
    target("target",
           cl::desc("Where the model runs: cpu, or cuda (NVIDIA GPUs)"),
           cl::init("cpu"), cl::cat(moecCategory));
static cl::opt<std::string>
    gpuArch("gpu-arch",
            cl::desc("CUDA: the GPU architecture of the kernels (default "
                     "sm_90); PTX for it also runs on newer GPUs"),
            cl::init("sm_90"), cl::value_desc("sm_NN"), cl::cat(moecCategory));
static const std::string cudaToolkitHelp =
    "CUDA: the toolkit directory (nvvm/libdevice is required, bin/ptxas "
    "adds a cubin); default: $CUDA_HOME, else " MOEC_DEFAULT_CUDA_TOOLKIT;
static cl::opt<std::string> cudaToolkit(
    "cuda-toolkit", cl::desc(cudaToolkitHelp),
    cl::value_desc("dir"), cl::cat(moecCategory));
static cl::opt<std::string>
    mode("mode",
         cl::desc("infer: compile the entry points as written; train: also "
                  "emit train_step (forward, loss, backward, gradients)"),
         cl::init("infer"), cl::cat(moecCategory));
static cl::opt<std::string> routing(
    "routing",
    cl::desc("Routing of forward and the other entry points: eval (no "
             "router jitter, eval capacity factors) or train; train_step "
             "always trains"),
    cl::init("eval"), cl::cat(moecCategory));
static cl::list<std::string>
    freeze("freeze",
           cl::desc("Train mode: parameter groups (router, experts, "
                    "shared_experts, attention, norms, embeddings, head) or "
                    "name globs that are not trained"),
           cl::CommaSeparated, cl::value_desc("group|glob,..."), cl::cat(moecCategory));
static cl::opt<double> auxLossCoef(
    "aux-loss-coef",
    cl::desc("Train mode: default weight of the load-balancing loss"),
    cl::init(0.01), cl::cat(moecCategory));
static cl::opt<double>
    zLossCoef("z-loss-coef",
              cl::desc("Train mode: default weight of the router z-loss"),
              cl::init(0.001), cl::cat(moecCategory));
static cl::opt<bool> printIRAfterAll("print-ir-after-all",
                                     cl::desc("Print the IR after every pass"), cl::cat(moecCategory));
static cl::opt<bool> cpuExpertRows(
    "cpu-expert-rows", cl::Hidden,
    cl::desc("Testing: lower expert FFNs for the CPU as the CUDA target does "
             "(grouped products over rows)"),
    cl::cat(moecCategory));

/// Diagnostics about imported ONNX models name the input file and the node
/// (the importer's locations are "node 'name' (OpType)").
static void printONNXDiagnostic(Diagnostic &diagnostic) {
  std::string where;
  Location loc = diagnostic.getLocation();
  loc->walk([&](Location inner) {
    if (auto name = dyn_cast<NameLoc>(inner)) {
      where = name.getName().str() + ": ";
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  llvm::StringRef severity =
      diagnostic.getSeverity() == DiagnosticSeverity::Error     ? "error"
      : diagnostic.getSeverity() == DiagnosticSeverity::Warning ? "warning"
                                                                : "note";
  llvm::errs() << "moec: " << severity << ": " << inputFilename << ": "
               << where << diagnostic.str() << "\n";
  for (Diagnostic &note : diagnostic.getNotes())
    printONNXDiagnostic(note);
}

/// Writes MLIR text to the output (stdout by default).
static LogicalResult printModule(ModuleOp module) {
  std::string error;
  std::string path = outputFilename.empty() ? "-" : outputFilename.getValue();
  std::unique_ptr<llvm::ToolOutputFile> output = openOutputFile(path, &error);
  if (!output) {
    llvm::errs() << "moec: " << error << "\n";
    return failure();
  }
  module.print(output->os());
  output->os() << "\n";
  output->keep();
  return success();
}

static int run() {
  DialectRegistry registry;
  moec::registerCompilerDialects(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  // One message per problem: the op is quoted by its source line, not dumped
  // with the whole module.
  context.printOpOnDiagnostic(false);

  llvm::SourceMgr sourceMgr;
  bool isONNX = llvm::sys::path::extension(inputFilename) == ".onnx";
  std::optional<SourceMgrDiagnosticHandler> mlirDiagnostics;
  std::optional<ScopedDiagnosticHandler> onnxDiagnostics;
  if (isONNX)
    onnxDiagnostics.emplace(&context, [](Diagnostic &diagnostic) {
      printONNXDiagnostic(diagnostic);
      return success();
    });
  else
    mlirDiagnostics.emplace(sourceMgr, &context);

  OwningOpRef<ModuleOp> module;
  std::vector<moec::ParameterValue> parameters;
  if (isONNX) {
    llvm::Expected<moec::ImportedModel> imported =
        moec::importONNXFile(context, inputFilename);
    if (!imported) {
      llvm::errs() << "moec: error: " << llvm::toString(imported.takeError())
                   << "\n";
      return 1;
    }
    module = std::move(imported->module);
    parameters = std::move(imported->parameters);
  } else {
    std::string error;
    std::unique_ptr<llvm::MemoryBuffer> input =
        openInputFile(inputFilename, &error);
    if (!input) {
      llvm::errs() << "moec: " << error << "\n";
      return 1;
    }
    sourceMgr.AddNewSourceBuffer(std::move(input), llvm::SMLoc());
    module = parseSourceFile<ModuleOp>(sourceMgr, &context);
    if (!module)
      return 1;
  }
  if (!isONNX && paramsOut.getNumOccurrences()) {
    llvm::errs() << "moec: --params-out is for ONNX input (an MLIR model's "
                    "parameters are inputs of its entry points)\n";
    return 1;
  }

  moec::CompileOptions options;
  if (mode == "train") {
    options.mode = moec::Mode::Train;
  } else if (mode != "infer") {
    llvm::errs() << "moec: unknown --mode=" << mode
                 << "; expected infer or train\n";
    return 1;
  }
  if (options.mode != moec::Mode::Train &&
      (!freeze.empty() || auxLossCoef.getNumOccurrences() ||
       zLossCoef.getNumOccurrences())) {
    llvm::errs() << "moec: --freeze, --aux-loss-coef and --z-loss-coef "
                    "need --mode=train\n";
    return 1;
  }
  if (routing != "eval" && routing != "train") {
    llvm::errs() << "moec: unknown --routing=" << routing
                 << "; expected eval or train\n";
    return 1;
  }
  options.trainRouting = routing == "train";
  options.freeze.assign(freeze.begin(), freeze.end());
  options.auxLossCoef = auxLossCoef;
  options.zLossCoef = zLossCoef;
  options.cpu = cpu;
  options.printIRAfterAll = printIRAfterAll;
  if (target == "cuda") {
    options.target = moec::Target::CUDA;
  } else if (target != "cpu") {
    llvm::errs() << "moec: unknown --target=" << target
                 << "; expected cpu or cuda\n";
    return 1;
  }
  if (options.target != moec::Target::CUDA &&
      (gpuArch.getNumOccurrences() || cudaToolkit.getNumOccurrences())) {
    llvm::errs() << "moec: --gpu-arch and --cuda-toolkit need --target=cuda\n";
    return 1;
  }
  if (!moec::isValidGPUArch(gpuArch)) {
    llvm::errs() << "moec: unknown --gpu-arch=" << gpuArch
                 << "; expected sm_<number>, e.g. sm_90\n";
    return 1;
  }
  options.gpuArch = gpuArch;
  options.cudaToolkit = cudaToolkit;
  options.cpuExpertRows = cpuExpertRows;
  if (options.cudaToolkit.empty()) {
    const char *home = std::getenv("CUDA_HOME");
    options.cudaToolkit = home && *home ? home : MOEC_DEFAULT_CUDA_TOOLKIT;
  }

  if (!compileTo.empty()) {
    std::optional<moec::Phase> phase = moec::parsePhase(compileTo);
    if (!phase) {
      llvm::errs() << "moec: unknown phase '" << compileTo
                   << "'; phases are " << moec::phaseNames() << "\n";
      return 1;
    }
    if (failed(moec::runPhases(*module, *phase, options)))
      return 1;
    return failed(printModule(*module)) ? 1 : 0;
  }

  std::optional<moec::OutputKind> kind;
  if (emit == "mlir") {
    if (failed(moec::runPhases(*module, moec::Phase::LLVM, options)))
      return 1;
    return failed(printModule(*module)) ? 1 : 0;
  }
  if (emit == "llvm")
    kind = moec::OutputKind::LLVMIR;
  else if (emit == "obj")
    kind = moec::OutputKind::Object;
  else if (emit == "so")
    kind = moec::OutputKind::SharedLibrary;
  else if (emit == "ptx")
    kind = moec::OutputKind::PTX;
  else {
    llvm::errs() << "moec: unknown --emit=" << emit
                 << "; expected mlir, llvm, obj, so or ptx\n";
    return 1;
  }
  std::string path = outputFilename;
  if (path.empty()) {
    if (*kind == moec::OutputKind::LLVMIR || *kind == moec::OutputKind::PTX) {
      path = "-";
    } else {
      llvm::SmallString<256> derived(inputFilename.getValue());
      llvm::sys::path::replace_extension(
          derived, *kind == moec::OutputKind::Object ? "o" : "so");
      path = derived.str().str();
    }
  }
  if (failed(moec::compileModule(*module, *kind, path, options)))
    return 1;
  if (!isONNX)
    return 0;
  std::string parametersPath = paramsOut;
  if (parametersPath.empty()) {
    llvm::SmallString<256> derived(path == "-" ? inputFilename.getValue()
                                               : path);
    llvm::sys::path::replace_extension(derived, "safetensors");
    parametersPath = derived.str().str();
  }
  if (llvm::Error error = moec::writeSafetensors(parametersPath, parameters)) {
    llvm::errs() << "moec: error: " << llvm::toString(std::move(error))
                 << "\n";
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  cl::HideUnrelatedOptions(moecCategory);
  cl::ParseCommandLineOptions(argc, argv,
                              "moec: compile an MoE model to model.so\n");
  return run();
}

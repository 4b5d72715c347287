//===- Compiler.h - The moec compiler driver library -------------*- C++ -*-===//
//
// The compiler as a library: the tools (moec) call it. It runs the named
// phases of docs/compiler.md on a module and emits MLIR, LLVM IR, an object
// file or a shared library (model.so), all in process.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_COMPILER_H
#define MOEC_COMPILER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "llvm/ADT/StringRef.h"

#include <optional>
#include <string>
#include <vector>

namespace moec {

/// The pipeline phases, in order. Each runs on the output of the previous one.
enum class Phase {
  Import,    // parse and verify MLIR text, or import ONNX (JSON later)
  Graph,     // decompose moe.layer, canonicalise, CSE
  Autodiff,  // training builds: @forward -> @train_step (forward + backward);
             // every build: train or eval routing per entry point
  Lower,     // nn and moe ops -> linalg, tensor, scf, arith, math
  Bufferize, // tensors -> memrefs, deallocation
  Codegen,   // loops for the target CPU, or host code and GPU kernels
  LLVM,      // the LLVM dialect (CUDA: kernels serialized to PTX)
};

/// Checks a CUDA architecture name ("sm_90", "sm_90a", "sm_100").
bool isValidGPUArch(llvm::StringRef arch);

/// Parses a phase name ("import", "graph", ...).
std::optional<Phase> parsePhase(llvm::StringRef name);
/// The names of all phases, for help texts.
std::string phaseNames();

enum class Mode {
  Infer, // the entry points as written
  Train, // adds train_step: objective, metrics and parameter gradients
};

enum class Target {
  CPU,  // the host CPU (or --cpu)
  CUDA, // NVIDIA GPUs: kernels in PTX (and a cubin), host code for the CPU
};

struct CompileOptions {
  Target target = Target::CPU;
  /// CUDA: the GPU architecture kernels are compiled for ("sm_90").
  std::string gpuArch = "sm_90";
  /// CUDA: the toolkit holding nvvm/libdevice (required) and bin/ptxas
  /// (optional: without it the model carries PTX alone).
  std::string cudaToolkit;
  Mode mode = Mode::Infer;
  /// Routing of the entry points other than train_step: evaluation (no
  /// jitter, eval capacity factors) unless set.
  bool trainRouting = false;
  /// Train mode: parameter groups or name globs that get no gradient.
  std::vector<std::string> freeze;
  /// Train mode: default weights of the router losses in the objective.
  double auxLossCoef = 0.01;
  double zLossCoef = 0.001;
  /// Target CPU for code generation; empty means the host CPU.
  std::string cpu;
  /// Print the IR after every pass (debugging).
  bool printIRAfterAll = false;
  /// CPU: lower moe.expert_ffn and its gradient as the CUDA target does
  /// (grouped products over rows), so that the CUDA lowering's numerics
  /// are tested on machines without a GPU.
  bool cpuExpertRows = false;
};

/// Registers every dialect the compiler reads or produces.
void registerCompilerDialects(mlir::DialectRegistry &registry);

/// Runs the phases from `first` (default: the one after Import) up to and
/// including `last`.
mlir::LogicalResult runPhases(mlir::ModuleOp module, Phase last,
                              const CompileOptions &options,
                              Phase first = Phase::Graph);

enum class OutputKind {
  LLVMIR,        // the host code (and ABI tables) as LLVM IR
  Object,        // the same as an object file
  SharedLibrary, // model.so
  PTX,           // CUDA: the kernels' PTX
};

/// Compiles an imported module all the way to `kind` and writes it to
/// `outputPath` atomically (a temporary file renamed into place). Errors are
/// reported as diagnostics on the module.
mlir::LogicalResult compileModule(mlir::ModuleOp module, OutputKind kind,
                                  llvm::StringRef outputPath,
                                  const CompileOptions &options);

} // namespace moec

#endif // MOEC_COMPILER_H

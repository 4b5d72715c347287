//===- Emit.cpp - LLVM IR, object and model.so, in process ----------------===//

#include "ABIEmitter.h"
#include "moec/Compiler.h"

#include "dialects/MoE/MoEDialect.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "lld/Common/Driver.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/Triple.h"

LLD_HAS_DRIVER(elf)

using namespace mlir;

namespace moec {
namespace {

/// The target machine for `cpu` (the host CPU when empty). Generic x86-64
/// code is refused: it leaves most of the vector units unused.
FailureOr<std::unique_ptr<llvm::TargetMachine>>
createTargetMachine(ModuleOp module, StringRef cpu) {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  std::string error;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return module.emitError() << "no LLVM target for " << triple.str() << ": "
                              << error;
  std::string name = cpu.str(), features;
  if (name.empty()) {
    name = llvm::sys::getHostCPUName().str();
    for (const auto &feature : llvm::sys::getHostCPUFeatures())
      features += (feature.second ? "+" : "-") + feature.first().str() + ",";
  }
  if (name.empty() || name == "generic" || name == "x86-64")
    return module.emitError()
           << "refusing to generate code for the generic CPU '" << name
           << "': pass --cpu=<name> (e.g. --cpu=znver3, --cpu=sapphirerapids)";
  llvm::TargetOptions targetOptions;
  // Contract a*b+c into FMA, as C compilers do by default (FP_CONTRACT).
  targetOptions.AllowFPOpFusion = llvm::FPOpFusion::Fast;
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      triple, name, features, targetOptions, llvm::Reloc::PIC_, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
  if (!machine)
    return module.emitError() << "LLVM cannot target CPU '" << name << "' on "
                              << triple.str();
  if (!cpu.empty() &&
      !machine->getMCSubtargetInfo()->isCPUStringValid(name))
    return module.emitError() << "unknown CPU '" << name << "' for "
                              << triple.str();
  return machine;
}

void optimize(llvm::Module &module, llvm::TargetMachine &machine) {
  llvm::LoopAnalysisManager loops;
  llvm::FunctionAnalysisManager functions;
  llvm::CGSCCAnalysisManager cgscc;
  llvm::ModuleAnalysisManager modules;
  llvm::PassBuilder builder(&machine);
  builder.registerModuleAnalyses(modules);
  builder.registerCGSCCAnalyses(cgscc);
  builder.registerFunctionAnalyses(functions);
  builder.registerLoopAnalyses(loops);
  builder.crossRegisterProxies(loops, functions, cgscc, modules);
  builder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3)
      .run(module, modules);
}

/// The directory holding the C library for the linker, from the target's
/// multiarch tuple (Debian layout).
std::string libraryDirectory(const llvm::Triple &triple) {
  std::string multiarch =
      triple.getArchName().str() + "-linux-gnu";
  for (std::string dir : {"/usr/lib/" + multiarch, "/lib/" + multiarch})
    if (llvm::sys::fs::exists(dir + "/libc.so"))
      return dir;
  return "";
}

/// Links `objectPath` into the shared library `outputPath` with lld's ELF
/// driver in this process. lld writes through a temporary file that it
/// renames into place, so the output is never half-written.
LogicalResult link(ModuleOp module, StringRef objectPath, StringRef outputPath,
                   const llvm::Triple &triple) {
  std::string libDir = libraryDirectory(triple);
  if (libDir.empty())
    return module.emitError()
           << "cannot find the C library (libc.so) to link model.so against; "
              "install libc6-dev";
  // lld parses these strings into its own option tables, which reset LLVM's
  // command-line state: keep them alive and owned here.
  std::vector<std::string> storage = {"ld.lld",
                                      "-shared",
                                      "--no-undefined",
                                      "--hash-style=gnu",
                                      "--build-id",
                                      "-z",
                                      "noexecstack",
                                      "-z",
                                      "now",
                                      "-z",
                                      "relro",
                                      "-o",
                                      outputPath.str(),
                                      objectPath.str(),
                                      "-L" + libDir,
                                      "-lm",
                                      "-lc"};
  std::vector<const char *> args;
  for (const std::string &arg : storage)
    args.push_back(arg.c_str());
  std::string output;
  llvm::raw_string_ostream stream(output);
  lld::Result result = lld::lldMain(args, stream, stream,
                                    {{lld::Gnu, &lld::elf::link}});
  if (result.retCode != 0)
    return module.emitError() << "linking " << outputPath << " failed:\n"
                              << output;
  return success();
}

LogicalResult writeAtomically(ModuleOp module, StringRef path,
                              llvm::function_ref<void(llvm::raw_ostream &)> fn) {
  if (llvm::Error error = llvm::writeToOutput(path, [&](llvm::raw_ostream &os) {
        fn(os);
        return llvm::Error::success();
      }))
    return module.emitError() << "cannot write " << path << ": "
                              << llvm::toString(std::move(error));
  return success();
}

} // namespace

LogicalResult compileModule(ModuleOp module, OutputKind kind,
                            StringRef outputPath,
                            const CompileOptions &options) {
  FailureOr<std::unique_ptr<llvm::TargetMachine>> machine =
      createTargetMachine(module, options.cpu);
  if (failed(machine))
    return failure();
  // The signature is read once the entry points are final (autodiff adds
  // train_step) and while they still take tensors.
  if (failed(runPhases(module, Phase::Autodiff, options)))
    return failure();
  FailureOr<SmallVector<EntrySignature>> entries = collectSignatures(module);
  if (failed(entries))
    return failure();
  if (failed(runPhases(module, Phase::LLVM, options, Phase::Lower)))
    return failure();

  // The moe.* argument attributes have done their job (the signature); LLVM
  // IR has no place for them.
  module.walk([](FunctionOpInterface fn) {
    for (unsigned i = 0; i < fn.getNumArguments(); ++i)
      for (StringRef name : {moe::kNameAttr, moe::kRoleAttr, moe::kDimsAttr,
                             moe::kDefaultAttr, moe::kGroupsAttr})
        fn.removeArgAttr(i, name);
    for (unsigned i = 0; i < fn.getNumResults(); ++i)
      for (StringRef name : {moe::kNameAttr, moe::kRoleAttr, moe::kDimsAttr})
        fn.removeResultAttr(i, StringAttr::get(fn.getContext(), name));
  });
  registerBuiltinDialectTranslation(*module.getContext());
  registerLLVMDialectTranslation(*module.getContext());
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(module, llvmContext, "model");
  if (!llvmModule)
    return module.emitError() << "translation to LLVM IR failed";
  llvm::TargetMachine &tm = **machine;
  llvmModule->setDataLayout(tm.createDataLayout());
  llvmModule->setTargetTriple(tm.getTargetTriple());
  std::string target = "cpu " + tm.getTargetTriple().str() + " " +
                       tm.getTargetCPU().str();
  if (llvm::Error error = addModelABI(*llvmModule, *entries, target))
    return module.emitError() << llvm::toString(std::move(error));
  optimize(*llvmModule, tm);

  if (kind == OutputKind::LLVMIR)
    return writeAtomically(module, outputPath, [&](llvm::raw_ostream &os) {
      llvmModule->print(os, nullptr);
    });

  llvm::SmallVector<char, 0> object;
  {
    llvm::raw_svector_ostream os(object);
    llvm::legacy::PassManager codegen;
    if (tm.addPassesToEmitFile(codegen, os, nullptr,
                               llvm::CodeGenFileType::ObjectFile))
      return module.emitError() << "the target cannot emit object files";
    codegen.run(*llvmModule);
  }
  if (kind == OutputKind::Object)
    return writeAtomically(module, outputPath, [&](llvm::raw_ostream &os) {
      os.write(object.data(), object.size());
    });

  // The object goes to a temporary file beside the output, for lld.
  llvm::SmallString<256> objectPath;
  int fd;
  llvm::SmallString<256> pattern(outputPath);
  pattern += ".%%%%%%.o";
  if (std::error_code ec =
          llvm::sys::fs::createUniqueFile(pattern, fd, objectPath))
    return module.emitError() << "cannot create a temporary object file next "
                                 "to "
                              << outputPath << ": " << ec.message();
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os.write(object.data(), object.size());
  }
  LogicalResult linked = link(module, objectPath, outputPath,
                              tm.getTargetTriple());
  llvm::sys::fs::remove(objectPath);
  return linked;
}

} // namespace moec

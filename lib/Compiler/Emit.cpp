//===- Emit.cpp - LLVM IR, object and model.so, in process ----------------===//

#include "ABIEmitter.h"
#include "moec/Compiler.h"

#include "dialects/MoE/MoEDialect.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

#include "mlir/Target/LLVMIR/Export.h"

#include "lld/Common/Driver.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/ADT/StringExtras.h"
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

/// Checks what the CUDA pipeline needs from the toolkit before any work.
LogicalResult checkCUDAToolkit(ModuleOp module, const CompileOptions &options) {
  if (!isValidGPUArch(options.gpuArch))
    return module.emitError() << "unknown GPU architecture '"
                              << options.gpuArch
                              << "': expected sm_<number>, e.g. sm_90";
  llvm::SmallString<256> libdevice(options.cudaToolkit);
  llvm::sys::path::append(libdevice, "nvvm", "libdevice", "libdevice.10.bc");
  if (options.cudaToolkit.empty() || !llvm::sys::fs::exists(libdevice))
    return module.emitError()
           << "the CUDA target needs libdevice, not found at '" << libdevice
           << "': pass --cuda-toolkit=<dir> (the directory holding "
              "nvvm/libdevice)";
  return success();
}

/// Assembles `ptx` into a cubin with the toolkit's ptxas, which also
/// validates it. Returns an empty buffer when the toolkit has no ptxas.
FailureOr<std::string> assembleCubin(ModuleOp module, StringRef ptx,
                                     const CompileOptions &options) {
  llvm::SmallString<256> ptxas(options.cudaToolkit);
  llvm::sys::path::append(ptxas, "bin", "ptxas");
  if (!llvm::sys::fs::can_execute(ptxas))
    return std::string();
  llvm::SmallString<128> ptxPath, cubinPath, logPath;
  int fd;
  if (llvm::sys::fs::createTemporaryFile("moec", "ptx", fd, ptxPath) ||
      llvm::sys::fs::createTemporaryFile("moec", "cubin", cubinPath) ||
      llvm::sys::fs::createTemporaryFile("moec", "log", logPath))
    return module.emitError() << "cannot create temporary files for ptxas";
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os << ptx;
  }
  llvm::FileRemover removePTX(ptxPath), removeCubin(cubinPath),
      removeLog(logPath);
  std::string arch = "-arch=" + options.gpuArch;
  std::string ptxasPath = ptxas.str().str();
  llvm::StringRef args[] = {ptxasPath, arch, "-O3", ptxPath, "-o", cubinPath};
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, logPath,
                                                logPath};
  std::string error;
  int status = llvm::sys::ExecuteAndWait(ptxasPath, args, std::nullopt,
                                         redirects, 0, 0, &error);
  if (status != 0) {
    auto log = llvm::MemoryBuffer::getFile(logPath);
    return module.emitError()
           << "ptxas rejected the generated PTX (internal error): "
           << (error.empty() && log ? (*log)->getBuffer() : StringRef(error));
  }
  auto cubin = llvm::MemoryBuffer::getFile(cubinPath, /*IsText=*/false);
  if (!cubin)
    return module.emitError() << "ptxas wrote no cubin";
  return (*cubin)->getBuffer().str();
}

/// Takes the kernels' PTX out of the gpu.binary that the CUDA pipeline
/// produced; the model emitter embeds it (and the cubin) in the ABI tables,
/// and the runtime loads them.
FailureOr<DeviceCode> extractDeviceCode(ModuleOp module,
                                        const CompileOptions &options) {
  DeviceCode code;
  code.arch = options.gpuArch;
  llvm::SetVector<StringRef> kernels;
  module.walk([&](gpu::LaunchFuncOp launch) {
    kernels.insert(launch.getKernelName().getValue());
  });
  code.kernelNames.assign(kernels.begin(), kernels.end());
  SmallVector<gpu::BinaryOp> binaries(module.getOps<gpu::BinaryOp>());
  if (binaries.empty())
    return code; // A model without kernels (all shapes, no arithmetic).
  if (binaries.size() != 1 || binaries.front().getObjects().size() != 1)
    return module.emitError()
           << "internal error: expected one device binary with one object";
  auto object = cast<gpu::ObjectAttr>(binaries.front().getObjects()[0]);
  code.ptx = object.getObject().getValue().str();
  // Unresolved externals would only surface when the driver loads the
  // module on a GPU; libdevice must have defined every __nv_* function.
  for (llvm::StringRef line : llvm::split(code.ptx, '\n'))
    if (line.trim().starts_with(".extern .func"))
      return module.emitError()
             << "internal error: the PTX calls an undefined function: "
             << line.trim();
  FailureOr<std::string> cubin = assembleCubin(module, code.ptx, options);
  if (failed(cubin))
    return failure();
  code.cubin = std::move(*cubin);
  return code;
}

} // namespace

LogicalResult compileModule(ModuleOp module, OutputKind kind,
                            StringRef outputPath,
                            const CompileOptions &options) {
  bool cuda = options.target == Target::CUDA;
  if (cuda && failed(checkCUDAToolkit(module, options)))
    return failure();
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
  std::optional<DeviceCode> deviceCode;
  if (cuda) {
    FailureOr<DeviceCode> code = extractDeviceCode(module, options);
    if (failed(code))
      return failure();
    deviceCode = std::move(*code);
  }
  if (kind == OutputKind::PTX) {
    if (!cuda)
      return module.emitError() << "PTX output needs the CUDA target";
    return writeAtomically(module, outputPath, [&](llvm::raw_ostream &os) {
      os << deviceCode->ptx;
    });
  }

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
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(module, llvmContext, "model");
  if (!llvmModule)
    return module.emitError() << "translation to LLVM IR failed";
  llvm::TargetMachine &tm = **machine;
  llvmModule->setDataLayout(tm.createDataLayout());
  llvmModule->setTargetTriple(tm.getTargetTriple());
  std::string target = cuda ? "cuda " + options.gpuArch + " host " +
                                  tm.getTargetTriple().str() + " " +
                                  tm.getTargetCPU().str()
                           : "cpu " + tm.getTargetTriple().str() + " " +
                                 tm.getTargetCPU().str();
  if (llvm::Error error = addModelABI(*llvmModule, *entries, target,
                                      deviceCode ? &*deviceCode : nullptr))
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

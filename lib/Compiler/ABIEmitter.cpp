//===- ABIEmitter.cpp - Model ABI tables and invoke wrappers --------------===//
//
// Adds to the translated LLVM module everything include/moe/abi/moe_abi.h
// promises: an invoke wrapper per entry point that unpacks memref descriptors
// and calls the lowered function, the allocation hooks that route the model's
// memory through the runtime's services, the static description tables and
// the exported query function. Only the query symbol stays visible.
//
//===----------------------------------------------------------------------===//

#include "ABIEmitter.h"

#include "moe/abi/moe_abi.h"

#include "llvm/IR/Constants.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Module.h"

using namespace llvm;

namespace moec {
namespace {

/// Field offsets of moe_abi_memref and moe_runtime_services: pointers and
/// int64 are 8 bytes on every supported target.
constexpr uint64_t kMemrefAllocated = 0, kMemrefAligned = 8,
                   kMemrefOffset = 16, kMemrefSizes = 24;
constexpr unsigned kServicesContext = 2, kServicesAlloc = 3, kServicesFree = 4,
                   kServicesParallelFor = 5, kServicesDevice = 7,
                   kServicesCudaFunction = 8, kServicesCudaLaunch = 9,
                   kServicesCudaCopy = 10;
/// The kernel module of moe-gpu-map-to-kernels and the names MLIR's
/// gpu.binary translation derives from it.
constexpr StringLiteral kKernelModule = "moe_kernels";
/// Declared by moe-gpu-map-to-kernels for copying constants to the device.
constexpr StringLiteral kUploadFunction = "__moe_cuda_upload";
/// Names shared with moe-outline-parallel-loops.
constexpr StringLiteral kDispatchPrefix = "__moe_par_dispatch_",
                        kBodyPrefix = "__moe_par_body_";

uint64_t elementBytes(int32_t dtype) {
  switch (dtype) {
  case MOE_ABI_F16:
  case MOE_ABI_BF16:
    return 2;
  case MOE_ABI_I8:
  case MOE_ABI_BOOL:
    return 1;
  case MOE_ABI_F64:
  case MOE_ABI_I64:
    return 8;
  default:
    return 4;
  }
}

class Emitter {
public:
  Emitter(Module &module, StringRef target, const DeviceCode *device)
      : module(module), context(module.getContext()), target(target),
        device(device),
        ptr(PointerType::getUnqual(context)), i32(Type::getInt32Ty(context)),
        i64(Type::getInt64Ty(context)) {}

  Error emit(ArrayRef<EntrySignature> entries, StringRef json);

private:
  GlobalVariable *servicesSlot();
  GlobalVariable *recoverySlot();
  StructType *servicesType();
  void defineAllocationHooks();
  void defineBF16Truncation();
  Error defineParallelDispatch(Function *dispatch);
  Error defineGPURuntime();
  Value *servicesContext(IRBuilder<> &b, Value *table);
  Value *callAllocation(IRBuilder<> &b, Value *bytes, Value *alignment);
  void deviceCodeTables(SmallVectorImpl<Constant *> &fields);
  Expected<Function *> defineInvoke(const EntrySignature &entry);
  Constant *string(StringRef text);
  Constant *argTable(const EntrySignature &entry);
  Value *loadField(IRBuilder<> &b, Value *base, uint64_t byteOffset,
                   Type *type);
  void storeField(IRBuilder<> &b, Value *value, Value *base,
                  uint64_t byteOffset);

  Module &module;
  LLVMContext &context;
  StringRef target;
  const DeviceCode *device;
  PointerType *ptr;
  IntegerType *i32, *i64;
  GlobalVariable *services = nullptr;
  GlobalVariable *recovery = nullptr;
};

/// The runtime's services table as seen by generated code.
StructType *Emitter::servicesType() {
  // { u32 abi_version, u32 struct_size, ptr context, ptr alloc, ptr free,
  //   ptr parallel_for, i32 num_threads, i32 device, ptr cuda_function,
  //   ptr cuda_launch, ptr cuda_copy }
  return StructType::get(context,
                         {i32, i32, ptr, ptr, ptr, ptr, i32, i32, ptr, ptr, ptr});
}

/// The services of the invoke call running on this thread. Thread-local so
/// that concurrent invokes with different runtimes do not interfere.
GlobalVariable *Emitter::servicesSlot() {
  if (!services) {
    services = new GlobalVariable(
        module, ptr, /*isConstant=*/false, GlobalValue::InternalLinkage,
        ConstantPointerNull::get(ptr), "__moe_services", nullptr,
        GlobalValue::GeneralDynamicTLSModel);
  }
  return services;
}

/// Where an allocation failure on the invoking thread jumps to (a jmp_buf of
/// the running invoke, or null).
GlobalVariable *Emitter::recoverySlot() {
  if (!recovery)
    recovery = new GlobalVariable(
        module, ptr, /*isConstant=*/false, GlobalValue::InternalLinkage,
        ConstantPointerNull::get(ptr), "__moe_recovery", nullptr,
        GlobalValue::GeneralDynamicTLSModel);
  return recovery;
}

Value *Emitter::servicesContext(IRBuilder<> &b, Value *table) {
  return b.CreateLoad(
      ptr, b.CreateStructGEP(servicesType(), table, kServicesContext));
}

/// services->alloc(context, bytes, alignment). Generated code cannot test
/// what an allocation returns, so a NULL from the runtime jumps back to the
/// invoke wrapper, which reports MOE_ABI_OUT_OF_MEMORY (the memory
/// allocated so far is lost).
Value *Emitter::callAllocation(IRBuilder<> &b, Value *bytes,
                               Value *alignment) {
  FunctionCallee longjmpFn = module.getOrInsertFunction(
      "longjmp", FunctionType::get(Type::getVoidTy(context), {ptr, i32}, false));
  if (auto *fn = dyn_cast<Function>(longjmpFn.getCallee()))
    fn->setDoesNotReturn();
  Value *table = b.CreateLoad(ptr, servicesSlot());
  Value *alloc = b.CreateLoad(
      ptr, b.CreateStructGEP(servicesType(), table, kServicesAlloc));
  FunctionType *allocType = FunctionType::get(ptr, {ptr, i64, i64}, false);
  Value *memory = b.CreateCall(allocType, alloc,
                               {servicesContext(b, table), bytes, alignment});
  Function *fn = b.GetInsertBlock()->getParent();
  BasicBlock *failed = BasicBlock::Create(context, "failed", fn);
  BasicBlock *jump = BasicBlock::Create(context, "jump", fn);
  BasicBlock *done = BasicBlock::Create(context, "done", fn);
  b.CreateCondBr(b.CreateIsNull(memory), failed, done);
  b.SetInsertPoint(failed);
  Value *point = b.CreateLoad(ptr, recoverySlot());
  b.CreateCondBr(b.CreateIsNull(point), done, jump);
  b.SetInsertPoint(jump);
  b.CreateCall(longjmpFn, {point, ConstantInt::get(i32, 1)});
  b.CreateUnreachable();
  b.SetInsertPoint(done);
  return memory;
}

/// MLIR's memref lowering (use-generic-functions) calls these for every
/// allocation; they forward to the runtime.
void Emitter::defineAllocationHooks() {
  auto define = [&](StringRef name, FunctionType *type) -> Function * {
    Function *fn = module.getFunction(name);
    if (!fn)
      fn = Function::Create(type, GlobalValue::InternalLinkage, name, module);
    fn->setLinkage(GlobalValue::InternalLinkage);
    return fn;
  };
  // Alignment 64 suits every vector width the CPU backend emits.
  Function *alloc =
      define("_mlir_memref_to_llvm_alloc", FunctionType::get(ptr, {i64}, false));
  if (alloc->empty()) {
    IRBuilder<> b(BasicBlock::Create(context, "entry", alloc));
    b.CreateRet(callAllocation(b, alloc->getArg(0), ConstantInt::get(i64, 64)));
  }
  Function *aligned = define("_mlir_memref_to_llvm_aligned_alloc",
                             FunctionType::get(ptr, {i64, i64}, false));
  if (aligned->empty()) {
    IRBuilder<> b(BasicBlock::Create(context, "entry", aligned));
    Value *alignment = b.CreateSelect(
        b.CreateICmpULT(aligned->getArg(0), ConstantInt::get(i64, 64)),
        ConstantInt::get(i64, 64), aligned->getArg(0));
    b.CreateRet(callAllocation(b, aligned->getArg(1), alignment));
  }
  Function *release = define("_mlir_memref_to_llvm_free",
                             FunctionType::get(Type::getVoidTy(context), {ptr},
                                               false));
  if (release->empty()) {
    IRBuilder<> b(BasicBlock::Create(context, "entry", release));
    Value *table = b.CreateLoad(ptr, servicesSlot());
    Value *freeFn = b.CreateLoad(
        ptr, b.CreateStructGEP(servicesType(), table, kServicesFree));
    Value *ctx = servicesContext(b, table);
    b.CreateCall(FunctionType::get(Type::getVoidTy(context), {ptr, ptr}, false),
                 freeFn, {ctx, release->getArg(0)});
    b.CreateRetVoid();
  }
}

/// Defines __moe_par_dispatch_N(n, lb, step, captures...), declared by
/// moe-outline-parallel-loops: its arguments (and the services of the calling
/// thread) go into a closure on the stack, and parallel_for runs a trampoline
/// that calls __moe_par_body_N(begin, end, lb, step, captures...) per chunk.
/// Workers are other threads, so the trampoline installs the services in
/// their thread-local slot for the allocation hooks.
Error Emitter::defineParallelDispatch(Function *dispatch) {
  StringRef id = dispatch->getName().drop_front(kDispatchPrefix.size());
  Function *body = module.getFunction((kBodyPrefix + id).str());
  FunctionType *dispatchType = dispatch->getFunctionType();
  if (!body || body->getFunctionType()->getNumParams() !=
                   dispatchType->getNumParams() + 1)
    return createStringError("parallel loop %s has no matching body",
                             dispatch->getName().str().c_str());
  SmallVector<Type *> fields = {ptr};
  for (unsigned i = 1; i < dispatchType->getNumParams(); ++i)
    fields.push_back(dispatchType->getParamType(i));
  StructType *closureType = StructType::get(context, fields);
  Type *voidType = Type::getVoidTy(context);
  FunctionType *trampolineType = FunctionType::get(voidType, {ptr, i64, i64},
                                                   false);

  Function *trampoline =
      Function::Create(trampolineType, GlobalValue::InternalLinkage,
                       "__moe_par_trampoline_" + id, module);
  {
    IRBuilder<> b(BasicBlock::Create(context, "entry", trampoline));
    Value *closure = trampoline->getArg(0);
    Value *previous = b.CreateLoad(ptr, servicesSlot());
    b.CreateStore(
        b.CreateLoad(ptr, b.CreateStructGEP(closureType, closure, 0)),
        servicesSlot());
    // No jump out of a chunk: it would cross the runtime's parallel_for.
    Value *previousRecovery = b.CreateLoad(ptr, recoverySlot());
    b.CreateStore(ConstantPointerNull::get(ptr), recoverySlot());
    SmallVector<Value *> args = {trampoline->getArg(1), trampoline->getArg(2)};
    for (unsigned i = 1; i < fields.size(); ++i)
      args.push_back(b.CreateLoad(fields[i],
                                  b.CreateStructGEP(closureType, closure, i)));
    b.CreateCall(body, args);
    b.CreateStore(previous, servicesSlot());
    b.CreateStore(previousRecovery, recoverySlot());
    b.CreateRetVoid();
  }

  dispatch->setLinkage(GlobalValue::InternalLinkage);
  dispatch->setVisibility(GlobalValue::DefaultVisibility);
  IRBuilder<> b(BasicBlock::Create(context, "entry", dispatch));
  Value *closure = b.CreateAlloca(closureType);
  Value *services = b.CreateLoad(ptr, servicesSlot());
  b.CreateStore(services, b.CreateStructGEP(closureType, closure, 0));
  for (unsigned i = 1; i < fields.size(); ++i)
    b.CreateStore(dispatch->getArg(i),
                  b.CreateStructGEP(closureType, closure, i));
  Value *iterations = dispatch->getArg(0);
  Value *parallelFor = b.CreateLoad(
      ptr, b.CreateStructGEP(servicesType(), services, kServicesParallelFor));
  Value *context = b.CreateLoad(
      ptr, b.CreateStructGEP(servicesType(), services, kServicesContext));
  FunctionType *parallelForType =
      FunctionType::get(voidType, {ptr, i64, ptr, ptr}, false);
  b.CreateCall(parallelForType, parallelFor,
               {context, iterations, trampoline, closure});
  b.CreateRetVoid();
  return Error::success();
}

/// MLIR's translation of gpu.launch_func calls mgpu* functions (MLIR's CUDA
/// runtime wrappers, which Debian does not ship and a model.so must not
/// need); they are defined here over the runtime's CUDA services. The
/// module loader that the translation registers as a global constructor is
/// removed: the runtime loads the device code from the ABI tables when a
/// session starts, so dlopen runs no model code. Streams are the runtime's:
/// every call of one invoke goes to its stream, which the runtime waits for
/// once after invoke returns, so the synchronisations are no-ops.
Error Emitter::defineGPURuntime() {
  for (StringRef suffix : {"_load", "_unload"})
    if (Function *fn = module.getFunction((kKernelModule + suffix).str())) {
      for (StringRef list : {"llvm.global_ctors", "llvm.global_dtors"})
        if (GlobalVariable *table = module.getGlobalVariable(list))
          table->eraseFromParent();
      fn->eraseFromParent();
    }
  if (GlobalVariable *blob =
          module.getGlobalVariable((kKernelModule + "_binary").str(), true))
    blob->eraseFromParent();

  Type *voidType = Type::getVoidTy(context);
  auto define = [&](StringRef name) -> Function * {
    Function *fn = module.getFunction(name);
    if (!fn || !fn->isDeclaration())
      return nullptr;
    fn->setLinkage(GlobalValue::InternalLinkage);
    return fn;
  };
  auto service = [&](IRBuilder<> &b, unsigned field) {
    Value *table = b.CreateLoad(ptr, servicesSlot());
    Value *fn =
        b.CreateLoad(ptr, b.CreateStructGEP(servicesType(), table, field));
    return std::pair{servicesContext(b, table), fn};
  };
  if (Function *fn = define("mgpuModuleGetFunction")) {
    IRBuilder<> b(BasicBlock::Create(context, "entry", fn));
    auto [ctx, lookup] = service(b, kServicesCudaFunction);
    b.CreateRet(b.CreateCall(FunctionType::get(ptr, {ptr, ptr}, false), lookup,
                             {ctx, fn->getArg(1)}));
  }
  if (Function *fn = define("mgpuLaunchKernel")) {
    // (function, grid xyz, block xyz, i32 shared bytes, stream, params,
    //  extra, i64 param count)
    IRBuilder<> b(BasicBlock::Create(context, "entry", fn));
    auto [ctx, launch] = service(b, kServicesCudaLaunch);
    SmallVector<Value *> args = {ctx, fn->getArg(0)};
    for (unsigned i = 1; i <= 7; ++i)
      args.push_back(fn->getArg(i));
    args.push_back(fn->getArg(9));
    b.CreateCall(FunctionType::get(voidType,
                                   {ptr, ptr, i64, i64, i64, i64, i64, i64,
                                    i32, ptr},
                                   false),
                 launch, args);
    b.CreateRetVoid();
  }
  if (Function *fn = define("mgpuStreamCreate")) {
    IRBuilder<> b(BasicBlock::Create(context, "entry", fn));
    b.CreateRet(ConstantPointerNull::get(ptr));
  }
  for (StringRef name : {"mgpuStreamSynchronize", "mgpuStreamDestroy"})
    if (Function *fn = define(name)) {
      IRBuilder<> b(BasicBlock::Create(context, "entry", fn));
      b.CreateRetVoid();
    }
  if (Function *fn = define(kUploadFunction)) {
    IRBuilder<> b(BasicBlock::Create(context, "entry", fn));
    auto [ctx, copy] = service(b, kServicesCudaCopy);
    b.CreateCall(FunctionType::get(voidType, {ptr, ptr, ptr, i64}, false),
                 copy,
                 {ctx, b.CreateIntToPtr(fn->getArg(0), ptr),
                  b.CreateIntToPtr(fn->getArg(1), ptr), fn->getArg(2)});
    b.CreateRetVoid();
  }
  for (Function &fn : llvm::make_early_inc_range(module.functions())) {
    if (!fn.isDeclaration() || !fn.getName().starts_with("mgpu"))
      continue;
    if (fn.use_empty()) { // The loader's, erased above.
      fn.eraseFromParent();
      continue;
    }
    return createStringError("the CUDA host code calls %s, which the "
                               "model runtime does not provide",
                               fn.getName().str().c_str());
  }
  return Error::success();
}

/// x86 without AVX512-BF16 rounds f32 to bf16 through the compiler-rt
/// builtin __truncsfbf2, which neither libgcc 12 nor Debian's compiler-rt
/// provide; model.so carries its own (round to nearest even, NaN stays NaN).
void Emitter::defineBF16Truncation() {
  Type *bf16 = Type::getBFloatTy(context);
  Type *f32 = Type::getFloatTy(context);
  Function *fn = Function::Create(FunctionType::get(bf16, {f32}, false),
                                  GlobalValue::ExternalLinkage,
                                  "__truncsfbf2", module);
  fn->setVisibility(GlobalValue::HiddenVisibility);
  IRBuilder<> b(BasicBlock::Create(context, "entry", fn));
  Value *bits = b.CreateBitCast(fn->getArg(0), i32);
  Value *lsb = b.CreateAnd(b.CreateLShr(bits, 16), 1);
  Value *rounded =
      b.CreateAdd(bits, b.CreateAdd(lsb, ConstantInt::get(i32, 0x7fff)));
  Value *isNaN = b.CreateICmpUGT(b.CreateAnd(bits, 0x7fffffff),
                                 ConstantInt::get(i32, 0x7f800000));
  Value *quietNaN = b.CreateOr(bits, 0x00400000);
  Value *result = b.CreateLShr(b.CreateSelect(isNaN, quietNaN, rounded), 16);
  b.CreateRet(b.CreateBitCast(b.CreateTrunc(result, b.getInt16Ty()), bf16));
}

Value *Emitter::loadField(IRBuilder<> &b, Value *base, uint64_t byteOffset,
                          Type *type) {
  Value *address = b.CreateConstInBoundsGEP1_64(b.getInt8Ty(), base, byteOffset);
  return b.CreateLoad(type, address);
}

void Emitter::storeField(IRBuilder<> &b, Value *value, Value *base,
                         uint64_t byteOffset) {
  b.CreateStore(value,
                b.CreateConstInBoundsGEP1_64(b.getInt8Ty(), base, byteOffset));
}

/// int32_t __moe_invoke_<entry>(void *const *args,
///                              const moe_runtime_services *services)
Expected<Function *> Emitter::defineInvoke(const EntrySignature &entry) {
  Function *callee = module.getFunction(entry.name);
  if (!callee)
    return createStringError("entry point '%s' vanished during lowering",
                             entry.name.c_str());
  callee->setLinkage(GlobalValue::InternalLinkage);

  FunctionType *type = FunctionType::get(i32, {ptr, ptr}, false);
  Function *invoke = Function::Create(type, GlobalValue::InternalLinkage,
                                      "__moe_invoke_" + entry.name, module);
  IRBuilder<> b(BasicBlock::Create(context, "entry", invoke));
  Value *args = invoke->getArg(0);
  // Memory from another device's services would be unreachable.
  {
    Value *deviceKind = b.CreateLoad(
        i32, b.CreateStructGEP(servicesType(), invoke->getArg(1),
                               kServicesDevice));
    BasicBlock *wrongDevice =
        BasicBlock::Create(context, "wrong_device", invoke);
    BasicBlock *start = BasicBlock::Create(context, "start", invoke);
    int32_t expected = device ? MOE_ABI_DEVICE_CUDA : MOE_ABI_DEVICE_HOST;
    b.CreateCondBr(
        b.CreateICmpEQ(deviceKind, ConstantInt::get(i32, expected)), start,
        wrongDevice);
    b.SetInsertPoint(wrongDevice);
    b.CreateRet(ConstantInt::get(i32, MOE_ABI_INVALID_ARGUMENT));
    b.SetInsertPoint(start);
  }
  // Save and restore the slot so that a model invoked from inside another
  // invoke on the same thread (never done by moert, but legal) still works.
  Value *previous = b.CreateLoad(ptr, servicesSlot());
  Value *previousRecovery = b.CreateLoad(ptr, recoverySlot());
  b.CreateStore(invoke->getArg(1), servicesSlot());
  // glibc's jmp_buf is 200 bytes on x86-64; 256 leaves room.
  Value *jumpBuffer = b.CreateAlloca(ArrayType::get(b.getInt8Ty(), 256));
  cast<AllocaInst>(jumpBuffer)->setAlignment(Align(16));
  b.CreateStore(jumpBuffer, recoverySlot());
  FunctionCallee setjmpFn = module.getOrInsertFunction(
      "_setjmp", FunctionType::get(i32, {ptr}, false));
  if (auto *fn = dyn_cast<Function>(setjmpFn.getCallee()))
    fn->addFnAttr(Attribute::ReturnsTwice);
  CallInst *jumped = b.CreateCall(setjmpFn, {jumpBuffer});
  jumped->addFnAttr(Attribute::ReturnsTwice);
  BasicBlock *outOfMemory = BasicBlock::Create(context, "out_of_memory", invoke);
  BasicBlock *run = BasicBlock::Create(context, "run", invoke);
  b.CreateCondBr(b.CreateIsNotNull(jumped), outOfMemory, run);
  b.SetInsertPoint(outOfMemory);
  b.CreateStore(previous, servicesSlot());
  b.CreateStore(previousRecovery, recoverySlot());
  b.CreateRet(ConstantInt::get(i32, MOE_ABI_OUT_OF_MEMORY));
  b.SetInsertPoint(run);

  auto descriptor = [&](unsigned index) {
    return b.CreateLoad(ptr, b.CreateConstInBoundsGEP1_64(ptr, args, index));
  };

  // Lowered functions take each memref as (allocated, aligned, offset,
  // sizes..., strides...) and scalars by value.
  SmallVector<Value *> operands;
  for (unsigned i = 0; i < entry.numInputs; ++i) {
    const ArgSignature &arg = entry.args[i];
    Value *desc = descriptor(i);
    if (arg.isScalar) {
      Type *scalarType = callee->getFunctionType()->getParamType(
          operands.size());
      Value *aligned = loadField(b, desc, kMemrefAligned, ptr);
      Value *offset = loadField(b, desc, kMemrefOffset, i64);
      operands.push_back(b.CreateLoad(
          scalarType, b.CreateInBoundsGEP(scalarType, aligned, offset)));
      continue;
    }
    if (device && arg.shape.empty() && arg.role == MOE_ABI_INPUT) {
      // Rank-0 inputs of CUDA models arrive in host memory (moe_abi.h).
      Value *bytes = ConstantInt::get(i64, elementBytes(arg.dtype));
      Value *host = b.CreateInBoundsGEP(
          b.getInt8Ty(), loadField(b, desc, kMemrefAligned, ptr),
          b.CreateMul(loadField(b, desc, kMemrefOffset, i64), bytes));
      Value *onDevice = callAllocation(b, bytes, ConstantInt::get(i64, 64));
      Value *table = b.CreateLoad(ptr, servicesSlot());
      Value *copy = b.CreateLoad(
          ptr, b.CreateStructGEP(servicesType(), table, kServicesCudaCopy));
      b.CreateCall(FunctionType::get(Type::getVoidTy(context),
                                     {ptr, ptr, ptr, i64}, false),
                   copy, {servicesContext(b, table), onDevice, host, bytes});
      operands.append({onDevice, onDevice, ConstantInt::get(i64, 0)});
      continue;
    }
    operands.push_back(loadField(b, desc, kMemrefAllocated, ptr));
    operands.push_back(loadField(b, desc, kMemrefAligned, ptr));
    operands.push_back(loadField(b, desc, kMemrefOffset, i64));
    for (size_t d = 0; d < 2 * arg.shape.size(); ++d)
      operands.push_back(loadField(b, desc, kMemrefSizes + 8 * d, i64));
  }
  if (operands.size() != callee->getFunctionType()->getNumParams())
    return createStringError(
        "entry point '%s' was lowered to %u parameters, the ABI expects %zu",
        entry.name.c_str(), callee->getFunctionType()->getNumParams(),
        operands.size());
  Value *results = b.CreateCall(callee, operands);

  unsigned numResults = entry.args.size() - entry.numInputs;
  for (unsigned j = 0; j < numResults; ++j) {
    const ArgSignature &arg = entry.args[entry.numInputs + j];
    Value *memref =
        numResults == 1 ? results : b.CreateExtractValue(results, {j});
    Value *desc = descriptor(entry.numInputs + j);
    storeField(b, b.CreateExtractValue(memref, {0}), desc, kMemrefAllocated);
    storeField(b, b.CreateExtractValue(memref, {1}), desc, kMemrefAligned);
    storeField(b, b.CreateExtractValue(memref, {2}), desc, kMemrefOffset);
    size_t rank = arg.shape.size();
    for (size_t d = 0; d < rank; ++d) {
      storeField(b, b.CreateExtractValue(memref, {3, unsigned(d)}), desc,
                 kMemrefSizes + 8 * d);
      storeField(b, b.CreateExtractValue(memref, {4, unsigned(d)}), desc,
                 kMemrefSizes + 8 * (rank + d));
    }
  }
  b.CreateStore(previous, servicesSlot());
  b.CreateStore(previousRecovery, recoverySlot());
  b.CreateRet(ConstantInt::get(i32, MOE_ABI_OK));
  return invoke;
}

/// The device fields of moe_abi_model: device_blob, device_blob_size,
/// num_kernels, kernel_names, device_ptx, device_arch.
void Emitter::deviceCodeTables(SmallVectorImpl<Constant *> &fields) {
  Constant *null = ConstantPointerNull::get(ptr);
  if (!device) {
    fields.append({null, ConstantInt::get(i64, 0), ConstantInt::get(i32, 0),
                   null, null, null});
    return;
  }
  Constant *cubin = null;
  if (!device->cubin.empty()) {
    Constant *bytes = ConstantDataArray::getRaw(
        device->cubin, device->cubin.size(), Type::getInt8Ty(context));
    auto *global = new GlobalVariable(module, bytes->getType(),
                                      /*isConstant=*/true,
                                      GlobalValue::PrivateLinkage, bytes,
                                      ".moe.cubin");
    // The driver reads ELF headers with aligned loads.
    global->setAlignment(Align(64));
    cubin = global;
  }
  SmallVector<Constant *> names;
  for (const std::string &name : device->kernelNames)
    names.push_back(string(name));
  Constant *nameTable = null;
  if (!names.empty()) {
    ArrayType *type = ArrayType::get(ptr, names.size());
    nameTable = new GlobalVariable(module, type, /*isConstant=*/true,
                                   GlobalValue::PrivateLinkage,
                                   ConstantArray::get(type, names),
                                   ".moe.kernels");
  }
  fields.append({cubin, ConstantInt::get(i64, device->cubin.size()),
                 ConstantInt::get(i32, names.size()), nameTable,
                 device->ptx.empty() ? null : string(device->ptx),
                 string(device->arch)});
}

Constant *Emitter::string(StringRef text) {
  IRBuilder<> b(context);
  return b.CreateGlobalString(text, ".moe.str", 0, &module);
}

Constant *Emitter::argTable(const EntrySignature &entry) {
  // { ptr name, i32 role, i32 dtype, i32 rank, ptr shape, ptr dim_names }
  StructType *argType = StructType::get(context, {ptr, i32, i32, i32, ptr, ptr});
  SmallVector<Constant *> args;
  for (const ArgSignature &arg : entry.args) {
    SmallVector<Constant *> extents, names;
    for (auto [extent, name] : llvm::zip(arg.shape, arg.dimNames)) {
      extents.push_back(ConstantInt::get(i64, extent));
      names.push_back(name.empty() ? ConstantPointerNull::get(ptr)
                                   : string(name));
    }
    auto array = [&](Type *element, ArrayRef<Constant *> values,
                     StringRef name) -> Constant * {
      if (values.empty())
        return ConstantPointerNull::get(ptr);
      ArrayType *type = ArrayType::get(element, values.size());
      return new GlobalVariable(module, type, /*isConstant=*/true,
                                GlobalValue::PrivateLinkage,
                                ConstantArray::get(type, values), name);
    };
    args.push_back(ConstantStruct::get(
        argType, {string(arg.name), ConstantInt::get(i32, arg.role),
                  ConstantInt::get(i32, arg.dtype),
                  ConstantInt::get(i32, arg.shape.size()),
                  array(i64, extents, ".moe.shape"),
                  array(ptr, names, ".moe.dims")}));
  }
  ArrayType *type = ArrayType::get(argType, args.size());
  return new GlobalVariable(module, type, /*isConstant=*/true,
                            GlobalValue::PrivateLinkage,
                            ConstantArray::get(type, args), ".moe.args");
}

Error Emitter::emit(ArrayRef<EntrySignature> entries, StringRef json) {
  // Everything the compiler produced is private to the library; the ABI is
  // the query function alone.
  for (GlobalValue &value : module.global_values())
    if (!value.isDeclaration() && !value.hasLocalLinkage())
      value.setVisibility(GlobalValue::HiddenVisibility);
  defineAllocationHooks();
  if (!module.getFunction("__truncsfbf2"))
    defineBF16Truncation();
  SmallVector<Function *> dispatches;
  for (Function &fn : module.functions())
    if (fn.isDeclaration() && fn.getName().starts_with(kDispatchPrefix))
      dispatches.push_back(&fn);
  for (Function *dispatch : dispatches)
    if (Error error = defineParallelDispatch(dispatch))
      return error;

  if (device)
    if (Error error = defineGPURuntime())
      return error;
  SmallVector<Constant *> deviceFields;
  deviceCodeTables(deviceFields);

  // { ptr name, i32 num_args, ptr args, ptr invoke }
  StructType *entryType = StructType::get(context, {ptr, i32, ptr, ptr});
  SmallVector<Constant *> entryValues;
  for (const EntrySignature &entry : entries) {
    Expected<Function *> invoke = defineInvoke(entry);
    if (!invoke)
      return invoke.takeError();
    entryValues.push_back(ConstantStruct::get(
        entryType, {string(entry.name), ConstantInt::get(i32, entry.args.size()),
                    argTable(entry), *invoke}));
  }
  ArrayType *entriesType = ArrayType::get(entryType, entryValues.size());
  auto *entryTable = new GlobalVariable(
      module, entriesType, /*isConstant=*/true, GlobalValue::PrivateLinkage,
      ConstantArray::get(entriesType, entryValues), ".moe.entries");

  // moe_abi_model
  StructType *modelType = StructType::get(
      context,
      {i32, i32, ptr, ptr, i32, ptr, ptr, ptr, i64, i32, ptr, ptr, ptr, i32});
  uint64_t modelSize = module.getDataLayout().getTypeAllocSize(modelType);
  if (modelSize != sizeof(moe_abi_model))
    return createStringError("moe_abi_model is %llu bytes on the target but "
                             "%zu on the compiler's host",
                             (unsigned long long)modelSize,
                             sizeof(moe_abi_model));
  Constant *model = ConstantStruct::get(
      modelType,
      {ConstantInt::get(i32, MOE_ABI_VERSION), ConstantInt::get(i32, modelSize),
       string("moec 0.1.0"), string(target),
       ConstantInt::get(i32, entryValues.size()), entryTable, string(json),
       deviceFields[0], deviceFields[1], deviceFields[2], deviceFields[3],
       deviceFields[4], deviceFields[5],
       ConstantInt::get(i32, device ? MOE_ABI_DEVICE_CUDA
                                    : MOE_ABI_DEVICE_HOST)});
  auto *modelGlobal =
      new GlobalVariable(module, modelType, /*isConstant=*/true,
                         GlobalValue::PrivateLinkage, model, ".moe.model");

  Function *query =
      Function::Create(FunctionType::get(ptr, {}, false),
                       GlobalValue::ExternalLinkage, MOE_ABI_QUERY_SYMBOL,
                       module);
  query->setVisibility(GlobalValue::DefaultVisibility);
  IRBuilder<> b(BasicBlock::Create(context, "entry", query));
  b.CreateRet(modelGlobal);
  return Error::success();
}

} // namespace

Error addModelABI(Module &module, ArrayRef<EntrySignature> entries,
                  StringRef target, const DeviceCode *deviceCode) {
  return Emitter(module, target, deviceCode)
      .emit(entries, signaturesToJson(entries));
}

} // namespace moec

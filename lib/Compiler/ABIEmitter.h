//===- ABIEmitter.h - Model ABI tables and invoke wrappers -------*- C++ -*-===//
#ifndef MOEC_LIB_COMPILER_ABIEMITTER_H
#define MOEC_LIB_COMPILER_ABIEMITTER_H

#include "moec/Signature.h"

#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace llvm {
class Module;
} // namespace llvm

namespace moec {

/// The kernels of a CUDA model.
struct DeviceCode {
  std::string arch;                     // "sm_90"
  std::string ptx;                      // empty when there are no kernels
  std::string cubin;                    // empty without ptxas
  std::vector<std::string> kernelNames; // as launched by host code
};

/// Adds the invoke wrappers, allocation hooks, description tables and the
/// exported query function of include/moe/abi/moe_abi.h to `module`, which
/// holds the lowered entry points named in `entries`. CUDA models
/// (`deviceCode` not null) also get their device code and the definitions
/// of the GPU runtime functions that MLIR's host lowering calls (mgpu*),
/// which forward to the runtime's CUDA services.
llvm::Error addModelABI(llvm::Module &module,
                        llvm::ArrayRef<EntrySignature> entries,
                        llvm::StringRef target,
                        const DeviceCode *deviceCode);

} // namespace moec

#endif // MOEC_LIB_COMPILER_ABIEMITTER_H

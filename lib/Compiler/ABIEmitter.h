//===- ABIEmitter.h - Model ABI tables and invoke wrappers -------*- C++ -*-===//
#ifndef MOEC_LIB_COMPILER_ABIEMITTER_H
#define MOEC_LIB_COMPILER_ABIEMITTER_H

#include "moec/Signature.h"

#include "llvm/Support/Error.h"

namespace llvm {
class Module;
} // namespace llvm

namespace moec {

/// Adds the invoke wrappers, allocation hooks, description tables and the
/// exported query function of include/moe/abi/moe_abi.h to `module`, which
/// holds the lowered entry points named in `entries`.
llvm::Error addModelABI(llvm::Module &module,
                        llvm::ArrayRef<EntrySignature> entries,
                        llvm::StringRef target);

} // namespace moec

#endif // MOEC_LIB_COMPILER_ABIEMITTER_H

//===- DifferentiableOpInterface.h - Reverse-mode VJPs ------------*- C++ -*-===//
#ifndef MOEC_DIALECTS_COMMON_DIFFERENTIABLEOPINTERFACE_H
#define MOEC_DIALECTS_COMMON_DIFFERENTIABLEOPINTERFACE_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpDefinition.h"
#include "llvm/ADT/BitVector.h"

#include "dialects/Common/DifferentiableOpInterface.h.inc"

#endif // MOEC_DIALECTS_COMMON_DIFFERENTIABLEOPINTERFACE_H

//===- MoEDialect.h - The moe dialect -----------------------------*- C++ -*-===//
#ifndef MOEC_DIALECTS_MOE_MOEDIALECT_H
#define MOEC_DIALECTS_MOE_MOEDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/MoE/MoEDialect.h.inc"
#include "dialects/MoE/MoEEnums.h.inc"

#define GET_OP_CLASSES
#include "dialects/MoE/MoEOps.h.inc"

#endif // MOEC_DIALECTS_MOE_MOEDIALECT_H

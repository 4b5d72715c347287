//===- MoEDialect.cpp - The moe dialect -----------------------------------===//

#include "dialects/MoE/MoEDialect.h"

using namespace mlir;
using namespace moec::moe;

#include "dialects/MoE/MoEDialect.cpp.inc"
#include "dialects/MoE/MoEEnums.cpp.inc"

void MoEDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/MoE/MoEOps.cpp.inc"
      >();
}

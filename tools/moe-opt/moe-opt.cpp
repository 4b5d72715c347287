//===- moe-opt.cpp - Driver for moec dialects and passes ------------------===//
//
// Parses MLIR in the nn and moe dialects (and every upstream dialect the
// project lowers through), runs the requested passes (the project's and
// upstream's) and prints the result. This is the tool the lit suite drives.
//
//===----------------------------------------------------------------------===//

#include "dialects/MoE/MoEDialect.h"
#include "dialects/NN/NNDialect.h"
#include "passes/Passes.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<moec::nn::NNDialect, moec::moe::MoEDialect>();
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  mlir::registerAllPasses();
  moec::registerMoECPasses();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "moec optimizer driver: nn and moe dialects\n", registry));
}

//===- moe-opt.cpp - Driver for moec dialects and passes ------------------===//
//
// Parses MLIR in the nn and moe dialects (plus the upstream dialects the
// project lowers to), runs the requested passes and prints the result. This is
// the tool the lit suite drives.
//
//===----------------------------------------------------------------------===//

#include "dialects/MoE/MoEDialect.h"
#include "dialects/NN/NNDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<moec::nn::NNDialect, moec::moe::MoEDialect,
                  mlir::arith::ArithDialect,
                  mlir::bufferization::BufferizationDialect,
                  mlir::func::FuncDialect, mlir::linalg::LinalgDialect,
                  mlir::math::MathDialect, mlir::memref::MemRefDialect,
                  mlir::scf::SCFDialect, mlir::tensor::TensorDialect>();
  moec::registerMoECPasses();
  // The generic passes that the project's pipelines use.
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  mlir::registerSymbolDCEPass();
  mlir::registerInlinerPass();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "moec optimizer driver: nn and moe dialects\n", registry));
}

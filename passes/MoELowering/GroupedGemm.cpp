//===- GroupedGemm.cpp - Grouped expert GEMM on tensor cores --------------===//
//
// out[r, n] = sum_k lhs[r, k] * B_e[k, n] for the rows r of expert e's
// segment offsets[e] .. offsets[e+1], with B_e = weights[e] or weights[e]^T,
// as one hand-built kernel (see DeviceKernel.h) on mma.sync m16n8k16: bf16 or
// f16 operands, f32 accumulators.
//
// Tiling. A block of 4 warps computes a 64 x 64 tile of `out` (rows x
// columns), each warp a 32 x 32 quarter as 2 x 4 mma tiles of 16 x 8. A row
// tile may hold rows of several experts: the block runs its K loop once for
// every expert whose segment meets the tile, reading the lhs rows outside
// that segment as zeros, so that each row accumulates only its own expert's
// products and rows of no segment (padding) stay zero. Every element of
// `out` is written once, by one thread. A column of tiles makes at most
// (row tiles + experts - 1) passes: one per tile, plus one per expert
// boundary inside a tile.
//
// K advances by 32. The block copies the lhs tile [64 x 32] and the weight
// tile [32 x 64] into shared memory as 32-bit words, each holding two
// consecutive k of one row or column with the lower k in the low half: the
// layout of an mma A or B register, so that every register is one shared
// load. B is kept [column][k]. Elements outside the segment, K or the
// columns are zeros. Rows are padded from 16 to 20 words: the 32 lanes of a
// fragment read (word 20 * group + lane % 4) then hit 32 distinct banks.
//
// An f32 lhs (the hidden activation, which the CPU keeps in f32 before fc2)
// is split into hi = T(x) and lo = T(x - hi), two mma per tile: the product
// sees 16 significant bits of x for bf16 (22 for f16) instead of 8 (11),
// which keeps it close to the CPU's f32 x T product (a relative error of
// ~2e-6 where rounding x to bf16 gives ~2e-3). With f16 weights, |x| beyond
// f16's range (65504) gives inf.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with
// floating point type"), lane = 4 * group + quad:
//   A [16 x 16]: register i (2 elements) holds row group + 8 * (i % 2),
//                columns 2 * quad + 8 * (i / 2) and the next;
//   B [16 x 8]:  register i holds rows 2 * quad + 8 * i and the next,
//                column group;
//   C [16 x 8]:  element i holds row group + 8 * (i / 2),
//                column 2 * quad + i % 2.
// test/reference/test_grouped_gemm_fragments.py models this kernel's index
// arithmetic with those tables in NumPy.
//
//===----------------------------------------------------------------------===//

#include "passes/MoELowering/DeviceKernel.h"
#include "passes/MoELowering/Lowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

namespace moec::lowering {

namespace {

constexpr int64_t kTile = 64;     // Rows and columns of a block's tile.
constexpr int64_t kWarpTile = 32; // Rows and columns of a warp's quarter.
constexpr int64_t kThreads = 128;
constexpr int64_t kStepK = 32;            // k per shared-memory stage.
constexpr int64_t kWords = kStepK / 2;    // k pairs per tile row.
constexpr int64_t kRowWords = kWords + 4; // Padded for the banks.
constexpr int64_t kMmaM = 16, kMmaN = 8, kMmaK = 16;
constexpr int64_t kTilesM = kWarpTile / kMmaM; // 2
constexpr int64_t kTilesN = kWarpTile / kMmaN; // 4
constexpr int64_t kAccumulators = kTilesM * kTilesN * 4;

Value divI(IB &b, Value x, int64_t y) {
  return arith::DivUIOp::create(b, x, cIdx(b, y));
}
Value remI(IB &b, Value x, int64_t y) {
  return arith::RemUIOp::create(b, x, cIdx(b, y));
}
Value addC(IB &b, Value x, int64_t y) { return addI(b, x, cIdx(b, y)); }
Value ltI(IB &b, Value x, Value y) {
  return cmpI(b, arith::CmpIPredicate::slt, x, y);
}

/// The kernel's body; see the file comment. Arguments: lhs [R, K], weights
/// [E, K, N] ([E, N, K] when transposed), offsets [E + 1], out [R, N];
/// workgroup buffers: lhs words (hi), weight words, lhs words (lo, when
/// split).
class KernelBuilder {
public:
  KernelBuilder(IB &b, gpu::GPUFuncOp kernel, Type operand, bool split,
                bool transposed)
      : b(b), operand(operand), split(split), transposed(transposed) {
    lhs = kernel.getArgument(0);
    weights = kernel.getArgument(1);
    offsets = kernel.getArgument(2);
    out = kernel.getArgument(3);
    auto shared = kernel.getWorkgroupAttributions();
    lhsHi = shared[0];
    weightWords = shared[1];
    if (split)
      lhsLo = shared[2];
  }

  void build() {
    rows = memref::DimOp::create(b, lhs, 0);
    depth = memref::DimOp::create(b, lhs, 1);
    columns = memref::DimOp::create(b, out, 1);
    Value experts = memref::DimOp::create(b, weights, 0);
    thread = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
    Value warp = divI(b, thread, 32), lane = remI(b, thread, 32);
    group = divI(b, lane, 4);
    quad = remI(b, lane, 4);
    warpRow = mulI(b, divI(b, warp, 2), cIdx(b, kWarpTile));
    warpColumn = mulI(b, remI(b, warp, 2), cIdx(b, kWarpTile));
    tileRow =
        mulI(b, gpu::BlockIdOp::create(b, gpu::Dimension::x), cIdx(b, kTile));
    tileColumn =
        mulI(b, gpu::BlockIdOp::create(b, gpu::Dimension::y), cIdx(b, kTile));
    Value stages = arith::CeilDivUIOp::create(b, depth, cIdx(b, kStepK));

    SmallVector<Value> zeros(kAccumulators, cF32(b, 0.0));
    SmallVector<Value> acc = forLoop(
        b, cIdx(b, 0), experts, zeros, [&](IB &eb, Value e, ValueRange accIn) {
          return buildExpertPass(eb, e, stages, accIn);
        });
    storeAccumulators(acc);
  }

private:
  /// The K loop of expert e over the rows of its segment inside the tile
  /// (none when they do not meet).
  SmallVector<Value> buildExpertPass(IB &eb, Value e, Value stages,
                                     ValueRange accIn) {
    // The segment clamped to [0, R] as on the CPU, then to the tile.
    Value zero = cIdx(eb, 0);
    auto offset = [&](Value i) {
      return toIndex(eb, memref::LoadOp::create(eb, offsets, i));
    };
    Value lo = offset(e), hi = offset(addC(eb, e, 1));
    lo = minSI(eb, maxSI(eb, lo, zero), rows);
    hi = minSI(eb, maxSI(eb, hi, lo), rows);
    Value first = maxSI(eb, lo, tileRow);
    Value end = minSI(eb, hi, addC(eb, tileRow, kTile));
    // The same for every thread of the block, so the barriers inside are
    // reached by all or none.
    return ifElse(
        eb, ltI(eb, first, end),
        [&](IB &tb) {
          return forLoop(tb, zero, stages, accIn,
                         [&](IB &kb, Value stage, ValueRange accK) {
                           return buildStage(kb, e, first, end, stage, accK);
                         });
        },
        [&](IB &) { return SmallVector<Value>(accIn); });
  }

  /// memref.load from `memref` at `indices` when `inBounds`, else zero.
  Value loadOrZero(IB &lb, Value memref, ValueRange indices, Value inBounds) {
    Type element = cast<MemRefType>(memref.getType()).getElementType();
    return ifElse1(
        lb, inBounds,
        [&](IB &tb) -> SmallVector<Value> {
          return {memref::LoadOp::create(tb, memref, indices)};
        },
        [&](IB &eb) -> SmallVector<Value> {
          return {cFloat(eb, element, 0.0)};
        });
  }

  /// The word holding `low` (bits 0-15) and `high` (bits 16-31), both of
  /// the operand type.
  Value pack(IB &lb, Value low, Value high) {
    Type i16 = lb.getI16Type(), i32 = lb.getI32Type();
    auto widen = [&](Value v) -> Value {
      return arith::ExtUIOp::create(lb, i32,
                                    arith::BitcastOp::create(lb, i16, v));
    };
    Value shifted = arith::ShLIOp::create(lb, widen(high), cI32(lb, 16));
    return arith::OrIOp::create(lb, widen(low), shifted);
  }

  /// Copies the lhs tile rows [tileRow, +64) x k [k0, k0 + 32) into the
  /// shared words, zero outside [first, end) x [0, K).
  void copyLhs(IB &lb, Value first, Value end, Value k0) {
    for (int64_t i = 0; i < kTile * kWords / kThreads; ++i) {
      Value word = addC(lb, thread, i * kThreads);
      Value row = divI(lb, word, kWords), pair = remI(lb, word, kWords);
      Value r = addI(lb, tileRow, row);
      Value inSegment = andI(lb, cmpI(lb, arith::CmpIPredicate::sle, first, r),
                             ltI(lb, r, end));
      Value k = addI(lb, k0, mulI(lb, pair, cIdx(lb, 2)));
      SmallVector<Value, 2> values;
      for (int64_t j = 0; j < 2; ++j) {
        Value kj = addC(lb, k, j);
        values.push_back(loadOrZero(lb, lhs, {r, kj},
                                    andI(lb, inSegment, ltI(lb, kj, depth))));
      }
      if (!split) {
        memref::StoreOp::create(lb, pack(lb, values[0], values[1]), lhsHi,
                                ValueRange{row, pair});
        continue;
      }
      SmallVector<Value, 2> highs, lows;
      for (Value v : values) {
        Value high = arith::TruncFOp::create(lb, operand, v);
        Value rest = arith::SubFOp::create(lb, v, toF32(lb, high));
        highs.push_back(high);
        lows.push_back(arith::TruncFOp::create(lb, operand, rest));
      }
      memref::StoreOp::create(lb, pack(lb, highs[0], highs[1]), lhsHi,
                              ValueRange{row, pair});
      memref::StoreOp::create(lb, pack(lb, lows[0], lows[1]), lhsLo,
                              ValueRange{row, pair});
    }
  }

  /// Copies expert e's weights, k [k0, k0 + 32) x columns [tileColumn, +64),
  /// into the shared words [column][k pair], zero outside [0, K) x [0, N).
  /// Consecutive threads read consecutive elements of the weights' inner
  /// dimension (columns, or k when transposed).
  void copyWeights(IB &lb, Value e, Value k0) {
    for (int64_t i = 0; i < kTile * kWords / kThreads; ++i) {
      Value word = addC(lb, thread, i * kThreads);
      Value column =
          transposed ? divI(lb, word, kWords) : remI(lb, word, kTile);
      Value pair = transposed ? remI(lb, word, kWords) : divI(lb, word, kTile);
      Value n = addI(lb, tileColumn, column);
      Value inColumns = ltI(lb, n, columns);
      Value k = addI(lb, k0, mulI(lb, pair, cIdx(lb, 2)));
      SmallVector<Value, 2> values;
      for (int64_t j = 0; j < 2; ++j) {
        Value kj = addC(lb, k, j);
        SmallVector<Value, 3> at = {e, kj, n};
        if (transposed)
          std::swap(at[1], at[2]);
        values.push_back(loadOrZero(lb, weights, at,
                                    andI(lb, inColumns, ltI(lb, kj, depth))));
      }
      memref::StoreOp::create(lb, pack(lb, values[0], values[1]), weightWords,
                              ValueRange{column, pair});
    }
  }

  /// The mma register `word` of shared buffer `words` at [row, wordIndex],
  /// as nvvm.mma.sync takes it: i32 for bf16, vector<2xf16> for f16.
  Value fragmentRegister(IB &lb, Value words, Value row, Value wordIndex) {
    Value word = memref::LoadOp::create(lb, words, ValueRange{row, wordIndex});
    if (operand.isBF16())
      return word;
    return LLVM::BitcastOp::create(lb, VectorType::get({2}, operand), word);
  }

  /// The 4 A registers of the mma tile at warp rows [rowOffset, +16) and
  /// k words [kWord, +8) of `words`.
  SmallVector<Value> aFragment(IB &lb, Value words, int64_t rowOffset,
                               int64_t kWord) {
    Value row = addI(lb, addC(lb, warpRow, rowOffset), group);
    SmallVector<Value> registers;
    for (int64_t i = 0; i < 4; ++i)
      registers.push_back(
          fragmentRegister(lb, words, addC(lb, row, 8 * (i % 2)),
                           addC(lb, quad, kWord + 4 * (i / 2))));
    return registers;
  }

  /// The 2 B registers of the mma tile at warp columns [columnOffset, +8)
  /// and k words [kWord, +8).
  SmallVector<Value> bFragment(IB &lb, int64_t columnOffset, int64_t kWord) {
    Value column = addI(lb, addC(lb, warpColumn, columnOffset), group);
    SmallVector<Value> registers;
    for (int64_t i = 0; i < 2; ++i)
      registers.push_back(fragmentRegister(lb, weightWords, column,
                                           addC(lb, quad, kWord + 4 * i)));
    return registers;
  }

  /// acc[4 * tile .. +4] += a @ b on the tensor cores.
  void mma(IB &lb, ArrayRef<Value> a, ArrayRef<Value> bRegs,
           SmallVector<Value> &acc, int64_t tile) {
    Type f32 = lb.getF32Type();
    auto resultType = LLVM::LLVMStructType::getLiteral(
        lb.getContext(), SmallVector<Type>(4, f32));
    NVVM::MMATypes type =
        operand.isBF16() ? NVVM::MMATypes::bf16 : NVVM::MMATypes::f16;
    ArrayRef<Value> c(acc.begin() + 4 * tile, 4);
    Value d =
        NVVM::MmaOp::create(lb, resultType, a, bRegs, c, {kMmaM, kMmaN, kMmaK},
                            /*b1Op=*/std::nullopt, /*intOverflow=*/std::nullopt,
                            std::array<NVVM::MMATypes, 2>{type, type},
                            std::array<NVVM::MMALayout, 2>{
                                NVVM::MMALayout::row, NVVM::MMALayout::col});
    for (int64_t i = 0; i < 4; ++i)
      acc[4 * tile + i] = LLVM::ExtractValueOp::create(lb, d, i);
  }

  /// One K stage of expert e: copy, barrier, 2 x 8 (x 2 when split) mma,
  /// barrier (the next stage overwrites the tiles).
  SmallVector<Value> buildStage(IB &lb, Value e, Value first, Value end,
                                Value stage, ValueRange accIn) {
    Value k0 = mulI(lb, stage, cIdx(lb, kStepK));
    copyLhs(lb, first, end, k0);
    copyWeights(lb, e, k0);
    gpu::BarrierOp::create(lb);
    SmallVector<Value> acc(accIn);
    for (int64_t kWord = 0; kWord < kWords; kWord += kMmaK / 2) {
      SmallVector<SmallVector<Value>> bRegs;
      for (int64_t ni = 0; ni < kTilesN; ++ni)
        bRegs.push_back(bFragment(lb, ni * kMmaN, kWord));
      for (int64_t mi = 0; mi < kTilesM; ++mi) {
        SmallVector<Value> aHi = aFragment(lb, lhsHi, mi * kMmaM, kWord);
        SmallVector<Value> aLo;
        if (split)
          aLo = aFragment(lb, lhsLo, mi * kMmaM, kWord);
        for (int64_t ni = 0; ni < kTilesN; ++ni) {
          mma(lb, aHi, bRegs[ni], acc, mi * kTilesN + ni);
          if (split)
            mma(lb, aLo, bRegs[ni], acc, mi * kTilesN + ni);
        }
      }
    }
    gpu::BarrierOp::create(lb);
    return acc;
  }

  /// Stores the accumulators (C fragment layout) inside [0, R) x [0, N).
  void storeAccumulators(ArrayRef<Value> acc) {
    for (int64_t mi = 0; mi < kTilesM; ++mi)
      for (int64_t ni = 0; ni < kTilesN; ++ni)
        for (int64_t i = 0; i < 4; ++i) {
          Value r = addI(b, addI(b, tileRow, warpRow),
                         addC(b, group, mi * kMmaM + 8 * (i / 2)));
          Value n =
              addI(b, addI(b, tileColumn, warpColumn),
                   addC(b, mulI(b, quad, cIdx(b, 2)), ni * kMmaN + i % 2));
          auto guard =
              scf::IfOp::create(b, andI(b, ltI(b, r, rows), ltI(b, n, columns)),
                                /*withElseRegion=*/false);
          OpBuilder::InsertionGuard insertion(b);
          b.setInsertionPoint(guard.thenBlock()->getTerminator());
          memref::StoreOp::create(b, acc[(mi * kTilesN + ni) * 4 + i], out,
                                  ValueRange{r, n});
        }
  }

  IB &b;
  Type operand;
  bool split, transposed;
  Value lhs, weights, offsets, out, lhsHi, lhsLo, weightWords;
  Value rows, depth, columns, thread, group, quad, warpRow, warpColumn, tileRow,
      tileColumn;
};

} // namespace

bool hasTensorCoreGemm(Type lhsElement, Type weightElement) {
  if (!weightElement.isBF16() && !weightElement.isF16())
    return false;
  return lhsElement == weightElement || lhsElement.isF32();
}

Value groupedGemm(IB &b, Value lhs, Value weights, Value offsets,
                  bool transposeWeights) {
  Type lhsElement = tensorType(lhs).getElementType();
  Type operand = tensorType(weights).getElementType();
  assert(hasTensorCoreGemm(lhsElement, operand) &&
         "no tensor-core GEMM for these element types");
  bool split = lhsElement != operand;
  lhs = dynamicShape(b, lhs);
  weights = dynamicShape(b, weights);
  offsets = dynamicShape(b, offsets);
  Value rows = dim(b, lhs, 0);
  Value columns = dim(b, weights, transposeWeights ? 1 : 2);
  auto resultType = RankedTensorType::get(
      {ShapedType::kDynamic, ShapedType::kDynamic}, b.getF32Type());

  std::string name;
  llvm::raw_string_ostream os(name);
  os << "grouped_gemm_" << lhsElement << "_" << operand << "_"
     << tensorType(offsets).getElementType() << (transposeWeights ? "_wt" : "");
  Type i32 = b.getI32Type();
  SmallVector<MemRefType> shared = {sharedMemRef({kTile, kRowWords}, i32),
                                    sharedMemRef({kTile, kRowWords}, i32)};
  if (split)
    shared.push_back(sharedMemRef({kTile, kRowWords}, i32));
  gpu::GPUFuncOp kernel = getOrBuildKernel(
      b, name, /*scalarTypes=*/{},
      {tensorType(lhs), tensorType(weights), tensorType(offsets)}, {resultType},
      shared, [&](IB &body, gpu::GPUFuncOp func) {
        KernelBuilder(body, func, operand, split, transposeWeights).build();
      });

  // Grids are never empty: with no rows or columns one block runs and
  // stores nothing.
  auto tiles = [&](Value extent) {
    return maxSI(b, arith::CeilDivUIOp::create(b, extent, cIdx(b, kTile)),
                 cIdx(b, 1));
  };
  Value one = cIdx(b, 1);
  return launchKernel(b, kernel, {tiles(rows), tiles(columns), one},
                      {cIdx(b, kThreads), one, one}, /*scalars=*/{},
                      {lhs, weights, offsets}, {resultType},
                      {SmallVector<Value>{rows, columns}})
      .front();
}

} // namespace moec::lowering

//===- MoEUtils.h - Routing arithmetic shared by compiler and tests -*- C++ -*-===//
//
// Capacity formulas decide which tokens are dropped, so the verifier, the
// lowerings and the references must agree on them to the last integer. They
// live here, header-only and free of MLIR, so that every consumer (including
// the runtime and unit tests) uses the same definition.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_DIALECTS_MOE_MOEUTILS_H
#define MOEC_DIALECTS_MOE_MOEUTILS_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace moec::moe {

/// Per-expert capacity of token-choice dispatch (GShard / Switch):
/// ceil(((factor * tokens) * k) / experts), evaluated in double precision in
/// exactly that order.
inline int64_t tokenChoiceCapacity(double factor, int64_t tokens, int64_t k,
                                   int64_t experts) {
  double slots = ((factor * static_cast<double>(tokens)) *
                  static_cast<double>(k)) /
                 static_cast<double>(experts);
  // Converting a double beyond int64 is undefined; a capacity that large (an
  // infinite factor, or NaN from inf * 0 tokens) cannot bind anyway.
  if (!(slots < 0x1p63))
    return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(std::ceil(slots));
}

/// Rows of a token-choice row plan: every assignment when dropless, otherwise
/// min(T * k, E * C), no more than the experts' total capacity. T * k must
/// fit in int64.
inline int64_t tokenChoiceRows(int64_t tokens, int64_t k, int64_t experts,
                               const double *capacityFactor) {
  int64_t assignments = tokens * k;
  if (!capacityFactor)
    return assignments;
  int64_t capacity = tokenChoiceCapacity(*capacityFactor, tokens, k, experts);
  // E * C >= T * k exactly when C >= ceil(T * k / E); testing it that way
  // keeps a huge C from overflowing E * C.
  int64_t needed = assignments / experts + (assignments % experts != 0);
  return capacity >= needed ? assignments : experts * capacity;
}

/// Tokens each expert takes under expert-choice routing:
/// min(tokens, ceil((factor * tokens) / experts)).
inline int64_t expertChoiceCapacity(double factor, int64_t tokens,
                                    int64_t experts) {
  return std::min(tokens, tokenChoiceCapacity(factor, tokens, 1, experts));
}

/// A capacity factor at which no token-choice assignment can be dropped:
/// each expert receives at most one assignment per token, so C >= T
/// suffices, i.e. factor * k >= experts.
inline bool capacityNeverDrops(double factor, int64_t k, int64_t experts) {
  return factor * static_cast<double>(k) >= static_cast<double>(experts);
}

} // namespace moec::moe

#endif // MOEC_DIALECTS_MOE_MOEUTILS_H

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

namespace moec::moe {

/// Per-expert capacity of token-choice dispatch (GShard / Switch):
/// ceil(((factor * tokens) * k) / experts), evaluated in double precision in
/// exactly that order.
inline int64_t tokenChoiceCapacity(double factor, int64_t tokens, int64_t k,
                                   int64_t experts) {
  double slots = ((factor * static_cast<double>(tokens)) *
                  static_cast<double>(k)) /
                 static_cast<double>(experts);
  return static_cast<int64_t>(std::ceil(slots));
}

/// Rows of a token-choice row plan: every assignment when dropless, otherwise
/// no more than the experts' total capacity.
inline int64_t tokenChoiceRows(int64_t tokens, int64_t k, int64_t experts,
                               const double *capacityFactor) {
  if (!capacityFactor)
    return tokens * k;
  return std::min(tokens * k, experts * tokenChoiceCapacity(*capacityFactor,
                                                            tokens, k,
                                                            experts));
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

//===- Random.h - Deterministic random numbers ----------------------------===//
//
// Parameter initialisation and generated inputs must be reproducible from a
// seed on every platform, so this does not use <random>'s distributions
// (whose algorithms are implementation-defined).
//
//===----------------------------------------------------------------------===//
#ifndef MOERT_RUNTIME_RANDOM_H
#define MOERT_RUNTIME_RANDOM_H

#include <cmath>
#include <cstdint>
#include <string_view>

namespace moert::detail {

/// SplitMix64: tiny, fast and good enough for initialisation.
class Rng {
public:
  explicit Rng(uint64_t seed) : state(seed) {}

  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  /// Uniform in (0, 1): never 0, so log() below is finite.
  double uniform() { return ((next() >> 11) + 0.5) * 0x1.0p-53; }

  /// Two independent standard normal samples (Box-Muller).
  void normalPair(double &first, double &second) {
    double radius = std::sqrt(-2.0 * std::log(uniform()));
    double angle = 6.283185307179586 * uniform();
    first = radius * std::cos(angle);
    second = radius * std::sin(angle);
  }

  /// Uniform in [low, high), high > low.
  int64_t uniformInt(int64_t low, int64_t high) {
    uint64_t range = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
    uint64_t draw = static_cast<uint64_t>(
        (static_cast<unsigned __int128>(next()) * range) >> 64);
    return static_cast<int64_t>(static_cast<uint64_t>(low) + draw);
  }

private:
  uint64_t state;
};

/// A seed for the stream called `name` (FNV-1a of the name, mixed in).
inline uint64_t mixSeed(uint64_t seed, std::string_view name) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : name)
    hash = (hash ^ c) * 0x100000001b3ull;
  return Rng(seed ^ hash).next();
}

} // namespace moert::detail

#endif // MOERT_RUNTIME_RANDOM_H

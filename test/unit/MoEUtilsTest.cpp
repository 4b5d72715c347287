//===- MoEUtilsTest.cpp - Capacity arithmetic ------------------------------===//
//
// The capacity formulas decide which tokens are dropped, so they are pinned
// here against values worked out by hand from the GShard / Switch and
// expert-choice definitions, and against properties that must hold for any
// input.
//
//===----------------------------------------------------------------------===//

#include "dialects/MoE/MoEUtils.h"

#include <gtest/gtest.h>

#include <random>

using namespace moec::moe;

TEST(Capacity, TokenChoiceMatchesHandComputedValues) {
  // Switch: 1.25 * 40 tokens * top-1 / 4 experts = 12.5 -> 13.
  EXPECT_EQ(tokenChoiceCapacity(1.25, 40, 1, 4), 13);
  // GShard top-2: 1.0 * 64 * 2 / 8 = 16 exactly.
  EXPECT_EQ(tokenChoiceCapacity(1.0, 64, 2, 8), 16);
  // 0.5 * 100 / 8 = 6.25 -> 7.
  EXPECT_EQ(tokenChoiceCapacity(0.5, 100, 1, 8), 7);
  // One token still gets a slot somewhere.
  EXPECT_EQ(tokenChoiceCapacity(1.0, 1, 1, 64), 1);
}

TEST(Capacity, RowsAreBoundedByAssignmentsAndSlots) {
  const double factor = 1.25;
  // T=10, k=2, E=4: C = ceil(6.25) = 7, min(20, 28) = 20.
  EXPECT_EQ(tokenChoiceRows(10, 2, 4, &factor), 20);
  // T=100, k=1, E=8, factor 0.5: C = 7, min(100, 56) = 56.
  const double half = 0.5;
  EXPECT_EQ(tokenChoiceRows(100, 1, 8, &half), 56);
  // Dropless: every assignment has a row.
  EXPECT_EQ(tokenChoiceRows(100, 2, 8, nullptr), 200);
}

TEST(Capacity, ExpertChoiceIsClampedToTheTokenCount) {
  // 2 * 64 / 8 = 16 tokens per expert.
  EXPECT_EQ(expertChoiceCapacity(2.0, 64, 8), 16);
  // A factor above E would ask for more tokens than exist.
  EXPECT_EQ(expertChoiceCapacity(16.0, 10, 8), 10);
  EXPECT_EQ(expertChoiceCapacity(1.0, 3, 8), 1);
}

TEST(Capacity, NeverDropsIffEveryExpertCanTakeEveryToken) {
  EXPECT_TRUE(capacityNeverDrops(4.0, 2, 8));
  EXPECT_FALSE(capacityNeverDrops(3.5, 2, 8));
  EXPECT_TRUE(capacityNeverDrops(8.0, 1, 8));
  EXPECT_FALSE(capacityNeverDrops(1.25, 1, 8));
}

TEST(Capacity, PropertiesHoldForRandomShapes) {
  std::mt19937_64 rng(20261123);
  std::uniform_int_distribution<int64_t> tokens(1, 5000), experts(1, 256);
  std::uniform_real_distribution<double> factor(0.05, 10.0);
  for (int trial = 0; trial < 20000; ++trial) {
    int64_t t = tokens(rng), e = experts(rng);
    int64_t k = std::uniform_int_distribution<int64_t>(1, e)(rng);
    double f = factor(rng);
    int64_t c = tokenChoiceCapacity(f, t, k, e);
    // C is the smallest integer with C >= f*T*k/E (up to rounding of the
    // double product, which the definition fixes).
    EXPECT_GE(static_cast<double>(c), f * t * k / e - 1e-9);
    EXPECT_LT(static_cast<double>(c - 1), f * t * k / e + 1e-9);
    int64_t rows = tokenChoiceRows(t, k, e, &f);
    EXPECT_LE(rows, t * k);
    EXPECT_LE(rows, e * c);
    if (capacityNeverDrops(f, k, e)) {
      EXPECT_GE(c, t) << "f=" << f << " T=" << t << " k=" << k << " E=" << e;
      EXPECT_EQ(rows, t * k);
    }
    int64_t ec = expertChoiceCapacity(f, t, e);
    EXPECT_GE(ec, 1);
    EXPECT_LE(ec, t);
  }
}

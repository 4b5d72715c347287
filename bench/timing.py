"""Timing helper shared by the benchmarks."""
import time


def best_time(fn, reps):
    """Best wall time of `reps` calls of fn, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best

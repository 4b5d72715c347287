"""Timing helpers shared by the benchmarks."""
import statistics
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


def median_time(fn, reps, warmup=2):
    """Median wall time of `reps` calls of fn, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

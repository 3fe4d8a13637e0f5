"""ZIP greedy: compressed-prefix kernel vs the straightforward implementation (every candidate's
list recompressed whole with zlib level 9), same pool, same parameters, one process each.

    python bench/zip.py [--quick]

The run with budget B makes the first B picks of any longer run (the budget only stops it), so one
run of each implementation, timed when it reaches each budget, gives every point of the curve.
Default: 4,500 documents of ~480 bytes, k1=100, k2=20, k3=10, budgets 250..2000 (the
straightforward run took 9 CPU minutes, 17 wall minutes on a busy 2-core machine). --quick:
1,000 documents, budgets 75..300 (~20 s).

Prints, last:
    BENCH zip_speedup_budget<B> <straightforward time / kernel time at the largest budget>
          goal>=50 at B=2000 (scaled by B/2000 for --quick: the speedup grows linearly with B)
    BENCH zip_identical_picks <1 if both runs picked the same documents in the same order> goal>=1
    BENCH zip_naive_growth_exponent <log-log slope of time vs budget, two largest budgets> goal>=1.7
    BENCH zip_kernel_growth_exponent <same for the kernel> goal<=1.2
    BENCH zip_selected_vs_random_ratio <zlib ratio of the selection / of a same-size random
          subset> goal<1
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from udfs.zip_greedy import zip_select  # noqa: E402

SEPARATOR = b"\n\n"


def make_docs(n: int, seed: int = 0) -> list[bytes]:
    """Text-like documents: Zipf-distributed synthetic words, a fifth of them near-duplicates."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("etaoinshrdlucmfwypvbgk") for _ in range(rng.randint(1, 10)))
             for _ in range(20_000)]
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    docs: list[str] = []
    while len(docs) < n:
        if docs and rng.random() < 0.2:
            words = rng.choice(docs).split()
            for _ in range(3):
                words[rng.randrange(len(words))] = rng.choice(vocab)
        else:
            words = rng.choices(vocab, weights, k=rng.randint(40, 100))
        docs.append(" ".join(words))
    return [d.encode() for d in docs]


def ratio(raw: bytes) -> float:
    return len(raw) / len(zlib.compress(raw, 9))


def straightforward_zip(pieces, *, k1, k2, k3, budget, checkpoints):
    """The reference's loop: every ratio compresses the whole serialised list from scratch.
    Returns the picks and the elapsed time when each checkpoint budget was reached."""
    started = time.perf_counter()
    state = np.array([ratio(p) for p in pieces])
    alive = np.ones(len(pieces), dtype=bool)
    selected: list[int] = []
    times: dict[int, float] = {}

    def list_ratio(indices):
        return ratio(SEPARATOR.join(pieces[i] for i in indices))

    while len(selected) < budget and alive.any():
        pool = np.flatnonzero(alive)
        c1 = pool[np.argsort(state[pool], kind="stable")[:k1]]
        for i in c1:
            state[i] = list_ratio(selected + [i])
        c1 = np.sort(c1)
        c2 = c1[np.argsort(state[c1], kind="stable")[:k2]]
        alive[c2] = False
        rest, local = sorted(c2.tolist()), []
        while rest and len(local) < k3 and len(selected) < budget:
            _, best = min((list_ratio(local + [i]), i) for i in rest)
            rest.remove(best)
            local.append(best)
            selected.append(best)
            if len(selected) in checkpoints:
                times[len(selected)] = time.perf_counter() - started
    return selected, times


def kernel_zip(pieces, *, k1, k2, k3, budget, checkpoints, backend="zlib9"):
    started = time.perf_counter()
    times: dict[int, float] = {}

    def on_round(progress):
        for b in checkpoints:
            if progress.n_selected >= b and b not in times:
                times[b] = time.perf_counter() - started

    result = zip_select(pieces, k1=k1, k2=k2, k3=k3, budget=budget, backend=backend,
                        on_round=on_round)
    return result.positions.tolist(), times


def slope(times: dict[int, float], budgets: list[int]) -> float:
    a, b = budgets[-2], budgets[-1]
    return math.log(times[b] / times[a]) / math.log(b / a)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_docs, budgets = (1_000, [75, 150, 300]) if args.quick else (
        4_500, [250, 500, 1000, 2000])
    k1, k2, k3 = 100, 20, 10
    pieces = make_docs(n_docs)
    print(f"{n_docs} docs, mean {np.mean([len(p) for p in pieces]):.0f} bytes; "
          f"k1={k1} k2={k2} k3={k3}; budgets {budgets}", flush=True)

    params = dict(k1=k1, k2=k2, k3=k3, budget=budgets[-1], checkpoints=set(budgets))
    fast_picks, fast = kernel_zip(pieces, **params)
    zstd_picks, zstd_times = kernel_zip(pieces, **params, backend="zstd")
    cpu = time.process_time()
    slow_picks, slow = straightforward_zip(pieces, **params)
    slow_cpu = time.process_time() - cpu

    print(f"{'budget':>7} {'straightforward s':>18} {'kernel s':>9} {'speedup':>8} {'zstd s':>7}")
    for b in budgets:
        print(f"{b:>7} {slow[b]:>18.2f} {fast[b]:>9.3f} {slow[b] / fast[b]:>8.1f} "
              f"{zstd_times[b]:>7.3f}")
    print(f"straightforward CPU time {slow_cpu:.1f} s (wall {slow[budgets[-1]]:.1f} s)")
    identical = int(fast_picks == slow_picks)
    rng = random.Random(1)
    chosen = ratio(SEPARATOR.join(pieces[i] for i in fast_picks))
    randoms = [ratio(SEPARATOR.join(rng.sample(pieces, len(fast_picks)))) for _ in range(5)]
    overlap = len(set(zstd_picks) & set(fast_picks))
    print(f"selection ratio {chosen:.4f}; random subsets {[round(r, 4) for r in randoms]}; "
          f"zstd picks overlap zlib picks {overlap}/{len(fast_picks)}")

    top = budgets[-1]
    goal = 50 * top / 2000
    print(f"BENCH zip_speedup_budget{top} {slow[top] / fast[top]:.1f} goal>={goal:g}")
    print(f"BENCH zip_identical_picks {identical} goal>=1")
    print(f"BENCH zip_naive_growth_exponent {slope(slow, budgets):.2f} goal>=1.7")
    print(f"BENCH zip_kernel_growth_exponent {slope(fast, budgets):.2f} goal<=1.2")
    print(f"BENCH zip_selected_vs_random_ratio {chosen / float(np.mean(randoms)):.3f} goal<1")


if __name__ == "__main__":
    main()

"""Calibration of repro's statistical verdicts on simulated groups of runs.

Simulates groups of N runs (normal seed noise, sd 1; and a skewed lognormal null) and reports
- compare: the false-alarm rate (any verdict other than no-detectable-difference when both
  groups come from one distribution) and the power against shifts of 0.5, 1 and 1.5 sd;
- verify --level statistical against one recorded run (prediction interval) and against a
  recorded group of N (TOST, margin 2 baseline sd): the false-alarm rate (not-reproduced when
  nothing changed), how often it says reproduced / inconclusive, and the power to say
  not-reproduced against the same shifts.
Target: false alarms at most 5% at every N; where N is too small, inconclusive, never wrong.

    .venv/bin/python benchmarks/stats_calibration.py            # 2000 simulations a cell
    .venv/bin/python benchmarks/stats_calibration.py --sims 200 # quicker, noisier

Monte-Carlo permutation tests use 999 resamples here (9,999 in repro) and are skipped where
they cannot change the verdict (`full=False`), to keep it quick.
"""

from __future__ import annotations

import argparse
import math
import random
import time

from repro.judge import statistical as judge

NS = (3, 5, 10, 20)
SHIFTS = (0.5, 1.0, 1.5)


def _draw(rng: random.Random, n: int, shift: float, dist: str) -> list[float]:
    if dist == "lognormal":
        return [rng.lognormvariate(0.0, 1.0) + shift for _ in range(n)]
    return [rng.gauss(shift, 1.0) for _ in range(n)]


def _compare(rng: random.Random, n: int, shift: float, dist: str) -> str:
    a, b = _draw(rng, n, 0.0, dist), _draw(rng, n, shift, dist)
    seed = rng.randrange(2**32)
    result = judge.compare({"m": a}, {"m": b}, seed=seed, permutation_resamples=999,
                           full=False)
    return result.verdict


def _verify_run(rng: random.Random, n: int, shift: float, dist: str) -> str:
    recorded = _draw(rng, 1, 0.0, dist)[0]
    return judge.verify_run({"m": recorded}, {"m": _draw(rng, n, shift, dist)}).verdict


def _verify_group(rng: random.Random, n: int, shift: float, dist: str) -> str:
    recorded, new = _draw(rng, n, 0.0, dist), _draw(rng, n, shift, dist)
    return judge.verify_group({"m": recorded}, {"m": new}, seed=rng.randrange(2**32),
                              permutation_resamples=999, full=False).verdict


def _rates(fn: object, n: int, shift: float, sims: int, seed: int,
           dist: str = "normal") -> dict[str, float]:
    rng = random.Random(f"{seed}:{n}:{shift}:{dist}")  # an independent stream per cell
    counts: dict[str, int] = {}
    for _ in range(sims):
        v = fn(rng, n, shift, dist)  # type: ignore[operator]
        counts[v] = counts.get(v, 0) + 1
    return {k: c / sims for k, c in counts.items()}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sims", type=int, default=2000, help="simulations per cell")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sims = args.sims
    se = math.sqrt(0.05 * 0.95 / sims)
    started = time.perf_counter()
    print(f"{sims} simulations per cell (a 5% rate is measured to +-{100 * 2 * se:.1f} points)\n")

    print("compare A B (one metric, no direction): false alarms and power")
    print("| N per group | false alarm (normal) | false alarm (lognormal) | "
          + " | ".join(f"power at {s} sd" for s in SHIFTS) + " |")
    print("|---|---|---|" + "---|" * len(SHIFTS))
    for n in NS:
        rates = _rates(_compare, n, 0.0, sims, args.seed)
        null = 1 - rates.get(judge.SAME, 0.0)
        skew = 1 - _rates(_compare, n, 0.0, sims, args.seed + 1, "lognormal").get(judge.SAME, 0.0)
        power = [1 - _rates(_compare, n, s, sims, args.seed + 2).get(judge.SAME, 0.0)
                 for s in SHIFTS]
        print(f"| {n} | {_pct(null)} | {_pct(skew)} | " + " | ".join(map(_pct, power)) + " |")

    for title, fn in (("verify --level statistical against one recorded run (prediction "
                       "interval)", _verify_run),
                      ("verify --level statistical against a recorded group of N (TOST, margin "
                       "2 sd)", _verify_group)):
        print(f"\n{title}: N new runs"
              + (f" ({sims * 10} simulations a cell)" if fn is _verify_run else ""))
        print("| N | false alarm | reproduced | inconclusive | "
              + " | ".join(f"not-reproduced at {s} sd" for s in SHIFTS) + " |")
        print("|---|---|---|---|" + "---|" * len(SHIFTS))
        # the prediction interval is cheap: ten times the simulations, for a tighter figure
        k = sims * 10 if fn is _verify_run else sims
        for n in NS:
            rates = _rates(fn, n, 0.0, k, args.seed + 3)
            power = [_rates(fn, n, s, k, args.seed + 4).get(judge.NOT_REPRODUCED, 0.0)
                     for s in SHIFTS]
            print(f"| {n} | {_pct(rates.get(judge.NOT_REPRODUCED, 0.0))} | "
                  f"{_pct(rates.get(judge.REPRODUCED, 0.0))} | "
                  f"{_pct(rates.get(judge.INCONCLUSIVE, 0.0))} | "
                  + " | ".join(map(_pct, power)) + " |")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()

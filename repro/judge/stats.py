"""Small-sample statistics on the standard library: Student's t, Welch, permutation, bootstrap.

Everything repro says about noise comes from here. Standard library only (repro never imports
numpy or scipy in its own process); tests/test_stats.py checks every figure against scipy.
Resampling is seeded, so the same samples always give the same intervals and verdicts.
Pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import statistics
from collections.abc import Callable, Sequence

DEFAULT_SEED = 20211  # resampling seed: the same data always gives the same verdict
EXACT_PERMUTATION_LIMIT = 100_000  # enumerate every split up to this many, else Monte-Carlo
PERMUTATION_RESAMPLES = 9_999
BOOTSTRAP_RESAMPLES = 2_000

_TINY = 1e-300
_EPS = 1e-16
_NORMAL = statistics.NormalDist()
_LARGE_DF = 1e9  # beyond this, Student's t is the normal distribution to double precision


# --- the regularized incomplete beta function and Student's t --------------------------------

def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    return _betainc(a, b, x, 1.0 - x)


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b) with y = 1 - x given separately (t tails pass both without cancellation)."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0, got {a}, {b}")
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log(y))
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    # I_x(a, b) = 1 - I_{1-x}(b, a) beyond it.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, y) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), by the modified Lentz method."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < 4 * _EPS:
            break
    return h


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom (df > 0, not necessarily whole)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    if df > _LARGE_DF:
        return _NORMAL.cdf(-t)
    tt = t * t
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + tt), tt / (df + tt))
    return tail if t > 0 else 1.0 - tail


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t."""
    return t_sf(-t, df)


def t_pdf(t: float, df: float) -> float:
    """The density of Student's t."""
    if df > _LARGE_DF:
        return math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
    log_pdf = (math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
               - (df + 1) / 2 * math.log1p(t * t / df))
    return math.exp(log_pdf)


def t_ppf(p: float, df: float) -> float:
    """The quantile of Student's t: the t with P(T <= t) = p."""
    if not 0.0 < p < 1.0:
        if p == 0.0:
            return -math.inf
        if p == 1.0:
            return math.inf
        raise ValueError(f"a probability must be in [0, 1], got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_isf(p, df)
    return t_isf(1.0 - p, df)


def t_isf(q: float, df: float) -> float:
    """The t with P(T > t) = q, for 0 < q <= 0.5 (upper tail, solved there for precision)."""
    if not 0.0 < q <= 0.5:
        return -t_ppf(q, df) if 0.5 < q < 1.0 else t_ppf(1.0 - q, df)
    if df > _LARGE_DF:
        return _NORMAL.inv_cdf(1.0 - q)
    # Bracket the root, then Newton's method guarded by bisection.
    lo, hi = 0.0, max(1.0, _NORMAL.inv_cdf(1.0 - q))
    while t_sf(hi, df) > q:
        lo, hi = hi, hi * 2.0
        if hi > 1e300:
            return math.inf
    x = 0.5 * (lo + hi)
    for _ in range(200):
        f = t_sf(x, df) - q
        if f > 0:
            lo = x
        else:
            hi = x
        slope = t_pdf(x, df)
        step = f / slope if slope > 0 else math.inf
        nxt = x + step
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - x) <= 1e-15 * max(1.0, abs(x)):
            return nxt
        x = nxt
    return x


# --- descriptive ------------------------------------------------------------------------------

def mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def sd(xs: Sequence[float]) -> float:
    """The sample standard deviation (n - 1); 0 for a single value."""
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def pooled_sd(a: Sequence[float], b: Sequence[float]) -> float:
    """The pooled standard deviation of two samples (what either side's runs vary by)."""
    dof = len(a) + len(b) - 2
    if dof <= 0:
        return 0.0
    return math.sqrt(((len(a) - 1) * sd(a) ** 2 + (len(b) - 1) * sd(b) ** 2) / dof)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation (numpy's default method)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# --- Welch's t-test ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t-test of mean(b) - mean(a)."""

    difference: float
    se: float
    df: float
    t: float
    p_value: float  # two-sided
    ci_low: float
    ci_high: float
    confidence: float


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Welch:
    """Welch's t-test and confidence interval for mean(b) - mean(a); both need n >= 2."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        raise ValueError("Welch's t-test needs at least two values on each side")
    va, vb = sd(a) ** 2 / na, sd(b) ** 2 / nb
    diff = mean(b) - mean(a)
    se = math.sqrt(va + vb)
    if se == 0.0:
        # Both sides constant: either the same value (no evidence of a difference) or two
        # different constants (a difference no amount of noise explains).
        same = diff == 0.0
        return Welch(diff, 0.0, float(na + nb - 2), 0.0 if same else math.copysign(math.inf, diff),
                     1.0 if same else 0.0, diff, diff, confidence)
    scale = max(va, vb)  # scaled so that tiny variances do not underflow when squared
    ra, rb = va / scale, vb / scale
    df = (ra + rb) ** 2 / (ra * ra / (na - 1) + rb * rb / (nb - 1))
    t = diff / se
    p = min(1.0, 2.0 * t_sf(abs(t), df))
    half = t_isf((1.0 - confidence) / 2.0, df) * se
    return Welch(diff, se, df, t, p, diff - half, diff + half, confidence)


def tost(a: Sequence[float], b: Sequence[float], margin: float) -> float:
    """Two one-sided Welch tests: the p-value that |mean(b) - mean(a)| < margin.

    Equivalence is shown at level alpha when the result is below alpha (the same as the
    1 - 2 alpha confidence interval lying inside (-margin, margin)).
    """
    w = welch(a, b)
    if w.se == 0.0:
        return 0.0 if abs(w.difference) < margin or w.difference == 0.0 else 1.0
    p_low = t_sf((w.difference + margin) / w.se, w.df)  # H0: difference <= -margin
    p_high = t_cdf((w.difference - margin) / w.se, w.df)  # H0: difference >= +margin
    return max(p_low, p_high)


# --- a single value against a sample ----------------------------------------------------------

def prediction_interval(xs: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Where one more draw from the distribution of `xs` falls with the given probability."""
    n = len(xs)
    if n < 2:
        raise ValueError("a prediction interval needs at least two values")
    half = t_isf((1.0 - confidence) / 2.0, n - 1) * sd(xs) * math.sqrt(1.0 + 1.0 / n)
    m = mean(xs)
    return m - half, m + half


def prediction_p_value(value: float, xs: Sequence[float]) -> float:
    """Two-sided p-value that `value` is one more draw like `xs` (outside the 1 - p interval)."""
    n = len(xs)
    if n < 2:
        raise ValueError("a prediction test needs at least two values")
    spread = sd(xs) * math.sqrt(1.0 + 1.0 / n)
    gap = value - mean(xs)
    if spread == 0.0:
        return 1.0 if gap == 0.0 else 0.0
    return min(1.0, 2.0 * t_sf(abs(gap) / spread, n - 1))


# --- permutation test -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Permutation:
    p_value: float  # two-sided: twice the smaller one-sided p, as scipy.stats.permutation_test
    exact: bool
    resamples: int


def permutation_test(a: Sequence[float], b: Sequence[float], *, seed: int = DEFAULT_SEED,
                     exact_limit: int = EXACT_PERMUTATION_LIMIT,
                     resamples: int = PERMUTATION_RESAMPLES) -> Permutation:
    """Permutation test of mean(b) - mean(a): exact up to `exact_limit` splits, else seeded
    Monte-Carlo (p = (k + 1) / (resamples + 1), never 0)."""
    na, nb = len(a), len(b)
    if na < 1 or nb < 1:
        raise ValueError("a permutation test needs values on both sides")
    pooled = [*a, *b]
    total = math.fsum(pooled)

    def statistic(sum_b: float) -> float:
        return sum_b / nb - (total - sum_b) / na

    observed = statistic(math.fsum(b))
    gamma = abs(observed) * 100 * 2.220446049250313e-16  # scipy's tie tolerance
    splits = math.comb(na + nb, nb)
    less = greater = 0
    if splits <= exact_limit:
        count, adjust = splits, 0
        for chosen in itertools.combinations(pooled, nb):
            s = statistic(math.fsum(chosen))
            less += s <= observed + gamma
            greater += s >= observed - gamma
    else:
        count, adjust = resamples, 1
        rng = random.Random(seed)
        for _ in range(resamples):
            s = statistic(math.fsum(rng.sample(pooled, nb)))
            less += s <= observed + gamma
            greater += s >= observed - gamma
    p = 2.0 * min(less + adjust, greater + adjust) / (count + adjust)
    return Permutation(min(1.0, p), adjust == 0, count)


def min_permutation_p(na: int, nb: int) -> float:
    """The smallest two-sided p-value an exact permutation test of na vs nb values can give."""
    return min(1.0, 2.0 / math.comb(na + nb, nb))


# --- bootstrap and the probability of superiority --------------------------------------------

def prob_greater(a: Sequence[float], b: Sequence[float]) -> float:
    """P(B > A) for one draw from each sample, ties counting half (the Mann-Whitney U / nm)."""
    wins = 0.0
    for y in b:
        for x in a:
            wins += 1.0 if y > x else 0.5 if y == x else 0.0
    return wins / (len(a) * len(b))


def bootstrap_ci(a: Sequence[float], b: Sequence[float],
                 statistic: Callable[[Sequence[float], Sequence[float]], float], *,
                 confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(a, b), each side resampled on its own."""
    rng = random.Random(seed)
    values = [statistic(rng.choices(a, k=len(a)), rng.choices(b, k=len(b)))
              for _ in range(resamples)]
    tail = (1.0 - confidence) / 2.0 * 100.0
    return percentile(values, tail), percentile(values, 100.0 - tail)


# --- several tests at once, and planning ------------------------------------------------------

def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (reject where adjusted < alpha)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def detectable_effect(n_a: int, n_b: int, sd_: float, *, alpha: float = 0.05,
                      power: float = 0.8) -> float:
    """The smallest true difference of means a two-sided t-test of n_a vs n_b runs finds with
    the given power (the usual t approximation: (t_{1-alpha/2} + t_{power}) * sd * sqrt(1/n_a
    + 1/n_b), df = n_a + n_b - 2)."""
    df = n_a + n_b - 2
    if df < 1:
        return math.inf
    return (t_isf(alpha / 2.0, df) + t_ppf(power, df)) * sd_ * math.sqrt(1.0 / n_a + 1.0 / n_b)


def runs_for_difference(sd_a: float, n_a: int, sd_b: float, difference: float, *,
                        alpha: float = 0.05, power: float = 0.8, limit: int = 1000) -> int | None:
    """How many runs on side b would detect `difference` with the given power (side a fixed);
    None when no number up to `limit` would."""
    target = abs(difference)

    def enough(n_b: int) -> bool:
        df = max(1, n_a + n_b - 2)
        se = math.sqrt(sd_a ** 2 / n_a + sd_b ** 2 / n_b)
        return (t_isf(alpha / 2.0, df) + t_ppf(power, df)) * se <= target

    return _smallest(enough, 2, limit)


def runs_for_equivalence(sd_a: float, n_a: int, sd_b: float, difference: float, margin: float,
                         *, alpha: float = 0.05, power: float = 0.8,
                         limit: int = 1000) -> int | None:
    """How many runs on side b would show |difference| < margin by TOST with the given power
    when the true difference is `difference` (side a fixed); None when none up to `limit`."""
    room = margin - abs(difference)
    if room <= 0:
        return None
    # With a true difference of 0 both one-sided tests must pass: beta splits in two.
    beta = (1.0 - power) / (2.0 if difference == 0 else 1.0)

    def enough(n_b: int) -> bool:
        df = max(1, n_a + n_b - 2)
        se = math.sqrt(sd_a ** 2 / n_a + sd_b ** 2 / n_b)
        return (t_isf(alpha, df) + t_isf(beta, df)) * se <= room

    return _smallest(enough, 2, limit)


def _smallest(enough: Callable[[int], bool], low: int, limit: int) -> int | None:
    """The smallest n in [low, limit] with enough(n), for a predicate that stays true once
    true (more runs never hurt); None when even `limit` is not enough."""
    if not enough(limit):
        return None
    hi = low
    while not enough(hi):
        low, hi = hi + 1, min(limit, hi * 2)
    while low < hi:
        mid = (low + hi) // 2
        if enough(mid):
            hi = mid
        else:
            low = mid + 1
    return hi

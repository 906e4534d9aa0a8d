"""repro.judge.stats against scipy (a test-only dependency), and the verdicts of judge.statistical."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special
from scipy import stats as sps

from repro.judge import statistical as judge
from repro.judge import stats

TOL = 1e-6

# Metric values as runs report them (scipy itself underflows on subnormal spreads)
finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False,
                   allow_infinity=False).filter(lambda x: x == 0 or abs(x) > 1e-6)
sample = st.lists(finite, min_size=2, max_size=12).filter(lambda xs: len(set(xs)) > 1)
dfs = st.one_of(st.floats(min_value=0.3, max_value=200.0), st.sampled_from([1.0, 2.0, 1e4, 1e6]))


def close(a: float, b: float, tol: float = TOL) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


@pytest.mark.parametrize("a,b,x", [(0.5, 0.5, 0.3), (2, 3, 0.9), (100, 0.5, 0.99), (0.1, 10, 1e-3),
                                   (50, 50, 0.5), (1e4, 0.5, 0.9999), (1, 1, 0.25), (3, 0.5, 0.0),
                                   (3, 0.5, 1.0)])
def test_betainc_matches_scipy(a: float, b: float, x: float) -> None:
    assert close(stats.betainc(a, b, x), float(special.betainc(a, b, x)))


@given(t=st.floats(min_value=-1e4, max_value=1e4), df=dfs)
@settings(max_examples=300, deadline=None)
def test_t_cdf_and_sf_match_scipy(t: float, df: float) -> None:
    assert close(stats.t_cdf(t, df), float(sps.t.cdf(t, df)))
    assert close(stats.t_sf(t, df), float(sps.t.sf(t, df)))
    assert close(stats.t_pdf(t, df), float(sps.t.pdf(t, df)))


@given(p=st.floats(min_value=1e-9, max_value=1 - 1e-9), df=dfs)
@settings(max_examples=300, deadline=None)
def test_t_ppf_matches_scipy(p: float, df: float) -> None:
    assert close(stats.t_ppf(p, df), float(sps.t.ppf(p, df)))


@pytest.mark.parametrize("q,df", [(0.025, 1), (0.025, 4), (0.05, 8.3), (1e-10, 3), (0.5, 7)])
def test_t_isf_upper_tail_matches_scipy(q: float, df: float) -> None:
    assert close(stats.t_isf(q, df), float(sps.t.isf(q, df)))


def test_t_tails_are_exact_far_out() -> None:
    # relative precision in a tiny tail, where 1 - cdf would have cancelled
    assert stats.t_sf(40.0, 3) == pytest.approx(float(sps.t.sf(40.0, 3)), rel=1e-9)


@given(a=sample, b=sample)
@settings(max_examples=200, deadline=None)
def test_welch_matches_scipy(a: list[float], b: list[float]) -> None:
    w = stats.welch(a, b)
    ref = sps.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert close(w.t, float(ref.statistic))
    assert close(w.p_value, float(ref.pvalue))
    assert close(w.df, float(ref.df))
    assert close(w.ci_low, float(ci.low))
    assert close(w.ci_high, float(ci.high))


def test_welch_of_two_constants() -> None:
    assert stats.welch([1.0, 1.0], [1.0, 1.0]).p_value == 1.0
    different = stats.welch([1.0, 1.0], [2.0, 2.0])
    assert different.p_value == 0.0 and different.difference == 1.0


@given(a=sample, b=sample, margin=st.floats(min_value=0.01, max_value=500.0))
@settings(max_examples=150, deadline=None)
def test_tost_matches_two_one_sided_scipy_tests(a: list[float], b: list[float],
                                                margin: float) -> None:
    ref = sps.ttest_ind(b, a, equal_var=False)
    se = float(np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)))
    d = float(np.mean(b) - np.mean(a))
    p_low = float(sps.t.sf((d + margin) / se, ref.df))
    p_high = float(sps.t.cdf((d - margin) / se, ref.df))
    assert close(stats.tost(a, b, margin), max(p_low, p_high))


@given(xs=sample, value=finite)
@settings(max_examples=150, deadline=None)
def test_prediction_interval_matches_scipy(xs: list[float], value: float) -> None:
    n = len(xs)
    s = float(np.std(xs, ddof=1)) * math.sqrt(1 + 1 / n)
    half = float(sps.t.ppf(0.975, n - 1)) * s
    low, high = stats.prediction_interval(xs)
    assert close(low, float(np.mean(xs)) - half) and close(high, float(np.mean(xs)) + half)
    expected_p = 2 * float(sps.t.sf(abs(value - float(np.mean(xs))) / s, n - 1))
    assert close(stats.prediction_p_value(value, xs), min(1.0, expected_p))


def _scipy_permutation(a: list[float], b: list[float], **kw: object) -> float:
    def diff(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(y, axis=axis) - np.mean(x, axis=axis)
    return float(sps.permutation_test((a, b), diff, vectorized=True, **kw).pvalue)  # type: ignore[arg-type]


# Values on a grid of 1/8 (exact in binary floating point, so every split's sum is exact in
# numpy's pairwise sums and in repro's fsum alike): with decimals such as 0.7812, which splits
# tie with the observed difference depends on the order each side rounds its sums in.
printed = st.integers(min_value=-8000, max_value=8000).map(lambda k: k / 8)


@given(a=st.lists(printed, min_size=2, max_size=6), b=st.lists(printed, min_size=2, max_size=6))
@settings(max_examples=100, deadline=None)
def test_exact_permutation_test_matches_scipy(a: list[float], b: list[float]) -> None:
    p = stats.permutation_test(a, b)
    assert p.exact
    assert close(p.p_value, _scipy_permutation(a, b, n_resamples=np.inf))


def test_monte_carlo_permutation_test_is_seeded_and_close_to_exact() -> None:
    rng = random.Random(5)
    a = [rng.gauss(0, 1) for _ in range(9)]
    b = [rng.gauss(0.8, 1) for _ in range(9)]
    exact = stats.permutation_test(a, b)
    mc = stats.permutation_test(a, b, exact_limit=10, resamples=20_000, seed=1)
    again = stats.permutation_test(a, b, exact_limit=10, resamples=20_000, seed=1)
    assert exact.exact and not mc.exact and mc == again
    assert exact.p_value == pytest.approx(_scipy_permutation(a, b, n_resamples=np.inf), abs=TOL)
    assert mc.p_value == pytest.approx(exact.p_value, abs=0.01)  # 4 sd of the MC error


def test_min_permutation_p() -> None:
    assert stats.min_permutation_p(3, 3) == pytest.approx(0.1)
    assert stats.min_permutation_p(5, 5) == pytest.approx(2 / 252)


@given(a=st.lists(finite, min_size=1, max_size=8), b=st.lists(finite, min_size=1, max_size=8))
@settings(max_examples=150, deadline=None)
def test_prob_greater_is_mann_whitney_u_over_nm(a: list[float], b: list[float]) -> None:
    u = float(sps.mannwhitneyu(b, a, alternative="two-sided").statistic)
    assert close(stats.prob_greater(a, b), u / (len(a) * len(b)))


@given(xs=st.lists(finite, min_size=1, max_size=30), q=st.floats(min_value=0, max_value=100))
@settings(max_examples=150, deadline=None)
def test_percentile_matches_numpy(xs: list[float], q: float) -> None:
    assert close(stats.percentile(xs, q), float(np.percentile(xs, q)))


def test_bootstrap_is_seeded_and_agrees_with_scipy() -> None:
    rng = random.Random(2)
    a = [rng.gauss(0, 1) for _ in range(15)]
    b = [rng.gauss(0.5, 1) for _ in range(15)]

    def diff(x: object, y: object) -> float:
        return stats.mean(y) - stats.mean(x)  # type: ignore[arg-type]

    ours = stats.bootstrap_ci(a, b, diff, resamples=4000, seed=3)
    assert ours == stats.bootstrap_ci(a, b, diff, resamples=4000, seed=3)
    assert ours != stats.bootstrap_ci(a, b, diff, resamples=4000, seed=4)
    ref = sps.bootstrap((a, b), lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
                        method="percentile", n_resamples=20_000, rng=0).confidence_interval
    # Different random draws: they agree to the Monte-Carlo error, not to 1e-6.
    assert ours[0] == pytest.approx(float(ref.low), abs=0.05)
    assert ours[1] == pytest.approx(float(ref.high), abs=0.05)


@pytest.mark.parametrize("p,expected", [
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
    ([0.5], [0.5]),
    ([0.2, 0.9, 0.01], [0.4, 0.9, 0.03]),
    ([], []),
])
def test_holm(p: list[float], expected: list[float]) -> None:
    assert stats.holm(p) == pytest.approx(expected)


@pytest.mark.parametrize("na,nb,sd,alpha,power", [(5, 5, 1.0, 0.05, 0.8), (3, 10, 0.2, 0.05, 0.9),
                                                  (20, 20, 2.0, 0.01, 0.8)])
def test_detectable_effect(na: int, nb: int, sd: float, alpha: float, power: float) -> None:
    df = na + nb - 2
    formula = (sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(power, df)) * sd * math.sqrt(1 / na + 1 / nb)
    effect = stats.detectable_effect(na, nb, sd, alpha=alpha, power=power)
    assert close(effect, float(formula))
    # and the approximation is what it claims: the exact power there (noncentral t) ~ `power`
    ncp = effect / (sd * math.sqrt(1 / na + 1 / nb))
    crit = sps.t.ppf(1 - alpha / 2, df)
    exact_power = sps.nct.sf(crit, df, ncp) + sps.nct.cdf(-crit, df, ncp)
    assert float(exact_power) == pytest.approx(power, abs=0.03)


def test_runs_for_equivalence_and_difference() -> None:
    assert stats.runs_for_equivalence(1.0, 10, 1.0, 0.0, 2.0) is not None
    assert stats.runs_for_equivalence(1.0, 10, 1.0, 2.5, 2.0) is None
    assert stats.runs_for_equivalence(1.0, 2, 1.0, 0.0, 0.1) is None  # the baseline is too small
    n = stats.runs_for_difference(1.0, 10, 1.0, 1.5)
    assert n is not None and 5 <= n <= 15


# --- verdicts ---------------------------------------------------------------------------------

def _gauss(seed: int, n: int, mu: float, sd: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mu, sd) for _ in range(n)]


def test_compare_directions_and_holm() -> None:
    a = {"acc": _gauss(1, 6, 0.80, 0.01), "loss": _gauss(2, 6, 1.0, 0.01),
         "noise": _gauss(3, 6, 0.0)}
    b = {"acc": _gauss(4, 6, 0.90, 0.01), "loss": _gauss(5, 6, 1.2, 0.01),
         "noise": _gauss(6, 6, 0.0)}
    result = judge.compare(a, b, {"acc": "higher", "loss": "lower"})
    by = {m.name: m for m in result.metrics}
    assert by["acc"].verdict == judge.BETTER and by["acc"].difference > 0
    assert by["loss"].verdict == judge.WORSE
    assert by["noise"].verdict == judge.SAME and by["noise"].detectable_effect is not None
    assert result.verdict == judge.WORSE and result.worse
    assert by["acc"].p_adjusted is not None and by["acc"].p_value is not None
    assert by["acc"].p_adjusted >= by["acc"].p_value  # Holm never lowers a p-value
    assert by["acc"].prob_b_greater == 1.0
    undirected = judge.compare(a, b)
    assert {m.verdict for m in undirected.metrics} == {judge.DIFFERENT, judge.SAME}
    assert undirected.verdict == judge.DIFFERENT


def test_compare_permutation_confirms_welch_where_it_can_resolve() -> None:
    # 3 vs 3: no split is rarer than 2/20, so Welch's test decides alone
    (small,) = judge.compare({"m": [0.0, 0.1, 0.2]}, {"m": [5.0, 5.1, 5.2]}).metrics
    assert small.verdict == judge.DIFFERENT and small.p_value == small.p_welch
    # 6 vs 6: both must agree, the larger p-value counts
    (big,) = judge.compare({"m": _gauss(1, 6, 0.0)}, {"m": _gauss(2, 6, 1.0)}).metrics
    assert big.p_welch is not None and big.p_permutation is not None
    assert big.p_value == max(big.p_welch, big.p_permutation)


def test_full_false_skips_only_what_cannot_change_a_verdict() -> None:
    # y's Welch p (0.045) is above alpha/2 but below alpha: Holm tests it at alpha once x is
    # rejected, and there the permutation test (p 0.056) decides: simulations must run it too.
    a = {"x": [-0.6674, 1.3279, 0.2775, -1.5693, -0.9536],
         "y": [-0.0507, 0.6655, -0.7748, -0.2191, -0.9]}
    b = {"x": [4.6358, 3.0608, 4.0757, 2.7697, 2.5098],
         "y": [0.2151, 0.6051, 0.3774, 1.4944, 0.3657]}
    full, quick = judge.compare(a, b), judge.compare(a, b, full=False)
    assert [m.verdict for m in full.metrics] == [judge.DIFFERENT, judge.SAME]
    assert [m.verdict for m in quick.metrics] == [m.verdict for m in full.metrics]


def test_compare_single_runs_warn() -> None:
    result = judge.compare({"m": [1.0]}, {"m": [1.2]})
    assert result.verdict == judge.SAME and result.warnings
    one_side = judge.compare({"m": [10.0]}, {"m": _gauss(1, 8, 0.0, 0.1)})
    assert one_side.metrics[0].verdict == judge.DIFFERENT and one_side.warnings


def test_compare_is_reproducible() -> None:
    a = {"m": _gauss(1, 12, 0.0)}
    b = {"m": _gauss(2, 12, 0.5)}
    assert judge.compare(a, b) == judge.compare(a, b)


def test_verify_run_prediction_interval() -> None:
    new = {"loss": _gauss(7, 5, 1.0, 0.01)}
    assert judge.verify_run({"loss": 1.0}, new).verdict == judge.REPRODUCED
    assert judge.verify_run({"loss": 1.5}, new).verdict == judge.NOT_REPRODUCED
    few = judge.verify_run({"loss": 1.0}, {"loss": [1.0, 1.01]})
    assert few.verdict == judge.INCONCLUSIVE and few.runs_needed == judge.MIN_NEW_RUNS
    missing = judge.verify_run({"loss": 1.0}, {})
    assert missing.verdict == judge.NOT_REPRODUCED


def test_verify_group_equivalence_difference_inconclusive() -> None:
    base = {"loss": _gauss(1, 10, 1.0, 0.01)}
    same = judge.verify_group(base, {"loss": _gauss(2, 10, 1.0, 0.01)})
    assert same.verdict == judge.REPRODUCED
    assert same.checks[0].margin_source == "baseline-spread"
    shifted = judge.verify_group(base, {"loss": _gauss(3, 10, 1.2, 0.01)})
    assert shifted.verdict == judge.NOT_REPRODUCED
    # a margin from the configuration: a shift of 0.2 is within 0.5
    tolerated = judge.verify_group(base, {"loss": _gauss(3, 10, 1.2, 0.01)}, {"loss": 0.5})
    assert tolerated.verdict == judge.REPRODUCED and tolerated.checks[0].margin == 0.5
    # too few runs to tell either way: inconclusive, naming how many would decide
    base3, new3 = {"loss": [1.0, 1.01, 0.99]}, {"loss": [1.005, 0.985, 1.0]}
    small = judge.verify_group(base3, new3, {"loss": 0.02})
    assert small.verdict == judge.INCONCLUSIVE
    assert small.runs_needed is not None and 3 < small.runs_needed < 100
    # ... or that no number of new runs would, against so small a baseline
    hopeless = judge.verify_group(base3, new3, {"loss": 0.01})
    assert hopeless.verdict == judge.INCONCLUSIVE and hopeless.runs_needed is None
    assert hopeless.checks[0].note is not None and "larger baseline" in hopeless.checks[0].note


def test_verify_group_constant_metrics() -> None:
    assert judge.verify_group({"epoch": [3.0, 3.0]}, {"epoch": [3.0, 3.0, 3.0]}).verdict \
        == judge.REPRODUCED
    assert judge.verify_group({"epoch": [3.0, 3.0]}, {"epoch": [4.0, 4.0, 4.0]}).verdict \
        == judge.NOT_REPRODUCED


@pytest.mark.parametrize("value", [0.1, 0.7, 0.05, 6.27, 1e-300, -2.5])
def test_equal_values_have_no_spread(value: float) -> None:
    # fsum([0.1] * 3) / 3 is 0.10000000000000002: a deterministic metric must not look noisy
    for n in (2, 3, 5, 7):
        assert stats.mean([value] * n) == value and stats.sd([value] * n) == 0.0
    assert judge.verify_group({"m": [value] * 2}, {"m": [value] * 3}).verdict == judge.REPRODUCED
    assert judge.verify_group({"m": [value] * 3}, {"m": [value] * 5}).verdict == judge.REPRODUCED
    c = judge.compare({"m": [value] * 3}, {"m": [value * 1.5] * 3}).metrics[0]
    assert c.sd_a == c.sd_b == 0.0 and c.note == "no run-to-run variation on either side"


def test_runs_that_gave_nan_or_inf_are_not_seed_noise() -> None:
    # Two of B's five runs diverged (loss nan, left out); the three finite ones look like A's.
    a = {"loss": _gauss(1, 5, 1.0, 0.01)}
    b = {"loss": _gauss(2, 3, 1.0, 0.01)}
    (m,) = judge.compare(a, b, {"loss": "lower"}, nonfinite_b={"loss": 2}).metrics
    assert m.verdict == judge.WORSE and m.note is not None and "2 of 5" in m.note
    (m,) = judge.compare(a, b, nonfinite_b={"loss": 2}).metrics
    assert m.verdict == judge.DIFFERENT
    (m,) = judge.compare(b, a, {"loss": "lower"}, nonfinite_a={"loss": 2}).metrics
    assert m.verdict == judge.BETTER
    # both sides diverged sometimes: the finite values decide
    both = judge.compare(a, b, nonfinite_a={"loss": 1}, nonfinite_b={"loss": 2})
    assert both.verdict == judge.SAME
    # verify: a fresh run whose metric went nan does not reproduce a finite result
    new = {"loss": _gauss(7, 4, 1.0, 0.01)}
    assert judge.verify_run({"loss": 1.0}, new).verdict == judge.REPRODUCED
    run = judge.verify_run({"loss": 1.0}, new, nonfinite={"loss": 1})
    assert run.verdict == judge.NOT_REPRODUCED and "1 of 5" in (run.checks[0].note or "")
    all_nan = judge.verify_run({"loss": 1.0}, {}, nonfinite={"loss": 3})
    assert all_nan.verdict == judge.NOT_REPRODUCED and "nan" in (all_nan.checks[0].note or "")
    base = {"loss": _gauss(1, 10, 1.0, 0.01)}
    fresh = {"loss": _gauss(2, 8, 1.0, 0.01)}
    assert judge.verify_group(base, fresh).verdict == judge.REPRODUCED
    assert judge.verify_group(base, fresh, nonfinite={"loss": 2}).verdict \
        == judge.NOT_REPRODUCED
    # ... unless the recorded group diverged as often: then the finite values decide
    assert judge.verify_group(base, fresh, nonfinite={"loss": 2},
                              recorded_nonfinite={"loss": 2}).verdict == judge.REPRODUCED


def test_to_dict_has_no_nan() -> None:
    result = judge.compare({"m": [1.0]}, {"m": [2.0]})
    d = result.metrics[0].to_dict()
    assert d["verdict"] == judge.SAME and d["ci"] is None and d["p_value"] is None


@pytest.mark.parametrize("sd_b,difference,margin", [(1.0, 0.0, 2.0), (0.5, 0.3, 1.5),
                                                    (2.0, 0.1, 3.0), (1.0, 0.0, 0.9)])
def test_runs_for_equivalence_is_the_smallest_n(sd_b: float, difference: float,
                                                margin: float) -> None:
    n = stats.runs_for_equivalence(1.0, 30, sd_b, difference, margin)
    assert n is not None

    def ok(k: int) -> bool:
        df = 30 + k - 2
        se = math.sqrt(1 / 30 + sd_b ** 2 / k)
        beta = 0.2 / (2 if difference == 0 else 1)
        return bool((sps.t.isf(0.05, df) + sps.t.isf(beta, df)) * se <= margin - difference)

    assert ok(n) and (n == 2 or not ok(n - 1))


def test_one_run_on_a_side_gives_no_bootstrap_interval_of_p_b_greater() -> None:
    # `repro compare team:latest group:base` (1 run vs 4): resampling the single run cannot show
    # its uncertainty, so every B value below it gave "P(B>A) 0.00 [0.00, 0.00]", a certainty
    # that 1 vs 4 runs do not have (the verdict itself said no-detectable-difference).
    result = judge.compare({"batches": [608.0]}, {"batches": [430.0, 520.0, 560.0, 600.0]})
    (m,) = result.metrics
    assert m.prob_b_greater == 0.0 and (m.prob_ci_low, m.prob_ci_high) == (None, None)
    assert m.to_dict()["prob_b_greater_ci"] is None and m.to_dict()["ci"] is None
    both = judge.compare({"b": [600.0, 610.0]}, {"b": [430.0, 520.0, 560.0]}).metrics[0]
    assert both.prob_ci_low is not None and both.to_dict()["prob_b_greater_ci"] is not None

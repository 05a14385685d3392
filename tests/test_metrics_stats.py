"""nbhelpers.metrics.stats: the binomial standard error against its closed form and a simulation."""
import math

import numpy as np
import pytest

import nbhelpers as nb
from nbhelpers.metrics.stats import binomial_se, max_binomial_se


@pytest.mark.parametrize("p, n", [(0.5, 100), (0.1, 1000), (0.35, 7), (0.999, 3)])
def test_binomial_se_is_the_closed_form(p, n):
    assert binomial_se(p, n) == pytest.approx(math.sqrt(p * (1 - p) / n), rel=1e-15)
    assert binomial_se(np.float64(p), np.int64(n)) == pytest.approx(math.sqrt(p * (1 - p) / n), rel=1e-15)


def test_binomial_se_is_the_spread_of_a_simulated_fraction():
    rng = np.random.default_rng(0)
    p, n, reps = 0.3, 400, 20_000
    spread = (rng.binomial(n, p, reps) / n).std(ddof=1)
    # the sample s.d. of 20,000 draws is itself within a few 1/√(2·reps) relative of the truth
    assert spread == pytest.approx(binomial_se(p, n), rel=4 / math.sqrt(2 * reps))


def test_edges_p_zero_and_one_have_no_spread_and_half_has_the_most():
    assert binomial_se(0.0, 10) == 0.0 and binomial_se(1.0, 10) == 0.0 and binomial_se(0, 1) == 0.0
    assert binomial_se(0.5, 1) == 0.5
    ps = np.linspace(0, 1, 101)
    assert binomial_se(ps, 25).max() == pytest.approx(max_binomial_se(25)) == 0.1
    assert np.all(binomial_se(ps, 25) <= max_binomial_se(25))


def test_an_array_of_fractions_gets_one_se_each():
    h = np.array([0.25, 0.0, 0.75])
    out = binomial_se(h, 300)
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    np.testing.assert_allclose(out, np.sqrt(h * (1 - h) / 300), rtol=1e-15)
    assert isinstance(binomial_se(0.25, 300), float)


@pytest.mark.parametrize("p, n, match", [
    (0.5, 0, r"n must be a positive integer, got 0"),
    (0.5, -3, r"n must be a positive integer, got -3"),
    (0.5, 2.5, r"n must be a positive integer, got 2.5"),
    (0.5, True, r"n must be a positive integer, got True"),
    (1.5, 10, r"p must be a fraction in \[0, 1\], got 1.5"),
    (-0.1, 10, r"p must be a fraction in \[0, 1\], got -0.1"),
    (float("nan"), 10, r"p must be a fraction in \[0, 1\], got nan"),
    (np.array([0.2, 1.2]), 10, r"p must hold fractions in \[0, 1\], got values in 0.2..1.2"),
    (np.array([0.2, np.nan]), 10, r"p must hold fractions in \[0, 1\].* and NaN"),
])
def test_bad_inputs_are_named(p, n, match):
    with pytest.raises(ValueError, match=match):
        binomial_se(p, n)


def test_max_binomial_se_names_a_bad_n_and_is_reached_from_the_package():
    with pytest.raises(ValueError, match=r"n must be a positive integer, got 0"):
        max_binomial_se(0)
    assert nb.metrics.binomial_se is binomial_se and nb.metrics.stats.max_binomial_se is max_binomial_se

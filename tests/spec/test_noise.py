import numpy as np
import pytest

from turbo_edge.spec.noise import normal

# Golden values, pinned so the generator's definition cannot drift; the C++ runtime checks the same numbers.
GOLDEN = {
    (0, 0): [-0.278874933719635, -0.7642228603363037, 0.4189256429672241, -0.0670929104089737],
    (123456789, 5): [0.035067688673734665, 0.700612485408783, 1.5000239610671997],
}


@pytest.mark.parametrize("key", list(GOLDEN))
def test_golden_values(key):
    expected = GOLDEN[key]
    assert normal(*key, (len(expected),)).tolist() == pytest.approx(expected, abs=1e-7)


def test_noise_is_deterministic_and_independent_of_shape():
    a = normal(42, 3, (2, 3, 4))
    b = normal(42, 3, (24,))
    assert np.array_equal(a.ravel(), b)
    assert not np.array_equal(normal(42, 4, (24,)), b)
    assert not np.array_equal(normal(43, 3, (24,)), b)


def test_noise_is_standard_normal():
    x = normal(0, 0, (200_000,)).astype(np.float64)
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    assert abs((np.abs(x) > 1.96).mean() - 0.05) < 0.003


def test_prefix_property():
    # Element i does not depend on how many elements were asked for.
    assert np.array_equal(normal(7, 1, (10,)), normal(7, 1, (1000,))[:10])


def test_rejects_negative_seed():
    with pytest.raises(ValueError, match="seed and stream"):
        normal(-1, 0, (3,))

import numpy as np
import pytest

from aging.ages import format_age, parse_age, parse_age_range


@pytest.mark.parametrize("text, days", [("7300", 7300), ("7300d", 7300), ("20y", 7305), ("0.5y", 183), (42, 42)])
def test_parse_age(text, days):
    assert parse_age(text) == days


@pytest.mark.parametrize("bad", ["", "20 years", "y", "-3", "1.5d", "20x"])
def test_parse_age_rejects(bad):
    with pytest.raises(ValueError):
        parse_age(bad)


def test_age_ranges():
    np.testing.assert_array_equal(parse_age_range("20y:22y:1y"), [7305, 7670, 8035])
    np.testing.assert_array_equal(parse_age_range("100,200"), [100, 200])
    np.testing.assert_array_equal(parse_age_range("30y"), [10958])
    with pytest.raises(ValueError, match="stops before"):
        parse_age_range("30y:20y:1y")
    with pytest.raises(ValueError, match="positive"):
        parse_age_range("20y:30y:0")
    assert format_age(7305) == "20.0 y"

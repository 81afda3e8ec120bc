import numpy as np
import pytest

from aging.ages import MAX_AGE_DAYS, format_age, parse_age, parse_age_range


@pytest.mark.parametrize("text, days", [("7300", 7300), ("7300d", 7300), ("20y", 7305), ("0.5y", 183), (42, 42)])
def test_parse_age(text, days):
    assert parse_age(text) == days


@pytest.mark.parametrize("bad", ["", "20 years", "y", "-3", "1.5d", "20x", "201y", "100000000", "9" * 400,
                                 float("nan"), float("inf"), -1, 10**30])
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


def test_age_ranges_are_capped_before_anything_is_allocated():
    assert MAX_AGE_DAYS == 73050
    assert len(parse_age_range("0:73050:1")) == 73051  # no cap asked for: allowed
    with pytest.raises(ValueError, match="gives 73051 ages; at most 10000"):
        parse_age_range("0:73050:1", max_count=10_000)
    assert len(parse_age_range("20y:60y:1y", max_count=41)) == 41
    with pytest.raises(ValueError, match="gives 3 ages; at most 2"):
        parse_age_range("1,2,3", max_count=2)
    with pytest.raises(ValueError, match="more than 200 years"):
        parse_age_range("0:100000000:1", max_count=10_000)

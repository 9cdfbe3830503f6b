"""The test expander of Grafana's SQL macros and template variables, checked against the
texts Grafana itself produces (its macros_test.go and template_srv tests)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.dashboards.grafana_macros import (
    Variable,
    expand,
    expand_macros,
    format_interval,
    interpolate_variables,
    panel_interval,
    parse_interval,
)

START = datetime(2018, 4, 12, 18, 0, tzinfo=UTC)
END = datetime(2018, 4, 12, 18, 5, tzinfo=UTC)


def macros(sql: str, interval_s: float = 60, timescaledb: bool = True) -> str:
    return expand_macros(sql, START, END, interval_s, timescaledb)


def test_time_filter_is_a_between_of_rfc3339_utc_times() -> None:
    assert macros("WHERE $__timeFilter(time_column)") == (
        "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
    )


def test_time_from_and_to_are_quoted_literals() -> None:
    assert macros("$__timeFrom() $__timeTo()") == "'2018-04-12T18:00:00Z' '2018-04-12T18:05:00Z'"


def test_fractional_seconds_are_kept_without_trailing_zeros() -> None:
    start = datetime(2018, 4, 12, 18, 0, 0, 500000, tzinfo=UTC)
    assert expand_macros("$__timeFrom()", start, END, 60) == "'2018-04-12T18:00:00.5Z'"


def test_time_group_alias_uses_time_bucket_with_timescaledb() -> None:
    assert macros("$__timeGroupAlias(time_column, 5m)") == (
        "time_bucket('300s',time_column) AS \"time\""
    )
    assert macros("GROUP BY $__timeGroup(time_column,'1h')") == (
        "GROUP BY time_bucket('3600s',time_column)"
    )


def test_time_group_without_timescaledb_is_epoch_arithmetic() -> None:
    assert macros("$__timeGroup(time_column, 5m)", timescaledb=False) == (
        "floor(extract(epoch from time_column)/300)*300"
    )


def test_interval_is_replaced_before_the_macros() -> None:
    assert macros("$__timeGroupAlias(t, $__interval), $__interval_ms", interval_s=3600) == (
        "time_bucket('3600s',t) AS \"time\", 3600000"
    )


def test_unix_epoch_filter() -> None:
    assert macros("$__unixEpochFilter(ts)") == "ts >= 1523556000 AND ts <= 1523556300"


def test_unknown_macro_fails_like_grafana() -> None:
    with pytest.raises(ValueError, match="undefined macro"):
        macros("$__nonsense(x)")


def test_arguments_end_at_the_first_parenthesis_as_in_grafana() -> None:
    # Grafana's pattern cannot nest: a function call inside a macro breaks the query.
    assert macros("$__timeFilter(coalesce(a, b))") == (
        "coalesce(a BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z')"
    )


def test_intervals_parse_and_format_like_gtime() -> None:
    assert parse_interval("30s") == 30
    assert parse_interval("'1d'") == 86400
    assert format_interval(300) == "5m"
    assert format_interval(7200) == "2h"
    assert format_interval(86400 * 3) == "3d"
    assert format_interval(0.5) == "500ms"


def test_panel_interval_rounds_and_respects_the_min_interval() -> None:
    # 3 days over 1000 points is 259 s, which Grafana rounds to 5 minutes
    assert panel_interval(3 * 86400, None) == 300
    assert panel_interval(3 * 86400, "1h") == 3600
    assert panel_interval(3600, None) == 5  # 3.6 s rounds to 5 s


def interpolate(sql: str, **variables: Variable) -> str:
    return interpolate_variables(sql, variables, 300, START, END)


def test_multi_value_variables_are_quoted_and_joined() -> None:
    site = Variable(["a", "o'b"], multi=True, include_all=True)
    assert interpolate("site_id IN ($site)", site=site) == "site_id IN ('a','o''b')"
    assert interpolate("IN (${site})", site=site) == "IN ('a','o''b')"
    assert interpolate("IN ([[site]])", site=site) == "IN ('a','o''b')"


def test_a_single_value_of_a_multi_variable_is_still_quoted() -> None:
    assert interpolate("IN ($site)", site=Variable(["a"], multi=True)) == "IN ('a')"


def test_a_single_value_variable_is_inserted_with_quotes_doubled() -> None:
    assert interpolate("= '$metric'", metric=Variable(["o'3"])) == "= 'o''3'"


def test_formats() -> None:
    site = Variable(["a", "b"], multi=True)
    assert interpolate("${site:sqlstring}", site=site) == "'a','b'"
    assert interpolate("${site:csv}", site=site) == "a,b"
    assert interpolate("${site:singlequote}", site=site) == "'a','b'"
    assert interpolate("${site:pipe}", site=site) == "a|b"
    with pytest.raises(ValueError, match="not supported"):
        interpolate("${site:lucene}", site=site)


def test_builtins_and_unknown_names() -> None:
    assert interpolate("$__interval $__interval_ms $__range_s") == "5m 300000 300"
    assert interpolate("$__from") == "1523556000000"
    assert interpolate("$__timeFilter(t) $nosuch") == "$__timeFilter(t) $nosuch"


def test_expand_runs_both_stages() -> None:
    sql = "SELECT $__timeGroupAlias(t, $__interval) WHERE $__timeFilter(t) AND s IN ($site)"
    assert expand(sql, START, END, {"site": Variable(["x"], multi=True)}, "1m") == (
        "SELECT time_bucket('60s',t) AS \"time\" WHERE t BETWEEN '2018-04-12T18:00:00Z' "
        "AND '2018-04-12T18:05:00Z' AND s IN ('x')"
    )

"""``python -m ops stuck`` refuses numbers that would reach SQL as database errors."""

import pytest
from commands import run_module


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--limit", "99999999999999999999"],
            "argument --limit: '99999999999999999999' is out of range: "
            "a number of calls from 1 to 100,000",
        ),
        (["--limit", "0"], "argument --limit: '0' is out of range"),
        (
            ["--older-than", "99999999999999999"],
            "argument --older-than: '99999999999999999' is out of range: "
            "a number of minutes from 0 to 525,600",
        ),
        (["--older-than", "nan"], "argument --older-than: 'nan' is out of range"),
        (["--older-than", "soon"], "argument --older-than: not a number of minutes: 'soon'"),
    ],
)
def test_stuck_refuses_an_out_of_range_option_saying_the_range(database_url, args, message):
    result = run_module("ops", "stuck", *args, database_url=database_url)
    assert result.returncode == 2
    assert message in result.stderr.splitlines()[-1]

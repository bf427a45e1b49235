"""The dialect of a data CSV (separator, decimal mark, header row): issue 21, item 4."""

import numpy as np
import pandas as pd
import pytest

from bayesmix._csv import SAMPLE_BYTES, read_data_csv, sniff_csv
from bayesmix.exceptions import DataError


@pytest.mark.parametrize(
    ("text", "sep", "decimal", "numeric_first_row"),
    [
        ("a,b\n1.5,2\n3,4.25\n", ",", ".", False),
        ("a\tb\n1.5\t2\n3\t4.25\n", "\t", ".", False),
        ("a|b\n1.5|2\n3|4.25\n", "|", ".", False),
        ("a;b\n1,5;2\n3;4,25\n", ";", ",", False),
        ("a\tb\n1,5\t2\n3\t4,25\n", "\t", ",", False),
        ("a;b\n1.5;2\n3;4.25\n", ";", ".", False),
        # Splits evenly on ',' (3 fields) and ';' (2 fields); only ';' gives numbers.
        ("1,5;2,5\n3,5;4,5\n2,0;1,0\n", ";", ",", True),
        ("1.5,2\n3,4\n", ",", ".", True),
        ("-1e-3,+2.5E2\n.5,7.\n", ",", ".", True),
        ('"a","b"\n"1","2"\n"3","5"\n', ",", ".", False),
        ("velocity\n9172\n9350\n", ",", ".", False),
        ("velocity\n1,5\n2\n3,25\n", ";", ",", False),  # one column, decimal commas
        ("a,b\n\n1,2\n\n3,4\n", ",", ".", False),  # blank lines are skipped
    ],
)
def test_sniff_tells_separator_decimal_and_header(text, sep, decimal, numeric_first_row):
    dialect = sniff_csv(text)
    assert (dialect.sep, dialect.decimal) == (sep, decimal)
    assert dialect.first_row_numeric is numeric_first_row


def test_a_ragged_comma_file_is_not_read_as_decimal_commas():
    # Uneven rows of a comma file (a missing field) are not one column of 1,2 = 1.2.
    assert sniff_csv("a,b\n1,2\n3\n").sep == ","


@pytest.mark.parametrize(
    ("text", "seen"),
    [
        ("a;b,c\n1;x,2\n3;y,4\n", ["';'", "','", "--sep"]),
        ("x;y\n1.5;2,5\n3.5;4,5\n", ["'1.5'", "'2,5'", "--decimal"]),
        ("", ["empty"]),
        ("\n \n", ["empty"]),
    ],
)
def test_sniff_refuses_what_it_cannot_tell_and_says_what_it_saw(text, seen):
    with pytest.raises(DataError) as info:
        sniff_csv(text, name="'data.csv'")
    for part in seen:
        assert part in str(info.value)


def test_a_given_separator_or_decimal_is_not_second_guessed():
    assert sniff_csv("a;b,c\n1;x,2\n", sep=";").sep == ";"
    dialect = sniff_csv("x;y\n1.5;2,5\n", sep=";", decimal=",")
    assert (dialect.sep, dialect.decimal) == (";", ",")


def test_read_semicolons_and_decimal_commas(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("länge;breite\n1,5;2\n-3,25;4,125\n", encoding="utf-8")
    frame = read_data_csv(path)
    assert list(frame.columns) == ["länge", "breite"]
    np.testing.assert_array_equal(frame.to_numpy(), [[1.5, 2.0], [-3.25, 4.125]])


def test_read_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffa;b\n1,5;2\n3;4\n".encode())
    assert list(read_data_csv(path).columns) == ["a", "b"]


def test_read_numeric_first_row_needs_a_choice(tmp_path):
    path = tmp_path / "nohead.csv"
    path.write_text("1.5,2\n3,4\n5,6.5\n")
    with pytest.raises(DataError, match=r"--no-header.*--header"):
        read_data_csv(path)
    frame = read_data_csv(path, header=False)
    assert list(frame.columns) == ["x0", "x1"]
    np.testing.assert_array_equal(frame.to_numpy(), [[1.5, 2.0], [3.0, 4.0], [5.0, 6.5]])
    named = read_data_csv(path, header=True)  # numbers as names, on request
    assert len(named) == 2
    assert read_data_csv(path, header=False, columns=["x1"]).columns.tolist() == ["x1"]


def test_read_missing_file_and_missing_column(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_data_csv(tmp_path / "nope.csv")
    path = tmp_path / "a.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(DataError, match=r"column\(s\) \['c'\] not in .*\['a', 'b'\]"):
        read_data_csv(path, columns=["a", "c"])


def test_read_a_file_longer_than_the_sample(tmp_path):
    # The sample ends inside a line; the cut line must not make the rows look uneven.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(6000, 3)), columns=["p", "q", "r"])
    path = tmp_path / "long.csv"
    text = frame.to_csv(index=False, sep=";", decimal=",")
    assert len(text) > SAMPLE_BYTES
    path.write_text(text)
    read = read_data_csv(path)
    assert read.shape == frame.shape
    np.testing.assert_allclose(read.to_numpy(), frame.to_numpy())

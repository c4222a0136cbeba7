"""One label rule (grm_client.labels) for the server, grm-client and the Ray front's routing key."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grm_client.integrations._common import as_reference
from grm_client.integrations.trl import _rows
from grm_client.labels import reference_of_label
from server.serving.errors import APIError
from server.serving.validation import reference_of_label as server_reference

MISSING = [pd.NA, pd.NaT, np.datetime64("NaT"), np.timedelta64("NaT")]
labels = (
    st.none()
    | st.text()
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.lists(st.integers(), max_size=2)
    | st.sampled_from(MISSING)
    | st.decimals()  # pyarrow's decimal columns; NaN and infinities included
    | st.floats(width=32).map(np.float32)
    | st.floats(width=16).map(np.float16)
)


@given(labels)
def test_server_and_client_read_every_label_alike(label):
    try:
        client = as_reference(label)
    except ValueError:
        with pytest.raises(APIError) as refused:
            server_reference(label)
        assert refused.value.status == 400
        return
    assert server_reference(label) == client
    # What the client sends (the reference as text) the server, and the Ray front's key, read back as is.
    if client is not None:
        assert server_reference(json.loads(json.dumps(client))) == client


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_a_whole_float_reads_as_its_integer(n):
    assert reference_of_label(float(n)) == reference_of_label(n) == str(n)


@pytest.mark.parametrize("missing", [None, "", "  \n", math.nan, float("-nan")])
def test_missing_values_are_no_reference(missing):
    assert reference_of_label(missing) is None


def test_an_infinite_label_is_refused_by_the_server_with_400():
    with pytest.raises(APIError) as refused:
        server_reference(math.inf, "label 3")
    assert refused.value.status == 400 and "label 3: a label must be a finite number" in refused.value.message


@pytest.mark.parametrize("missing", MISSING, ids=["pd.NA", "pd.NaT", "numpy NaT", "numpy timedelta NaT"])
def test_pandas_and_numpy_missing_values_are_no_reference(missing):
    assert reference_of_label(missing) is None


def test_a_pandas_nullable_column_with_a_gap_reaches_trl_as_a_reference_and_none():
    column = pd.Series([3, None], dtype="Int64").tolist()  # [3, <NA>]: an integer answer column with a gap
    _, _, references = _rows(["q1", "q2"], ["a", "b"], {"answer": column}, "answer")
    assert references == ["3", None]  # was a ValueError that failed TRL's whole reward step


def test_a_pandas_string_column_with_a_gap_reads_its_missing_value_as_no_reference():
    column = pd.DataFrame({"answer": ["Paris", None]}).convert_dtypes()["answer"].tolist()
    assert [as_reference(v) for v in column] == ["Paris", None]


@pytest.mark.parametrize(
    ("value", "text"),
    [(Decimal("3.00"), "3"), (Decimal("2.50"), "2.5"), (Decimal("-0"), "0"), (Decimal("1E+2"), "100"),
     (Decimal("1E-7"), "0.0000001"), (Decimal("12345678901234567890123456789.25"), "12345678901234567890123456789.25"),
     (Decimal("NaN"), None)],
)  # fmt: skip
def test_a_decimal_is_a_number(value, text):
    assert reference_of_label(value) == text


def test_an_infinite_decimal_is_refused():
    with pytest.raises(ValueError, match="finite"):
        reference_of_label(Decimal("-Infinity"))


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_a_decimal_reads_as_text_of_its_exact_value(value):
    assert Decimal(reference_of_label(value)) == value


@pytest.mark.parametrize(
    ("value", "text"), [(np.float32(0.1), "0.1"), (np.float16(0.1), "0.1"), (np.float32(2.0), "2")]
)
def test_numpy_narrow_floats_read_at_their_own_precision(value, text):
    assert reference_of_label(value) == text  # float32 0.1 was "0.10000000149011612"


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_a_float32_reads_as_text_that_reads_back_as_itself(number):
    value = np.float32(number)
    text = reference_of_label(value)
    assert np.float32(text) == value

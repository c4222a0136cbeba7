"""One label rule (grm_client.labels) for the server, grm-client and the Ray front's routing key."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grm_client.integrations._common import as_reference
from grm_client.labels import reference_of_label
from server.serving.errors import APIError
from server.serving.validation import reference_of_label as server_reference

labels = st.none() | st.text() | st.integers() | st.floats() | st.booleans() | st.lists(st.integers(), max_size=2)


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

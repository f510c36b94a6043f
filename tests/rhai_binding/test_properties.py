"""Any JSON-like value survives the trip Python -> Rhai -> Python."""

from hypothesis import given, settings
from hypothesis import strategies as st

import rhai

ENGINE = rhai.Engine()
ENGINE.register("identity", lambda value: value)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_scope_round_trip(value):
    assert ENGINE.eval("v", {"v": value}) == value


@settings(max_examples=200, deadline=None)
@given(values)
def test_callback_round_trip(value):
    assert ENGINE.eval("identity(v)", {"v": value}) == value


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_source_never_crashes(source):
    try:
        ENGINE.eval(source, timeout=1)
    except rhai.RhaiError as error:
        assert isinstance(error.message, str)

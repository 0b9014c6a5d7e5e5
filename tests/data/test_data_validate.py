"""check_arrays: conversions, and one single-line VarbayesError per kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from varbayes.data import check_arrays
from varbayes.data.validate import check_finite
from varbayes.errors import VarbayesError


def _error(*args, **kwargs) -> str:
    with pytest.raises(VarbayesError) as info:
        check_arrays(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    return message


def test_converts_numpy_and_lists_to_float32_and_int64():
    x, y = check_arrays(np.ones((5, 3)), [0, 1, 2, 1, 0], task="classification", n_classes=3)
    assert x.dtype == torch.float32 and x.shape == (5, 3)
    assert y.dtype == torch.int64 and y.tolist() == [0, 1, 2, 1, 0]
    x, y = check_arrays(np.arange(6).reshape(3, 2), np.array([1, 2, 3]), task="regression")
    assert x.dtype == torch.float32 and y.dtype == torch.float32


def test_float32_tensor_is_not_copied():
    x = torch.randn(4, 2)
    out, _ = check_arrays(x)
    assert out.data_ptr() == x.data_ptr()


def test_integral_float_and_bool_labels_become_int64():
    _, y = check_arrays(np.zeros((3, 1)), np.array([0.0, 2.0, 1.0]), task="classification")
    assert y.dtype == torch.int64 and y.tolist() == [0, 2, 1]
    _, y = check_arrays(np.zeros((2, 1)), np.array([True, False]), n_classes=2)
    assert y.tolist() == [1, 0]


def test_task_none_keeps_the_kind_of_y():
    _, y = check_arrays(np.zeros((2, 1)), [1, 2])
    assert y.dtype == torch.int64
    _, y = check_arrays(np.zeros((2, 1)), [0.5, 2.0])
    assert y.dtype == torch.float32


def test_non_contiguous_and_read_only_numpy_are_accepted():
    a = np.arange(12.0).reshape(3, 4)[:, ::-1]
    b = np.ones((2, 2))
    b.setflags(write=False)
    assert check_arrays(a)[0].tolist() == a.tolist()
    assert check_arrays(b)[0].shape == (2, 2)


def test_input_shape_is_checked_per_example():
    x, _ = check_arrays(np.zeros((2, 1, 8, 8)), input_shape=(1, 8, 8))
    assert x.shape == (2, 1, 8, 8)
    assert "(3, 32, 32)" in _error(np.zeros((2, 3, 32, 31)), input_shape=(3, 32, 32))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"x": np.array([[1.0, np.nan]])}, "1 NaN"),
        ({"x": np.array([[1.0], [np.inf]])}, "1 Inf values (first in example 1)"),
        ({"x": torch.tensor([[0.0, -float("inf")]])}, "Inf"),
        ({"x": np.zeros(5)}, "at least 2 dimensions"),
        ({"x": np.float32(3.0)}, "scalar"),
        ({"x": np.zeros((0, 3))}, "empty"),
        ({"x": np.zeros((4, 0))}, "empty"),
        ({"x": np.zeros((4, 3)), "input_shape": (4,)}, "valid: shape (n, 4)"),
        ({"x": np.array([["a", "b"]])}, "non-numeric dtype"),
        ({"x": np.array([[1, "b"]], dtype=object)}, "non-numeric values"),
        ({"x": np.ones((2, 2), dtype=complex)}, "non-numeric dtype"),
        ({"x": torch.ones(2, 2, dtype=torch.complex64)}, "non-numeric dtype"),
        ({"x": [[1.0, 2.0], [3.0]]}, "not a rectangular numeric array"),
        ({"x": np.zeros((3, 2)), "y": [0, 1]}, "x has 3 examples but y has 2"),
        ({"x": np.zeros((3, 2)), "y": [0, 1, 3], "n_classes": 3}, "out of range [0, 3)"),
        ({"x": np.zeros((2, 2)), "y": [-1, 0], "task": "classification"}, "min -1"),
        ({"x": np.zeros((2, 2)), "y": [0.5, 1.0], "task": "classification"}, "non-integer"),
        ({"x": np.zeros((2, 2)), "y": np.eye(2), "task": "classification"}, "not one-hot"),
        ({"x": np.zeros((2, 2)), "y": [np.nan, 1.0], "task": "regression"}, "NaN"),
        ({"x": np.zeros((2, 2)), "y": [np.nan, 1.0], "task": "classification"}, "NaN"),
        ({"x": np.zeros((2, 2)), "y": 3.0}, "scalar"),
        ({"x": np.zeros((2, 2)), "task": "ranking"}, "unknown task 'ranking'"),
        ({"x": np.zeros((2, 2)), "n_classes": 0}, "n_classes must be a positive integer"),
        ({"x": np.zeros((2, 2)), "input_shape": (2, -1)}, "input_shape must be"),
    ],
)
def test_bad_input_raises_one_line(kwargs, words):
    assert words in _error(**kwargs)


def test_names_in_messages_follow_the_name_argument():
    message = _error(np.zeros((2, 2)), [0, 9], n_classes=3, name="digits x_train")
    assert message.startswith("digits y_train has labels out of range")
    assert _error(np.zeros((2, 2)), [0], name="inputs").startswith("inputs has 2 examples")
    assert "bad name" in _error(np.zeros(2), name="bad\nname")


def test_finite_check_survives_sums_that_overflow():
    x, _ = check_arrays(torch.full((4, 3), 3e38))  # the fast-path sum overflows; values are fine
    assert torch.isfinite(x).all()
    check_finite(torch.tensor([1e308, 1e308], dtype=torch.float64), "y")  # no error


def _finite_arrays(dtype: type) -> st.SearchStrategy[np.ndarray]:
    floats = {"allow_nan": False, "allow_infinity": False, "min_value": -1e6, "max_value": 1e6}
    return hnp.arrays(
        dtype=dtype,
        shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5),
        elements=floats if np.dtype(dtype).kind == "f" else None,
    )


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from([np.float32, np.float64, np.int32, np.uint8, np.bool_]).flatmap(_finite_arrays)
)
def test_finite_arrays_pass_unchanged(a):
    x, _ = check_arrays(a, input_shape=a.shape[1:])
    assert x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), a.astype(np.float32))


@settings(max_examples=50, deadline=None)
@given(
    shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=6),
    data=st.data(),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_any_non_finite_value_is_found(shape, data, bad):
    a = np.zeros(shape)
    index = data.draw(st.tuples(*(st.integers(0, s - 1) for s in shape)))
    a[index] = bad
    assert f"(first in example {index[0]})" in _error(a)


@settings(max_examples=50, deadline=None)
@given(n_classes=st.integers(1, 20), labels=st.lists(st.integers(-3, 25), min_size=1, max_size=30))
def test_labels_pass_exactly_when_in_range(n_classes, labels):
    x = np.zeros((len(labels), 1))
    if all(0 <= v < n_classes for v in labels):
        assert check_arrays(x, labels, n_classes=n_classes)[1].tolist() == labels
    else:
        assert "out of range" in _error(x, labels, n_classes=n_classes)

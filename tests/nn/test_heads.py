"""Likelihood heads: a label the network has no output for is one line, not IndexError."""

from __future__ import annotations

import pytest
import torch

from varbayes.errors import VarbayesError
from varbayes.nn.heads import nll_per_example


def test_out_of_range_labels_name_the_valid_range() -> None:
    outputs = torch.zeros(4, 3)
    assert nll_per_example(outputs, torch.tensor([0, 1, 2, 2]), "classification").shape == (4,)
    with pytest.raises(VarbayesError, match=r"labels must be integers 0\.\.2 .*got labels 0\.\.7"):
        nll_per_example(outputs, torch.tensor([0, 1, 7, 2]), "classification")

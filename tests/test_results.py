"""The results layer: metric names and sequences seen."""

from __future__ import annotations

import pandas as pd
import pytest

from mann_zoo.experiments.results import is_metric_key, metric_key, parse_metric_key, sequences_seen


def test_metric_key_round_trip():
    assert metric_key("len_1-20", "bit_errors") == "val/len_1-20/bit_errors"
    assert parse_metric_key(metric_key("in_20_out_16", "cost_bits")) == ("in_20_out_16", "cost_bits")
    assert is_metric_key("val/len_5/seq_accuracy")
    assert not any(map(is_metric_key, ("train/cost_bits", "val/cost_bits", "val//cost_bits", "val/len_5/")))
    with pytest.raises(ValueError, match="metric key 'train/cost_bits'"):
        parse_metric_key("train/cost_bits")


def test_sequences_seen():
    assert sequences_seen(2500, 32, 1) == 80_000
    assert sequences_seen(10, 8, 4) == 320  # four processes, each its own batch
    assert sequences_seen(pd.Series([1, 2]), 32, 2).tolist() == [64, 128]

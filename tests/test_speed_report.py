"""The speed and cost tables that the README and paper section 6 embed, rendered from results files."""

from __future__ import annotations

import pandas as pd

from mann_zoo.experiments.speed_report import cost_fit_table, reference_table, speed_figure, tasks_table


def _row(model, compiled, version, ms, batch=32, steps=41, task="copy", controller=10.0):
    return {"task": task, "model": model, "compiled": compiled, "version": version, "batch_size": batch,
            "steps": steps, "ms_per_step": ms, "sequences_per_s": batch / ms * 1e3,
            "sequences_per_s_per_core": batch / ms * 1e3, "x_controller": ms / controller,
            "activation_mb": 1.0, "num_parameters": 1000, "threads": 1}


def _frame():
    return pd.DataFrame([_row("controller alone", False, "this checkout", 10.0),
                         _row("dnc", False, "this checkout", 100.0), _row("dnc", True, "this checkout", 50.0),
                         _row("dnc", False, "abc1234", 200.0), _row("dnc", True, "abc1234", 150.0),
                         _row("pypi dnc 1.1.0", False, "this checkout", 400.0)])


def test_reference_table_puts_before_and_now_side_by_side_with_the_peer_ratio():
    text = reference_table(_frame())
    assert "| dnc compiled | 150.0 | 50.0 | 3.00 | 5.00 |" in text
    assert "| dnc | 200.0 | 100.0 | 2.00 | 10.00 |" in text
    assert "| pypi dnc 1.1.0 |  | 400.0 |  | 40.00 |" in text
    assert "default 0.25, compiled 0.12" in text  # the DNC's step over the peer's


def test_tasks_table_reports_sequences_per_second_per_core_and_the_best_speedup(tmp_path):
    frame = _frame()
    text = tasks_table(frame)
    # eager before 160, now 320; compiled before 213, now 640; best now / best before = 640 / 213 = 3.00
    assert "| copy (32, 41) | dnc | 160 | 320 | 213 | 640 | 3.00 | 5.00 |" in text
    assert "controller alone |" not in text.split("\n", 4)[-1]  # the yardstick is a column, not a row
    path = speed_figure(frame, tmp_path)
    assert path.name == "speed_tasks.png" and path.stat().st_size > 1000


def test_the_speed_figure_marks_what_was_not_measured_and_labels_ticks_plainly(tmp_path, monkeypatch):
    """On a log axis a missing rate drawn as 0 has no bar and reads as off the scale: no bar, an x at the
    foot of the axis and a legend entry instead; the tick labels are plain numbers (20, not 2x10^1)."""
    from mann_zoo.experiments.log_ticks import PlainLogFormatter
    from mann_zoo.training import atomic

    figures = []
    monkeypatch.setattr(atomic, "save_figure", lambda fig, path: figures.append(fig))
    speed_figure(_frame(), tmp_path)
    [fig] = figures
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    assert len(heights) == 6 and min(heights) > 0  # dnc in four variants, the yardstick and the peer eager now
    marks = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert sum(len(line.get_xdata()) for line in marks) == 6  # the yardstick's and the peer's other three
    assert "not measured" in [text.get_text() for text in ax.get_legend().get_texts()]
    assert isinstance(ax.yaxis.get_major_formatter(), PlainLogFormatter)
    assert ax.get_ylim()[0] == 0.5 * _frame().sequences_per_s_per_core.min()


def test_cost_fit_table_names_each_coefficients_unit():
    fits = pd.DataFrame([{"model": "ntm", "fit_of": "T", "controller_ms": 15.0, "fixed_us": 2500.0, "us_per_N": 1.5,
                          "us_per_NW": 0.25, "us_per_N2": None, "r2": 0.99, "max_relative_error": 0.07, "points": 12}])
    text = cost_fit_table(fits)
    assert "c (us) | d (us per N) | a (us per N W) | b (us per N^2) | s (us per N log2 N)" in text
    assert "| ntm | 2,500 | 1.5 | 0.25 | - | - | 0.990 | 7 % | 12 | 15.0 |" in text
    assert "T = 2,500 us + 1.5 us x N + 0.25 us x N W" in text


def test_tables_of_a_run_with_no_baseline_on_a_gpu_have_no_empty_before_columns(tmp_path):
    """A GPU run (scripts/gpu_check.sh: no --baseline, eager only) names the device and shows no empty
    'before' or 'compiled' columns; speed_and_cost_outputs names its files with the suffix."""
    from mann_zoo.experiments.speed_report import speed_and_cost_outputs

    frame = _frame()
    frame = frame[(frame.version == "this checkout") & ~frame.compiled].assign(device="cuda")
    reference = reference_table(frame)
    assert "Reference step: batch 32, 41 steps, cuda" in reference
    assert "| model | ms/step now | x controller (now) | activations MB | parameters |" in reference
    assert "| dnc | 100.0 | 10.00 | 1.0 | 1,000 |" in reference
    tasks = tasks_table(frame)
    assert "# Training sequences per second on cuda" in tasks
    assert "| copy (32, 41) | dnc | 320 | 10.00 |" in tasks and "before" not in tasks
    figure = speed_figure(frame, tmp_path, "speed_tasks_gpu.png")  # one bar a model: eager now
    assert figure.name == "speed_tasks_gpu.png" and figure.stat().st_size > 1000
    assert "batch 32, 41 steps, 1 thread(s)" in reference_table(frame.assign(device=None))  # an older file: the CPU
    frame.to_csv(tmp_path / "batches_copy.csv", index=False)
    written = speed_and_cost_outputs(tmp_path, tmp_path, tmp_path / "tables", tmp_path, suffix="_gpu")
    assert [path.name for path in written] == ["speed_batches_copy_gpu.md"]


def test_time_steps_times_every_closure_each_round_in_a_new_order():
    """Every closure runs warmup + repeats times; the rounds do not all run them in one order (a fixed
    order would charge a step's aftermath, such as memory handed back, to the same closure each round)."""
    from mann_zoo.experiments.speed import time_steps

    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    timed = time_steps(steps, repeats=6, warmup=2)
    assert set(timed) == set("abcd") and all(ms >= 0 and first >= 0 for ms, first in timed.values())
    assert calls[:8] == ["a", "a", "b", "b", "c", "c", "d", "d"]  # first call (timed alone) and warm-up
    rounds = [tuple(calls[8 + 4 * r : 12 + 4 * r]) for r in range(6)]
    assert all(sorted(r) == list("abcd") for r in rounds) and len(set(rounds)) > 1

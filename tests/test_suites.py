"""The report's Chomsky-hierarchy table and figure (issue 13): a run's score is its token accuracy averaged
over the test lengths (not the training distribution), medians and best over seeds, published scores beside."""

from __future__ import annotations

import pandas as pd

from mann_zoo.experiments import suites
from mann_zoo.experiments.colours import COLOURS
from mann_zoo.experiments.results import RESULT_COLUMNS, typed


def _run(task: str, model: str, seed: int, accuracies: tuple[float, float, float], status: str = "finished"):
    """Rows of one run: the training set len_1-40, then len_50 and len_100."""
    return [dict(run_id=f"{task}-{model}-seed{seed}", task=task, model=model, seed=seed, status=status,
                 val_set=name, token_accuracy=accuracy, bit_errors=1.0 - accuracy)
            for name, accuracy in zip(("len_1-40", "len_50", "len_100"), accuracies)]


def _typed(rows: list[dict]) -> pd.DataFrame:
    """The rows as a results table (the columns a run summary has and these rows do not: missing values)."""
    frame = pd.DataFrame(rows)
    return typed(frame.assign(**{name: None for name in RESULT_COLUMNS if name not in frame}), RESULT_COLUMNS)


def results() -> pd.DataFrame:
    rows = (_run("reverse_string", "stack_rnn", 0, (1.0, 0.9, 0.7)) + _run("reverse_string", "stack_rnn", 1, (1.0, 1.0, 1.0))
            + _run("reverse_string", "stack_rnn", 2, (1.0, 0.5, 0.5)) + _run("reverse_string", "ntm", 0, (0.9, 0.6, 0.5))
            + _run("parity_check", "ntm", 0, (0.2, 0.2, 0.2), status="failed") + _run("copy", "ntm", 0, (1.0, 1.0, 1.0)))
    return _typed(rows)


def test_scores_average_every_test_length_and_leave_the_training_set_and_failed_runs_out():
    """Trained to 40, tested at 50 and 100: the mean over lengths 41-100, each equally, of the accuracy
    interpolated between 50 and 100 and held at its length-50 value for 41-49. By hand for 0.9 at 50 and
    0.7 at 100: 41-50 give 10 x 0.9; 51-100 give sum(0.9 - 0.2 k / 50, k = 1..50) = 45 - 0.2 x 25.5 = 39.9;
    (9 + 39.9) / 60 = 0.815. For 0.6 and 0.5: (6 + 30 - 0.1 x 25.5) / 60 = 0.5575."""
    scores = suites.chomsky_scores(results()).set_index("run_id")["score"]
    assert scores.round(6).to_dict() == {"reverse_string-stack_rnn-seed0": 0.815, "reverse_string-stack_rnn-seed1": 1.0,
                                         "reverse_string-stack_rnn-seed2": 0.5, "reverse_string-ntm-seed0": 0.5575,
                                         "copy-ntm-seed0": 1.0}


def test_the_length_weighted_mean_against_a_loop():
    """An independent loop: every length of 41..500 takes the accuracy of the line between the tested
    lengths around it (the first tested value below the first), each length weighing the same."""
    lengths, accuracies = [200, 50, 500, 100], [0.97, 1.0, 0.66, 1.0]  # DNC-like: 100 % to 100, then falling
    points = sorted(zip(lengths, accuracies))
    total = 0.0
    for length in range(41, 501):
        if length <= points[0][0]:
            total += points[0][1]
            continue
        (a, ya), (b, yb) = next((p, q) for p, q in zip(points, points[1:]) if p[0] <= length <= q[0])
        total += ya + (yb - ya) * (length - a) / (b - a)
    assert abs(suites.length_weighted_mean(lengths, accuracies, 41) - total / 460) < 1e-12
    assert suites.length_weighted_mean(lengths, accuracies, 41) < sum(accuracies) / 4  # the long lengths weigh more


def test_the_table_has_median_best_seeds_solved_and_the_published_score():
    table = suites.chomsky_table(results()[lambda r: r["task"].isin(list(suites.LEVELS))])
    assert "| DCF | reverse_string | stack_rnn | 81.5 (100.0) | 0 1 2 | yes | 100.0 |" in table
    assert "| DCF | reverse_string | ntm | 55.8 (55.8) | 0 | no | - |" in table
    assert "parity_check" not in table  # its one run failed
    ended = results().assign(status=lambda r: r["status"].mask(r["run_id"] == "reverse_string-stack_rnn-seed1", "stopped")
                             .mask(r["run_id"] == "reverse_string-stack_rnn-seed2", "diverged"))
    table = suites.chomsky_table(ended[lambda r: r["task"].isin(list(suites.LEVELS))])
    assert "| DCF | reverse_string | stack_rnn | 81.5 (100.0) | 0 1* 2x | yes | 100.0 |" in table  # stopped, diverged


def test_the_figure_has_a_panel_per_task_and_a_line_per_model():
    fig = suites.chomsky_figure(results()[lambda r: r["task"] == "reverse_string"])
    [ax] = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")) == ["ntm", "stack_rnn"]
    stack = next(line for line in ax.get_lines() if line.get_label() == "stack_rnn")
    assert list(stack.get_xdata()) == [50, 100] and list(stack.get_ydata()) == [90.0, 70.0]  # medians over seeds
    assert any(list(line.get_xdata()) == [40, 40] for line in ax.get_lines())  # the longest training length
    # a model has the colour it has in every other figure (colours.COLOURS)
    assert stack.get_color() == COLOURS["stack_rnn"] and next(
        line for line in ax.get_lines() if line.get_label() == "ntm").get_color() == COLOURS["ntm"]


def test_mqar_figure_puts_accuracy_against_state_size_a_line_per_family():
    """A panel per MQAR setting; the NTM at two memory sizes is one line (ntm_n16, ntm_n64), its points at
    their state sizes (lstm_h3x256: family lstm), the medians over seeds; a run without a state size and other tasks left out."""
    rows = []
    for model, size, seeds in (("ntm_n16", 400, (0.5, 0.7)), ("ntm_n64", 1600, (0.9, 0.9)), ("lstm_h3x256", 200, (0.3, 0.3))):
        for seed, accuracy in enumerate(seeds):
            rows += [dict(run_id=f"mqar-{model}-seed{seed}", task="mqar", model=model, seed=seed, status="finished",
                          state_size=size, val_set=name, token_accuracy=accuracy)
                     for name in ("len_64_pairs_4", "len_128_pairs_8")]
    rows += [dict(run_id="mqar-dnc-seed0", task="mqar", model="dnc", seed=0, status="finished", state_size=None,
                  val_set="len_64_pairs_4", token_accuracy=1.0)]
    fig = suites.mqar_figure(_typed(rows + _run("reverse_string", "ntm", 0, (1.0, 1.0, 1.0))))
    assert len(fig.axes) == 2
    lines = {line.get_label(): line for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")}
    assert sorted(lines) == ["lstm", "ntm"]
    assert list(lines["ntm"].get_xdata()) == [400, 1600] and list(lines["ntm"].get_ydata()) == [60.0, 90.0]
    assert lines["ntm"].get_color() == COLOURS["ntm"] and lines["lstm"].get_color() == COLOURS["lstm"]
    assert all(len(line.get_xdata()) == 0 for line in fig.axes[0].get_lines() if line.get_label() == "_stopped")
    # a run stopped before its budget: its point drawn hollow, and the legend says what that means
    stopped = [{**row, "status": "stopped"} if row["run_id"] == "mqar-ntm_n64-seed1" else row for row in rows]
    fig = suites.mqar_figure(_typed(stopped))
    hollow = [line for line in fig.axes[0].get_lines() if line.get_label() == "_stopped" and len(line.get_xdata())]
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == [1600] and hollow[0].get_markerfacecolor() == "white"
    assert "stopped before its budget" in [text.get_text() for text in fig.legends[0].get_texts()]
    assert suites.mqar_figure(results()) is None  # no MQAR runs


def test_chomsky_lines_on_top_of_each_other_stay_visible():
    """NTM and DNC both at 100 % (duplicate_string): each model a marker and a line style of its own, drawn
    in the results table's order, the first solid at the bottom and the next dashed over it."""
    rows = _run("duplicate_string", "ntm", 0, (1.0, 1.0, 1.0)) + _run("duplicate_string", "dnc", 0, (1.0, 1.0, 1.0))
    fig = suites.chomsky_figure(_typed(rows))
    [ax] = [ax for ax in fig.axes if ax.get_visible()]
    ntm, dnc = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert (ntm.get_label(), dnc.get_label()) == ("ntm", "dnc")  # drawn in that order: the DNC on top
    assert ntm.get_linestyle() == "-" and dnc.get_linestyle() == "--"
    assert ntm.get_marker() != dnc.get_marker() and list(dnc.get_ydata()) == list(ntm.get_ydata())


def test_model_names_give_the_core_the_line_and_the_size():
    """The core takes its colour (a learning-rate suffix does not make another family); the line joins the
    sizes of one model; the size labels the point."""
    assert [suites.model_family(m) for m in ("ntm_n64", "ntm_n64_lr3e3", "lstm_h3x256", "transformer_2l_learned",
                                              "dnc_sparse_n16384", "dnc")] == [
        "ntm", "ntm", "lstm", "transformer", "dnc_sparse", "dnc"]
    assert [suites.model_line(m) for m in ("ntm_n64", "ntm_n64_lr3e3", "lstm_h3x256", "transformer_lr3e4")] == [
        "ntm", "ntm_lr3e3", "lstm", "transformer_lr3e4"]
    assert [suites.model_size(m) for m in ("ntm_n64_lr3e3", "lstm_h100", "lstm_h3x256", "transformer")] == [
        "N=64", "h=100", "h=3x256", ""]
    assert suites.mqar_pairs("len_128_pairs_8") == 8 and suites.mqar_pairs("len_50") is None
    assert suites.mqar_pairs("len_1-20_pairs_8") == 8 and suites.mqar_pairs("items_8_pairs_8") is None
    assert suites.chance_accuracy(256) == 1 / 128 and suites.chance_accuracy(32) == 1 / 16


def _mqar_rows(models: dict[str, tuple[int, tuple[float, ...]]], settings=("len_64_pairs_4",)) -> list[dict]:
    """MQAR result rows: per model its state size and one accuracy per seed, on each setting."""
    return [dict(run_id=f"mqar-{model}-seed{seed}", task="mqar", model=model, seed=seed, status="finished",
                 state_size=size, val_set=name, token_accuracy=accuracy)
            for model, (size, accuracies) in models.items() for seed, accuracy in enumerate(accuracies)
            for name in settings]


def test_the_mqar_figure_colours_a_learning_rate_probe_by_its_core_and_draws_the_levels():
    """mqar_lr's models (``_lr3e3``) take their core's colour, each line a marker of its own; every point is
    labelled with its size; the context-guessing level (100/P %) and chance (1 in V/2) are drawn; one seed
    per point: the title does not say median."""
    rows = _mqar_rows({"ntm_n64_lr3e3": (1628, (0.25,)), "lstm_h100_lr3e3": (200, (0.26,)),
                       "transformer_lr3e3": (40960, (0.01,)), "transformer_lr3e4": (40960, (0.25,))},
                      settings=("len_64_pairs_4", "len_128_pairs_8"))
    fig = suites.mqar_figure(_typed(rows), vocabulary=256)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert lines["ntm_lr3e3"].get_color() == COLOURS["ntm"] and lines["lstm_lr3e3"].get_color() == COLOURS["lstm"]
    assert lines["transformer_lr3e3"].get_color() == lines["transformer_lr3e4"].get_color() == COLOURS["transformer"]
    assert len({line.get_marker() for line in lines.values()}) == 4
    assert sorted(text.get_text() for text in ax.texts) == ["N=64", "h=100"]  # the Transformer has no size
    levels = sorted(line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() in ("--", ":"))
    assert levels == [100 / 128, 25.0] and fig.axes[1].get_lines()[0].get_ydata()[0] == 12.5  # P = 8 there
    assert "one seed each" in fig._suptitle.get_text() and "median" not in fig._suptitle.get_text()
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "chance: one of the 128 values (1/128)" in legend
    two_seeds = suites.mqar_figure(_typed(_mqar_rows({"ntm_n16": (572, (0.5, 0.6))})))  # no vocabulary: no chance
    assert "median over 2 seeds" in two_seeds._suptitle.get_text()
    assert not any(line.get_linestyle() == ":" for line in two_seeds.axes[0].get_lines())


def test_size_labels_go_away_from_the_nearest_other_point():
    """The mqar grid's first panel: the NTM at 16 slots just below the DNC at 16 (labels below and above);
    the NTM at 256 slots below the DNC at 64, at the same state size (below and above); the NTM at 64 above
    its nearest, the DNC at 16. One point alone: above."""
    panel = pd.DataFrame({"model": ["ntm_n16", "ntm_n64", "ntm_n256", "dnc_n16", "dnc_n64"],
                          "state_size": [572, 1628, 5852, 860, 5852], "accuracy": [0.219, 0.240, 0.229, 0.223, 0.254]})
    assert suites.label_sides(panel, y_span=0.28) == {"ntm_n16": False, "ntm_n64": True, "ntm_n256": False,
                                                      "dnc_n16": True, "dnc_n64": True}
    assert suites.label_sides(panel.iloc[:1], y_span=0.28) == {"ntm_n16": True}


def test_the_vocabulary_is_read_from_the_shipped_grid_of_that_name():
    assert suites.preset_vocabulary("mqar") == 256 and suites.preset_vocabulary("mqar_small") == 32
    assert suites.preset_vocabulary("chomsky") is None and suites.preset_vocabulary("no_such_grid") is None

"""The report's figures as a reader checks them (issue 12, point 6): each learning curve on its task's
training distribution, a median that does not jump when converged seeds stop, sequences and updates,
generalisation against a numeric size with the training range marked, the Bayes-optimal cost, the cost
fit's residuals with legible ticks, and addressing plots with a colour bar and the delimiter."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mann_zoo.experiments import report
from mann_zoo.experiments.results import CURVE_COLUMNS, RESULT_COLUMNS, set_sizes, typed


def results_rows(task: str, model: str, seed: int, sets: list[str], *, converged: bool = False,
                 reference_bits: float | None = None, bit_errors: dict[str, float] | None = None) -> list[dict]:
    """Results rows of one run, one per validation set in the order the run lists them."""
    base = dict(run_id=f"{task}-{model}-seed{seed}", task=task, model=model, seed=seed, steps=10, sequences=320,
                train_time_s=1.0, converged=converged, sequences_to_convergence=320 if converged else None,
                wall_time_to_convergence_s=1.0 if converged else None, step_time_ms=5.0, peak_memory_mb=1.0,
                num_parameters=100, batch_size=32, world_size=1, versions="v", hardware="h", status="finished",
                reference_bits=reference_bits, cost_bits=1.0, seq_accuracy=0.5)
    return [{**base, "val_set": name, "val_steps": 10, "bit_errors": (bit_errors or {}).get(name, 1.0)}
            for name in sets]


def curve_rows(task: str, model: str, seed: int, val_set: str, points: list[tuple[int, float]],
               batch: int = 32) -> list[dict]:
    """Curve rows of one run: the cost on ``val_set`` at each (step, value)."""
    return [dict(run_id=f"{task}-{model}-seed{seed}", task=task, model=model, seed=seed, step=step,
                 sequences=step * batch, metric=f"val/{val_set}/cost_bits", value=value) for step, value in points]


def tables(results: list[list[dict]], curves: list[list[dict]] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (typed(pd.DataFrame([row for rows in results for row in rows]), RESULT_COLUMNS),
            typed(pd.DataFrame([row for rows in curves for row in rows], columns=list(CURVE_COLUMNS)), CURVE_COLUMNS))


def line(ax, label: str):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def test_the_learning_curve_is_on_the_training_distribution_not_the_first_set_by_name():
    """Associative recall lists items_2-6 (training) first; the logged metrics come alphabetically, with
    items_12 first. The curve is items_2-6's."""
    sets = ["items_2-6", "items_12"]
    results, curves = tables([results_rows("associative_recall", "ntm", 0, sets)],
                             [curve_rows("associative_recall", "ntm", 0, "items_12", [(10, 90.0), (20, 80.0)]),
                              curve_rows("associative_recall", "ntm", 0, "items_2-6", [(10, 9.0), (20, 8.0)])])
    assert report.training_sets(results).to_dict() == {"associative_recall": "items_2-6"}
    fig = report.learning_figure(curves, results, "associative_recall")
    assert list(line(fig.axes[0], "ntm").get_ydata()) == [9.0, 8.0]
    assert "items_2-6" in fig.axes[0].get_ylabel()


def test_a_converged_seed_carries_its_last_value_so_the_median_does_not_jump():
    """Two seeds converge at step 20 (costs 1 and 2), one goes on at ~50: the median stays at 2 after
    step 20 (not 50, the one run left), the range spans 1 to that run's values, to its last step."""
    points = {0: [(10, 60.0), (20, 1.0)], 1: [(10, 70.0), (20, 2.0)], 2: [(10, 80.0), (20, 55.0), (30, 50.0), (40, 45.0)]}
    data = pd.DataFrame([row for seed, values in points.items() for row in curve_rows("copy", "dnc", seed, "len_1-20", values)])
    spread, alone = report.seed_spread(data, "step", {"copy-dnc-seed0", "copy-dnc-seed1"})
    assert list(spread.index) == [10, 20, 30, 40]
    assert list(spread["median"]) == [70.0, 2.0, 2.0, 2.0]
    assert list(spread["min"]) == [60.0, 1.0, 1.0, 1.0] and list(spread["max"]) == [80.0, 55.0, 50.0, 45.0]
    assert alone.empty


def test_a_seed_that_stopped_unconverged_ends_the_median_and_the_others_go_on_alone():
    """Seed 0 stopped at step 20 without converging: the spread ends there, seed 1 is drawn alone from 20."""
    points = {0: [(10, 50.0), (20, 1.0)], 1: [(10, 60.0), (20, 40.0), (30, 45.0)]}
    data = pd.DataFrame([row for seed, values in points.items() for row in curve_rows("copy", "dnc", seed, "len_1-20", values)])
    spread, alone = report.seed_spread(data, "sequences", set())
    assert list(spread.index) == [320, 640] and list(spread["median"]) == [55.0, 20.5]
    assert list(alone["sequences"]) == [640, 960] and set(alone["run_id"]) == {"copy-dnc-seed1"}


def test_the_learning_figure_has_a_panel_against_updates_and_marks_converged_seeds():
    """A converged seed is marked where it converged (its sequences_to_convergence: the first of its
    validations in a row below the threshold), not where it stopped."""
    converged = [{**row, "sequences_to_convergence": 640} for row in results_rows("copy", "ntm", 0, ["len_1-20"],
                                                                                  converged=True)]
    results, curves = tables([converged, results_rows("copy", "ntm", 1, ["len_1-20"])],
                             [curve_rows("copy", "ntm", 0, "len_1-20", [(10, 50.0), (20, 1.0), (30, 0.5), (40, 0.4)]),
                              curve_rows("copy", "ntm", 1, "len_1-20", [(10, 60.0), (20, 30.0), (30, 20.0)])])
    fig = report.learning_figure(curves, results, "copy")
    sequences, updates = fig.axes[:2]
    assert sequences.get_xlabel() == "sequences seen"
    assert updates.get_xlabel().startswith("updates") and "32 sequences" in updates.get_xlabel()
    assert list(line(sequences, "ntm").get_xdata()) == [320, 640, 960]
    assert list(line(updates, "ntm").get_xdata()) == [10, 20, 30]
    assert list(line(updates, "ntm").get_ydata()) == [55.0, 15.5, 10.25]  # seed 1 stopped unconverged at 30: the spread ends
    stops = [ln for ln in updates.get_lines() if ln.get_marker() == "o"]
    assert [(list(ln.get_xdata()), list(ln.get_ydata())) for ln in stops] == [([20.0], [1.0])]
    assert any("converged" in text.get_text() for text in fig.legends[0].get_texts())


def test_the_ngrams_learning_curve_shows_the_cost_above_the_bayes_optimal_cost():
    """Each run's cost less its own Bayes-optimal cost (reference_bits of the training set), on a log axis
    where a gap of a bit on a cost of 130 can be read; the optimum's median over seeds in the legend."""
    results, curves = tables([results_rows("ngrams", "lstm", seed, ["len_200"], reference_bits=bits)
                              for seed, bits in ((0, 130.0), (1, 132.0), (2, 140.0))],
                             [curve_rows("ngrams", "lstm", seed, "len_200", points) for seed, points in
                              ((0, [(10, 180.0), (20, 170.0)]), (1, [(10, 180.0), (20, 170.0)]),
                               (2, [(10, 200.0), (20, 190.0)]))])
    fig = report.learning_figure(curves, results, "ngrams")
    # each run less its own optimum: 50/40, 48/38, 60/50 (less the median optimum, 132: 48/38, 48/38, 68/58)
    assert list(line(fig.axes[0], "lstm").get_ydata()) == [50.0, 40.0]
    assert "above the Bayes-optimal" in fig.axes[0].get_ylabel()
    assert any("Bayes-optimal cost (132.0 bits" in text.get_text() for text in fig.legends[0].get_texts())


@pytest.mark.parametrize("name, sizes", [("len_1-20", {"len": (1, 20)}), ("items_6", {"items": (6, 6)}),
                                         ("len_1-10_rep_1-10", {"len": (1, 10), "rep": (1, 10)}),
                                         ("in_20_out_16", {"in": (20, 20), "out": (16, 16)}),
                                         ("len_64_pairs_4", {"len": (64, 64), "pairs": (4, 4)}), ("odd set", None)])
def test_set_names_give_their_sizes(name, sizes):
    assert set_sizes(name) == sizes


def test_generalisation_is_against_the_length_on_a_numeric_axis_with_the_training_range_marked():
    sets = ["len_1-20", "len_10", "len_50", "len_120"]
    errors = {"len_1-20": 0.0, "len_10": 0.0, "len_50": 2.0, "len_120": 9.0}
    results, _ = tables([results_rows("copy", "ntm", seed, sets, bit_errors=errors) for seed in (0, 1)])
    fig = report.generalisation_figure(results, "copy")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "sequence length"
    assert list(line(ax, "ntm").get_xdata()) == [10, 50, 120] and list(line(ax, "ntm").get_ydata()) == [0.0, 2.0, 9.0]
    edges = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert [list(ln.get_xdata()) for ln in edges] == [[20, 20]]  # the edge of the training range
    assert any("training range" in patch.get_label() for patch in ax.patches)


def test_a_run_stopped_before_it_validated_is_left_out_of_the_generalisation_figure():
    sets = ["len_1-20", "len_10", "len_50"]
    unvalidated = [{**row, "model": "dnc", "run_id": "copy-dnc-seed0", "bit_errors": None, "status": "stopped"}
                   for row in results_rows("copy", "dnc", 0, sets)]
    results, _ = tables([results_rows("copy", "ntm", 0, sets), unvalidated])
    ax = report.generalisation_figure(results, "copy").axes[0]
    assert list(line(ax, "ntm").get_xdata()) == [10, 50]
    assert "dnc" not in [ln.get_label() for ln in ax.get_lines()]
    only_unvalidated, _ = tables([unvalidated])
    assert report.generalisation_figure(only_unvalidated, "copy") is None


def test_repeat_copy_generalisation_is_against_length_with_a_line_per_repeat_count():
    sets = ["len_1-10_rep_1-10", "len_10_rep_10", "len_20_rep_10", "len_10_rep_20", "len_20_rep_20"]
    results, _ = tables([results_rows("repeat_copy", "dnc", 0, sets)])
    fig = report.generalisation_figure(results, "repeat_copy")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "sequence length"
    drawn = [(ln.get_linestyle(), list(ln.get_xdata())) for ln in ax.get_lines() if ln.get_marker() != "None"]
    assert drawn == [("-", [10, 20]), ("--", [10, 20])]
    assert {"repeats 10 (in training range)", "repeats 20"} <= {t.get_text() for t in fig.legends[0].get_texts()}


def test_the_generalisation_figure_pools_runs_as_the_tables_do_and_leaves_failed_runs_out():
    """A failed run is no result; runs stopped part-way count only where their model has no finished run
    (as in the results tables), and a model with only such runs says so in its label."""
    sets = ["len_1-20", "len_10", "len_50"]
    part_way = [{**row, "status": "stopped"} for seed in (1, 2)
                for row in results_rows("copy", "dnc", seed, sets, bit_errors={"len_50": 300.0})]
    failed = [{**row, "status": "failed"} for row in results_rows("copy", "lstm", 0, sets)]
    only_part_way = [{**row, "status": "stopped"} for row in results_rows("copy", "ntm", 0, sets)]
    results, _ = tables([results_rows("copy", "dnc", 0, sets, bit_errors={"len_50": 6.0}), part_way, failed,
                         only_part_way])
    fig = report.generalisation_figure(results, "copy")
    ax = fig.axes[0]
    assert list(line(ax, "dnc").get_ydata()) == [1.0, 6.0]  # seed 0 alone, not the median with 300
    assert "lstm" not in [ln.get_label() for ln in ax.get_lines()]
    assert "ntm (part-way)" in [ln.get_label() for ln in ax.get_lines()]
    assert "one run per model" in fig.get_suptitle()


def test_a_model_keeps_its_colour_and_marker_in_every_figure_of_its_grid(tmp_path, monkeypatch):
    """The grid's styles come from its results table's order: learning_curves and generalisation_curves
    draw a model alike even where a figure has fewer models; a model with curves but no results row is
    still drawn, styled after the grid's."""
    sets = ["len_1-20", "len_10", "len_50"]
    results, curves = tables([results_rows("copy", model, 0, sets) for model in ("ntm_b64", "ntm_b32")],
                             [curve_rows("copy", "ntm_b32", 0, "len_1-20", [(10, 5.0), (20, 4.0)]),
                              curve_rows("copy", "ntm_b16", 0, "len_1-20", [(10, 6.0), (20, 5.0)])])
    drawn = {}
    monkeypatch.setattr(report, "save", lambda fig, path: drawn.__setitem__(path.name, fig))
    report.learning_curves(results, curves, "grid", tmp_path)
    report.generalisation_curves(results, "grid", tmp_path)
    styles = report.grid_styles(results)
    learning = line(drawn["learning_grid_copy.png"].axes[0], "ntm_b32")
    generalisation = line(drawn["generalisation_grid_copy.png"].axes[0], "ntm_b32")
    assert (learning.get_color(), learning.get_marker()) == (generalisation.get_color(), generalisation.get_marker()) \
        == tuple(styles["ntm_b32"]) != tuple(styles["ntm_b64"])
    unlisted = line(drawn["learning_grid_copy.png"].axes[0], "ntm_b16")
    assert (unlisted.get_color(), unlisted.get_marker()) not in {tuple(style) for style in styles.values()}


def test_the_learning_figure_leaves_failed_runs_out():
    """A failed run can keep the curve it had begun (benchmark.read_results): it is not drawn."""
    failed = [{**row, "status": "failed"} for row in results_rows("copy", "lstm", 0, ["len_1-20"])]
    results, curves = tables([results_rows("copy", "ntm", 0, ["len_1-20"]), failed],
                             [curve_rows("copy", "ntm", 0, "len_1-20", [(10, 5.0), (20, 4.0)]),
                              curve_rows("copy", "lstm", 0, "len_1-20", [(10, 50.0)])])
    fig = report.learning_figure(curves, results, "copy")
    assert "lstm" not in [ln.get_label() for ln in fig.axes[0].get_lines()]


def test_the_convergence_point_is_the_validation_at_the_recorded_count_or_the_last_before_it():
    run = pd.DataFrame({"sequences": [320, 640, 960], "step": [10, 20, 30], "value": [5.0, 1.0, 0.5]})
    assert report.convergence_point(run, 640)["step"] == 20
    assert report.convergence_point(run, 700)["step"] == 20  # not a logged point: the validation before it
    assert report.convergence_point(run, 100)["step"] == 10  # before the first point: the first
    assert report.convergence_point(run, None)["step"] == 30  # no count recorded: where it stopped


def test_a_task_of_tokens_is_drawn_in_token_accuracy_and_single_points_are_no_figure():
    """For a task of tokens (Chomsky, MQAR) the results' bit_errors count wrong tokens, which grow with the
    length even at chance: the figure shows token accuracy. Where the second size changes with the first
    (MQAR's pairs with its length) every line is one point: no figure."""
    sets = ["len_1-40", "len_50", "len_100"]
    rows = [{**row, "token_accuracy": {"len_1-40": 1.0, "len_50": 0.9, "len_100": 0.7}[row["val_set"]]}
            for row in results_rows("reverse_string", "ntm", 0, sets)]
    results, _ = tables([rows])
    ax = report.generalisation_figure(results, "reverse_string").axes[0]
    assert list(line(ax, "ntm").get_ydata()) == [0.9, 0.7] and "token accuracy" in ax.get_ylabel()
    mqar = ["len_64_pairs_8", "len_128_pairs_16", "len_256_pairs_32"]
    results, _ = tables([[{**row, "token_accuracy": 0.5} for row in results_rows("mqar", "ntm", 0, mqar)]])
    assert report.generalisation_figure(results, "mqar") is None
    one_length, _ = tables([results_rows("copy", "ntm", 0, ["len_1-5", "len_10"])])  # one point, one line: drawn
    assert list(line(report.generalisation_figure(one_length, "copy").axes[0], "ntm").get_xdata()) == [10]


def test_a_task_with_one_validation_set_has_no_generalisation_figure():
    results, _ = tables([results_rows("ngrams", "lstm", 0, ["len_200"])])
    assert report.generalisation_figure(results, "ngrams") is None


def test_the_cost_figure_shows_residuals_with_the_swept_sizes_as_plain_ticks():
    rows = [{"model": "controller", "memory_slots": 0, "word_size": 20, "step_ms": 10.0}]
    rows += [{"model": "ntm", "memory_slots": n, "word_size": 20, "step_ms": 12 + 0.1 * n} for n in (16, 64, 256, 1024)]
    rows += [{"model": "ntm", "memory_slots": 128, "word_size": w, "step_ms": 20 + 0.5 * w} for w in (10, 20, 40, 80)]
    fits = pd.DataFrame([{"model": "ntm", "fit_of": "T", "controller_ms": 10.0, "fixed_us": 12000.0, "us_per_N": 100.0,
                          "us_per_NW": 0.0, "us_per_N2": None, "us_per_NlogN": None, "r2": 0.9}])
    fig = report.draw_cost(pd.DataFrame(rows), fits)
    fig.canvas.draw()
    top_n, top_w, residual_n, residual_w = fig.axes
    assert "fitted" in residual_n.get_ylabel() and residual_n.get_lines()
    fitted = next(line for line in top_n.get_lines() if line.get_label().startswith("ntm fit"))
    assert list(fitted.get_ydata()) == pytest.approx([12 + 0.1 * n for n in (16, 64, 128, 256, 1024)])  # T = c + d N
    # measured - fitted: none but at N = 128, the W sweep's point (20 + 0.5 x 20 = 30 ms against 24.8 fitted)
    assert list(residual_n.get_lines()[0].get_ydata()) == pytest.approx([0, 0, 100 * 5.2 / 30, 0, 0], abs=1e-9)
    # a fit of T - T_controller (a cost_fit.csv from before fit_of): the points, no fitted line
    old = report.draw_cost(pd.DataFrame(rows), fits.drop(columns="fit_of"))
    assert not any(line.get_label().startswith("ntm fit") for line in old.axes[0].get_lines())
    assert [t.get_text() for t in residual_w.get_xticklabels()] == ["10", "20", "40", "80"]
    assert [t.get_text() for t in residual_n.get_xticklabels()] == ["16", "64", "128", "256", "1024"]  # 128: the W sweep's N
    assert not any("times" in t.get_text() or "^" in t.get_text() for t in top_w.get_yticklabels(which="both"))


def test_addressing_figure_has_a_colour_bar_and_marks_the_delimiter():
    from mann_zoo.models import build

    torch.manual_seed(0)
    core = build("ntm", 9, 8, memory_slots=16, word_size=4, controller_size=8)
    fig = report.addressing_figure(core, "ntm", length=5)
    colour_bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colour_bars) == 1 and colour_bars[0].get_ylabel() == "weight"
    for ax in fig.axes[:2]:
        assert [list(ln.get_xdata()) for ln in ax.get_lines()] == [[5.5, 5.5]]  # after the delimiter (step 5)
        assert {t.get_text() for t in ax.texts} == {"input", "recall"}


def test_addressing_figures_show_the_matched_tracks_runs_where_it_has_them(tmp_path):
    """The addressing figures are the matched track's lowest seed (NTM and DNC on one memory), whatever
    folders come first; a model the matched track did not keep comes from the first folder that did."""
    for name in ("batch_size/models/copy-ntm-seed0.ckpt", "batch_size/models/copy-dnc-seed0.ckpt",
                 "matched/models/copy-ntm-seed11.ckpt", "matched/models/copy-ntm-seed10.ckpt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    found = report.addressing_checkpoints([tmp_path / "batch_size", tmp_path / "matched"])
    assert [path.relative_to(tmp_path).as_posix() for path in found] == [
        "matched/models/copy-ntm-seed10.ckpt", "batch_size/models/copy-dnc-seed0.ckpt"]


def test_odds_first_figure_shows_a_string_longer_than_the_memory_and_its_answer(tmp_path, monkeypatch):
    """The Chomsky grid's odds-first NTM (a kept checkpoint; here a small untrained NTM in its place) on one
    string: write and read weightings over the string and the answer, the boundary at the string's end."""
    import mann_zoo
    from mann_zoo.models import build

    torch.manual_seed(0)
    core = build("ntm", 3, 2, memory_slots=8, word_size=4, controller_size=8)  # binary tokens + blank in, 2 classes out
    fig = report.draw_odds_first(core, "odds first", length=12)
    for ax in fig.axes[:2]:
        assert [list(ln.get_xdata()) for ln in ax.get_lines()] == [[11.5, 11.5]]  # between string and answer
        assert ax.get_images()[0].get_array().shape == (8, 24)  # slots x (string + answer) steps
        assert [t.get_text() for t in ax.texts] == ["string", "answer"]
    monkeypatch.setattr(mann_zoo, "load_model", lambda checkpoint: core)
    path = report.odds_first_figure(tmp_path / "odds_first-ntm-seed0.ckpt", tmp_path, length=12)
    assert path == tmp_path / "odds_first_ntm.png" and path.stat().st_size > 1000


def test_every_known_model_has_a_colour_of_its_own():
    from mann_zoo.experiments.colours import COLOURS, SPARE_COLOURS, model_colours, model_styles

    assert len(set(COLOURS.values())) == len(COLOURS) and not set(SPARE_COLOURS) & set(COLOURS.values())
    many = model_styles(f"ntm_b{n}" for n in range(20))  # past the spare colours: no black, styles differ
    assert "black" not in {style.colour for style in many.values()} and len(set(many.values())) == 20
    assert model_colours(["dnc_md", "ntm_b32", "dnc_mds", "ntm_b64"]) == {
        "dnc_md": COLOURS["dnc_md"], "ntm_b32": SPARE_COLOURS[0], "dnc_mds": COLOURS["dnc_mds"], "ntm_b64": SPARE_COLOURS[1]}

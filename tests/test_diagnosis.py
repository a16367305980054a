"""The NTM diagnosis (paper section 8): the one-pass plateau, the curves, the table and the figures."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import torch

from mann_zoo.experiments.diagnosis import (
    BEFORE_GRID,
    FOUND_MODEL,
    FOUND_TASK,
    GRID,
    REPEAT_COPY_SET,
    REPEAT_COPY_VARIANTS,
    curriculum_at_end,
    diagnosis_table,
    evaluate_kept_models,
    generalisation_table,
    heads_figure,
    make_diagnosis,
    one_pass_cost,
    training_curves,
)
from mann_zoo.experiments.results import CURVE_COLUMNS, RESULT_COLUMNS, save_table
from mann_zoo.training.lightning_module import SequenceModel
from tasks import RepeatCopyTask


def test_one_pass_cost_by_hand():
    """Length 2, 3 repeats, 2 bits: 12 data bits; one pass leaves 2 x 2 x 2 = 8 to guess, the first
    vector on every step right 3 times leaves 2 x (6 - 3) = 6."""
    task = RepeatCopyTask(bits=2, min_length=2, max_length=2, min_repeats=3, max_repeats=3,
                          val_lengths_repeats=(), num_val_sequences=4, val_batch_size=3)
    assert one_pass_cost(task) == {"all": 12.0, "one_pass": 8.0, "first_vector": 6.0}


def test_one_pass_cost_against_a_loop_over_examples():
    task = RepeatCopyTask(bits=3, max_length=4, max_repeats=5, val_lengths_repeats=(), num_val_sequences=50,
                          val_batch_size=16)
    expected = {"all": 0.0, "one_pass": 0.0, "first_vector": 0.0}
    task.setup("fit")
    for batch in task.val_dataloader()[0]:
        for x, m in zip(batch.inputs, batch.mask):
            length = int(x[:, task.bits].nonzero()[0])  # the delimiter's step
            repeats = (int(m.sum()) - 1) // length
            expected["all"] += task.bits * repeats * length / 50
            expected["one_pass"] += task.bits * (repeats - 1) * length / 50
            expected["first_vector"] += task.bits * (repeats * length - repeats) / 50
    got = one_pass_cost(task)
    assert all(abs(got[k] - expected[k]) < 1e-9 for k in expected)
    # For the paper's distribution (L and R both uniform on 1..10) the two strategies tie in expectation.
    paper = one_pass_cost(RepeatCopyTask(val_lengths_repeats=(), num_val_sequences=2000))
    assert abs(paper["one_pass"] - paper["first_vector"]) < 0.05 * paper["one_pass"]


def write_curves(path: Path, runs: dict[tuple[str, str, int], list[tuple[int, float]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CURVE_COLUMNS)
        for (task, model, seed), points in runs.items():
            for step, cost in points:
                run_id = f"{task}-{model}-seed{seed}"
                writer.writerow([run_id, task, model, seed, step, step * 32, "train/cost_bits", 999.0])
                writer.writerow([run_id, task, model, seed, step, step * 32, "val/len_1-10_rep_1-10/cost_bits", cost])
                writer.writerow([run_id, task, model, seed, step, step * 32, "val/len_20_rep_10/cost_bits", 555.0])


def fake_results(root: Path) -> Path:
    results = root / "results"
    write_curves(results / BEFORE_GRID / "curves.csv", {("repeat_copy", "ntm", 0): [(2500, 200.0), (3000, 195.0)]})
    write_curves(results / GRID / "curves.csv", {
        ("repeat_copy", "ntm_fixed", 0): [(2500, 194.0)],
        ("repeat_copy", "ntm_ff", 0): [(2500, 7.0)],  # below 10 bits at its budget, not converged
        (FOUND_TASK, FOUND_MODEL, 0): [(2500, 300.0), (6000, 12.0), (6250, 9.0), (9375, 0.5)],
        (FOUND_TASK, FOUND_MODEL, 1): [(2500, 300.0), (6250, 50.0), (7000, 8.0)],
    })
    runs = [{"run_id": f"{task}-{model}-seed{seed}", "task": task, "model": model, "seed": seed,
             "converged": converged, "sequences": sequences, "num_parameters": 1,
             "sequences_to_convergence": sequences if converged else None, "val_set": REPEAT_COPY_SET}
            for task, model, seed, converged, sequences in [("repeat_copy", "ntm_ff", 0, False, 80_000),
                                                             (FOUND_TASK, FOUND_MODEL, 0, False, 300_000),
                                                             (FOUND_TASK, FOUND_MODEL, 1, True, 224_000)]]
    save_table(pd.DataFrame(runs, columns=list(RESULT_COLUMNS)), results / GRID / "results.csv")  # the bench's table
    return results


def test_diagnosis_table_reads_the_training_distribution(tmp_path):
    curves = training_curves(fake_results(tmp_path))
    assert set(curves.val_set) == {"len_1-10_rep_1-10", "len_20_rep_10"}  # validation costs only
    assert (curves.updates == curves.step).all()
    # Whether a run stopped at convergence, from the results table; the paper grid's run has no row there.
    converged = curves.groupby(["grid", "task", "seed"]).converged.first()
    assert converged.dtype == bool and converged[GRID, FOUND_TASK, 1]
    assert not converged[GRID, FOUND_TASK, 0] and not converged[BEFORE_GRID, "repeat_copy", 0]
    table = diagnosis_table(curves, REPEAT_COPY_VARIANTS)
    rows = {tuple(cell.strip() for cell in line.split("|")[1:4]): line for line in table.splitlines()[2:]}
    found = next(v.label for v in REPEAT_COPY_VARIANTS if v.task == FOUND_TASK)
    assert "| 300.0 | 9.0 | 0.5 | 200,000 | 300,000 | 0.5 |" in rows[(FOUND_TASK, found, "0")]
    # Seed 1 stopped at 224,000 sequences because it converged: its last cost stands for the later budgets.
    assert "| 300.0 | 50.0 | 8.0 | 224,000 | 224,000 | 8.0 |" in rows[(FOUND_TASK, found, "1")]
    before = rows[("repeat_copy", REPEAT_COPY_VARIANTS[0].label, "0")]
    assert "| 200.0 | - | - | - | 96,000 | 195.0 |" in before  # stopped at 96k above 10 bits: nothing later
    feed_forward = rows[("repeat_copy", "feed-forward controller", "0")]
    assert "| 7.0 | - | - | 80,000 | 80,000 | 7.0 |" in feed_forward  # its budget ended, it did not converge


def kept_ntm(path: Path, seed: int) -> None:
    """A weights-only checkpoint as ``mann-zoo bench`` keeps it, of an untrained repeat-copy NTM."""
    torch.manual_seed(seed)
    module = SequenceModel({"class_path": "mann_zoo.models.NTM", "init_args": {"memory_slots": 32, "controller_size": 16}},
                           input_size=10, output_size=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)


def test_make_diagnosis_writes_the_figures_and_the_table(tmp_path):
    results = fake_results(tmp_path)
    for name in ("repeat_copy-ntm_fixed-seed0", f"{FOUND_TASK}-{FOUND_MODEL}-seed0"):
        kept_ntm(results / GRID / "models" / f"{name}.ckpt", seed=len(name))
    written = {p.name for p in make_diagnosis(results, tmp_path / "paper")}
    # No priority-sort runs in these results: no priority-sort figure.
    assert written == {"ntm_diagnosis_repeat_copy.png", "ntm_found_repeat_copy.png", "ntm_diagnosis_heads.png",
                       "ntm_diagnosis.md"}  # no priority-sort runs here: none of its figures
    assert (tmp_path / "paper" / "figures" / "ntm_diagnosis_heads.png").stat().st_size > 10_000
    assert make_diagnosis(tmp_path / "nothing", tmp_path / "paper2") == []
    # mann-zoo report draws the diagnosis figures for the diagnosis grid, not its generic per-task ones.
    from mann_zoo.experiments.report import make_report

    reported = {p.name for p in make_report([results / GRID], tmp_path / "paper3")}
    assert "ntm_diagnosis_repeat_copy.png" in reported
    assert not any(name.startswith(("learning_", "generalisation_")) for name in reported)


def test_kept_models_are_scored_on_the_generalisation_sets(tmp_path):
    models = tmp_path / "models"
    kept_ntm(models / f"{FOUND_TASK}-{FOUND_MODEL}-seed0.ckpt", seed=0)
    kept_ntm(models / "repeat_copy-ntm_fixed-seed0.ckpt", seed=1)  # not the configuration found: left out
    scores = evaluate_kept_models(models, num_sequences=4)
    assert list(scores.run_id.unique()) == [f"{FOUND_TASK}-{FOUND_MODEL}-seed0"]
    assert list(scores.val_set) == ["len_1-10_rep_1-10", "len_10_rep_10", "len_20_rep_10", "len_10_rep_20",
                                    "len_20_rep_20"]
    assert (scores.sequences == 4).all() and (scores.bit_errors > 0).all()  # an untrained model errs
    table = generalisation_table(scores)
    assert table.count("\n") == 3 and "len_20_rep_20" in table.splitlines()[0]


def test_the_table_gives_the_curriculum_level_at_the_end(tmp_path):
    """A run whose curriculum stopped at 4 repeats says so; a run without a curriculum says '-'."""
    results = fake_results(tmp_path)
    path = results / GRID / "curves.csv"
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        for step, level in ((2500, 2.0), (6000, 4.0), (3000, 9.0)):  # the last step's level counts
            writer.writerow([f"{FOUND_TASK}-{FOUND_MODEL}-seed1", FOUND_TASK, FOUND_MODEL, 1, step, step * 32,
                             "train/curriculum_max_length", level])
    levels = curriculum_at_end(results)
    assert levels == {(FOUND_TASK, FOUND_MODEL, 1): 4.0}
    table = diagnosis_table(training_curves(results), REPEAT_COPY_VARIANTS, levels)
    rows = {tuple(cell.strip() for cell in line.split("|")[1:4]): line for line in table.splitlines()[2:]}
    found = next(v.label for v in REPEAT_COPY_VARIANTS if v.task == FOUND_TASK)
    assert rows[(FOUND_TASK, found, "1")].endswith("| 4 repeats |")
    assert rows[(FOUND_TASK, found, "0")].endswith("| - |")


def test_priority_sort_rows_count_sequences_to_its_own_target():
    """Priority sort's target is 40 bits, not repeat copy's 10."""
    from mann_zoo.experiments.diagnosis import PRIORITY_SORT_SET, PRIORITY_SORT_VARIANTS

    variant = next(v for v in PRIORITY_SORT_VARIANTS if v.task == "priority_sort_b8")
    curves = pd.DataFrame({"grid": GRID, "task": variant.task, "model": variant.model, "seed": 0,
                           "val_set": PRIORITY_SORT_SET, "sequences": [80_000, 200_000, 240_000, 300_000],
                           "cost_bits": [81.0, 45.0, 39.0, 35.0]})
    row = diagnosis_table(curves, [variant]).splitlines()[2]
    assert "| 81.0 | 45.0 | 35.0 | 240,000 | 300,000 | 35.0 | - |" in row


def test_the_heads_figure_has_one_colour_scale_with_its_colour_bar(tmp_path, monkeypatch):
    """Every panel on weights 0 to 1 and a colour bar that says so; the delimiter dotted on each panel."""
    from mann_zoo.experiments import diagnosis

    figures = []
    monkeypatch.setattr(diagnosis, "save_figure", lambda fig, path: figures.append(fig))
    for name in ("repeat_copy-ntm_fixed-seed0", f"{FOUND_TASK}-{FOUND_MODEL}-seed0"):
        kept_ntm(tmp_path / f"{name}.ckpt", seed=len(name))
    heads_figure(tmp_path, tmp_path / "heads.png", length=6)
    [fig] = figures
    colour_bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colour_bars) == 1 and colour_bars[0].get_ylabel() == "weight"
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4 and all(ax.images[0].get_clim() == (0, 1) for ax in panels)
    assert all([list(line.get_xdata()) for line in ax.get_lines()][0] == [6, 6] for ax in panels)
    # The memory's last slots (28-31 of 32) lie below slot 0, under a dashed line, and the axis says so.
    assert all([t.get_text() for t in ax.get_yticklabels()][:3] == ["28", "30", "0"] for ax in panels)
    assert all(list(ax.get_lines()[1].get_ydata()) == [-0.5, -0.5] for ax in panels)
    assert "slots 28-31, wrapped round" in panels[0].get_ylabel()
    assert panels[0].get_title().startswith("failing (Adam, no curriculum): write weights")


def _curve_points(sequences: list[int], costs: list[float]) -> list[tuple[int, float]]:
    """Validations (step, cost) at ``sequences`` (32 a step, as ``write_curves`` counts them)."""
    return [(n // 32, cost) for n, cost in zip(sequences, costs)]


def test_a_run_drawn_twice_is_drawn_once_and_the_legend_says_so(tmp_path, monkeypatch):
    """The feed-forward hypothesis run is the first 80k of repeat_copy_ff's seed 0: one line, under the
    legend that says so; were the curves to differ, both would be drawn under their table labels."""
    from mann_zoo.experiments import diagnosis

    hypothesis = next(v for v in REPEAT_COPY_VARIANTS if v.task == "repeat_copy" and v.model == "ntm_ff")
    longer = next(v for v in REPEAT_COPY_VARIANTS if v.key == hypothesis.drawn_by)
    runs = {("repeat_copy", "ntm_ff", 0): _curve_points([32_000, 64_000], [200.0, 10.0]),
            ("repeat_copy_ff", "ntm_ff", 0): _curve_points([32_000, 64_000, 96_000], [200.0, 10.0, 2.0]),
            ("repeat_copy_ff", "ntm_ff", 1): _curve_points([32_000, 64_000, 96_000], [220.0, 220.0, 219.0])}
    write_curves(tmp_path / GRID / "curves.csv", runs)
    curves = training_curves(tmp_path)
    drawn = diagnosis.drawn_variants(curves, [hypothesis, longer])
    assert [v.legend_label for v in drawn] == [longer.legend]
    runs[("repeat_copy", "ntm_ff", 0)] = _curve_points([32_000, 64_000], [200.0, 11.0])
    write_curves(tmp_path / GRID / "curves.csv", runs)
    drawn = diagnosis.drawn_variants(training_curves(tmp_path), [hypothesis, longer])
    assert [v.legend_label for v in drawn] == [hypothesis.label, longer.label]

    figures = []
    monkeypatch.setattr(diagnosis, "save_figure", lambda fig, path: figures.append(fig))
    diagnosis.curves_figure(curves, [hypothesis, longer], "repeat_copy", tmp_path / "f.png")
    [fig] = figures
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels[0] == f"{longer.legend} (2 seeds)" and len(labels) == 2  # and the paper's points
    assert len(fig.axes[0].get_lines()) == 2 + 1 + 1  # two seeds, the paper's points, the target


def test_the_sequences_axis_runs_past_the_longest_run_and_the_papers_last_point(tmp_path, monkeypatch):
    """Priority sort's runs go on to 1M sequences (the paper's last point, which its text quotes): the axis
    ends 5 % past them, not at a fixed 320,000; repeat copy's past its longest run."""
    from mann_zoo.experiments import diagnosis
    from mann_zoo.experiments.diagnosis import PRIORITY_SORT_SET, PRIORITY_SORT_VARIANTS

    variant = next(v for v in PRIORITY_SORT_VARIANTS if v.task == "priority_sort_b8")
    curves = pd.DataFrame({"grid": GRID, "task": variant.task, "model": variant.model, "seed": 0,
                           "val_set": PRIORITY_SORT_SET, "sequences": [80_000, 600_000], "updates": [10_000, 75_000],
                           "cost_bits": [81.0, 20.0]})
    assert diagnosis.sequence_limit(curves, [variant], "priority_sort") == 1.05 * 1_000_000
    longer = curves.assign(sequences=[80_000, 1_200_000])
    assert diagnosis.sequence_limit(longer, [variant], "priority_sort") == 1.05 * 1_200_000
    repeat_copy = training_curves(fake_results(tmp_path))
    assert diagnosis.sequence_limit(repeat_copy, REPEAT_COPY_VARIANTS, "repeat_copy") == 1.05 * 300_000


def test_the_configuration_found_draws_each_seed_apart(tmp_path, monkeypatch):
    """The text names seeds one by one: each seed a colour, a line style and a legend entry of its own."""
    from mann_zoo.experiments import diagnosis

    figures = []
    monkeypatch.setattr(diagnosis, "save_figure", lambda fig, path: figures.append(fig))
    found = next(v for v in REPEAT_COPY_VARIANTS if v.task == FOUND_TASK)
    diagnosis.curves_figure(training_curves(fake_results(tmp_path)), [found], "repeat_copy", tmp_path / "f.png",
                            seeds_apart=True)
    [fig] = figures
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels[:2] == [f"{found.label}: seed 0", f"{found.label}: seed 1"]
    seeds = fig.axes[0].get_lines()[:2]
    assert seeds[0].get_linestyle() != seeds[1].get_linestyle() and seeds[0].get_color() != seeds[1].get_color()
    assert fig.axes[0].get_xlim() == (0, 1.05 * 300_000)


def test_the_diagnosis_figures_zoom_on_the_plateau(tmp_path, monkeypatch):
    """The hypotheses that stay on the plateau lie within a few bits of each other: a third panel shows
    them on linear axes, each with a marker of its own."""
    from mann_zoo.experiments import diagnosis

    figures = []
    monkeypatch.setattr(diagnosis, "save_figure", lambda fig, path: figures.append(fig))
    diagnosis.curves_figure(training_curves(fake_results(tmp_path)), REPEAT_COPY_VARIANTS, "repeat_copy",
                            tmp_path / "f.png", zoom=diagnosis.PLATEAU_ZOOM["repeat_copy"])
    [fig] = figures
    zoom = fig.axes[2]
    assert zoom.get_yscale() == "linear" and zoom.get_ylim() == (185.0, 245.0)
    plateau = [v for v in REPEAT_COPY_VARIANTS if v.task == "repeat_copy" and v.grid == GRID]
    assert len({(v.colour, v.marker) for v in plateau}) == len(plateau)
    assert len({v.colour for v in REPEAT_COPY_VARIANTS if v.drawn_by is None}) == len(
        [v for v in REPEAT_COPY_VARIANTS if v.drawn_by is None])  # no two drawn lines share a colour

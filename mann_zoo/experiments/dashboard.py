"""``mann-zoo dashboard --entity E --project P``: a saved W&B workspace that compares the models.

    mann-zoo dashboard --entity my-team --project mann-zoo                 # the default grid's tasks
    mann-zoo dashboard --entity my-team --project mann-zoo --preset paper  # the reproduction grid's
    mann-zoo dashboard ... --dry-run                                       # print the panels, save nothing

One section per task of the grid with its learning curves against sequences seen (bit errors and cost
on the training distribution, bit errors on every generalisation set); a section with each run's bit
errors against sequence length (its logged table) and the results (sequences trained and to
convergence, time, ms per step, parameters); a section for ``mann-zoo bench cost`` (ms per step against
memory slots N). Runs are grouped and coloured by task and model (W&B's group and job type). Every panel reads a key the runs log (``results.py`` names them). Saving needs a W&B account
(``wandb login``) and the runs synced (``wandb sync``); building the workspace does not.
"""

from __future__ import annotations

from ..console import CommandParser, fail, first_line
from .grid import Grid
from .results import COST_TABLE, GENERALISATION_PLOT, SUMMARY_KEYS, metric_key

SEQUENCES = "train/sequences"  # the x axis of every learning curve


def task_sets(grid: Grid) -> dict[str, list[str]]:
    """Per task of ``grid`` (its datamodule's name), the names of its validation sets, training distribution first."""
    from ..training.cli import build_task_and_core, parse_fit

    sets: dict[str, list[str]] = {}
    for run in grid.runs:
        task, _ = build_task_and_core(parse_fit(list(run.args)))
        sets.setdefault(task.name, task.val_names)
    return sets


def build_workspace(entity: str, project: str, sets: dict[str, list[str]], name: str = "mann-zoo: head to head"):
    """The workspace (a ``wandb_workspaces.workspaces.Workspace``, not saved) for tasks with validation
    sets ``sets`` ({task: [set names]})."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    sections = []
    for task, names in sets.items():  # the validation sets' names are the task's own: its runs only
        first = names[0]
        panels = [
            wr.LinePlot(title=f"{task}: bit errors per sequence on {first} (the training distribution)",
                        x=SEQUENCES, y=[metric_key(first, "bit_errors")]),
            wr.LinePlot(title=f"{task}: cost per sequence (bits) on {first}", x=SEQUENCES,
                        y=[metric_key(first, "cost_bits")], log_y=True),
            *(wr.LinePlot(title=f"{task}: bit errors per sequence on {name}", x=SEQUENCES,
                          y=[metric_key(name, "bit_errors")]) for name in names[1:]),
        ]
        sections.append(ws.Section(name=task, panels=panels, is_open=True))
    sections.append(ws.Section(name="generalisation and results (every task)", is_open=True, panels=[
        wr.CustomChart.from_table(GENERALISATION_PLOT + "_table", chart_fields={"x": "steps", "y": "bit_errors"},
                                  chart_strings={"title": "bit errors per sequence against sequence steps"}),
        *(wr.ScalarChart(title=key.replace("_", " "), metric=wr.SummaryMetric(key)) for key in SUMMARY_KEYS),
    ]))
    sections.append(ws.Section(name="cost per step (mann-zoo bench cost)", panels=[
        wr.CustomChart.from_table(COST_TABLE, chart_fields={"x": "memory_slots", "y": "step_ms"},
                                  chart_strings={"title": "ms per training step against memory slots N"})]))
    # Runs grouped (and coloured) by task and model: W&B's group is the task, the job type the model.
    runset = ws.RunsetSettings(groupby=[ws.Metric("Group"), ws.Metric("JobType")])
    return ws.Workspace(entity=entity, project=project, name=name, sections=sections, runset_settings=runset)


def panel_keys(workspace) -> set[str]:
    """Every logged key that a panel of ``workspace`` reads (line plots' axes, scalar charts' summary
    metrics, custom charts' tables)."""
    keys: set[str] = set()
    for section in workspace.sections:
        for panel in section.panels:
            for axis in ([panel.x] if getattr(panel, "x", None) else []) + list(getattr(panel, "y", []) or []):
                keys.add(str(getattr(axis, "name", axis)))
            metric = getattr(panel, "metric", None)
            if metric:
                keys.add(str(getattr(metric, "name", metric)))
            table = (getattr(panel, "query", None) or {}).get("summaryTable", {}).get("tableKey")
            if table:
                keys.add(table)
    return keys


def main(argv: list[str] | None = None) -> None:
    from ..configs import CONFIGS, shipped
    from .grid import GridError, load_grid

    parser = CommandParser("mann-zoo dashboard", __doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--entity", required=True, help="W&B entity (user or team)")
    parser.add_argument("--project", default="mann-zoo", help="W&B project the runs were synced to")
    parser.add_argument("--preset", default="default", help=f"the grid whose tasks get sections ({', '.join(shipped('bench'))})")
    parser.add_argument("--name", default="mann-zoo: head to head", help="the workspace's name")
    parser.add_argument("--dry-run", action="store_true", help="print the sections and panels, save nothing")
    args = parser.parse_args(argv)
    path = CONFIGS / "bench" / f"{args.preset}.yaml"
    if not path.is_file():
        fail(f"--preset {args.preset!r} is not one of {', '.join(shipped('bench'))}")
    try:
        grid = load_grid(path, check=False)
    except GridError as error:
        fail(str(error))
    workspace = build_workspace(args.entity, args.project, task_sets(grid), args.name)
    for section in workspace.sections:
        print(f"{section.name}:")
        for panel in section.panels:
            print(f"  {getattr(panel, 'title', None) or type(panel).__name__}")
    if args.dry_run:
        return
    try:
        saved = workspace.save()
    except Exception as error:  # noqa: BLE001 - no account, no network, no such project: one line
        fail(f"--entity {args.entity} --project {args.project}: the workspace was not saved "
             f"({type(error).__name__}: {first_line(str(error))[:160]})")
    print(f"saved: {getattr(saved, 'url', '')}")

"""The command line: short fits of every model on every task, checkpoints, logs, resume, load_model,
DDP with two CPU processes, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch  # noqa: F401  (imported here, Lightning's log handler binds pytest's stderr, not a capsys one)
import pandas as pd
import pytest
import torch

import mann_zoo
from mann_zoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {
    "ntm": ["--model.core.init_args.controller_size", "12", "--model.core.init_args.memory_slots", "8",
            "--model.core.init_args.word_size", "4"],
    "dnc": ["--model.core.init_args.controller_size", "12", "--model.core.init_args.memory_slots", "8",
            "--model.core.init_args.word_size", "4"],
    "lstm": ["--model.core.init_args.controller_size", "12", "--model.core.init_args.controller_layers", "1"],
}
TINY_TASK = {
    "copy": ["--data.max_length", "3", "--data.val_lengths", "[5]"],
    "repeat_copy": ["--data.max_length", "3", "--data.max_repeats", "2", "--data.val_lengths_repeats", "[[3, 3]]"],
    "associative_recall": ["--data.max_items", "3", "--data.val_items", "[4]"],
    "ngrams": ["--data.sequence_length", "20"],
    "priority_sort": ["--data.num_inputs", "5", "--data.num_outputs", "3"],
}
QUICK = ["--data.batch_size", "3", "--data.num_val_sequences", "4", "--trainer.max_steps", "2",
         "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false"]


def fit_args(task: str, model: str, root: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(ROOT / f"configs/task/{task}.yaml"), "--config", str(ROOT / f"configs/model/{model}.yaml"),
            *TINY_MODEL[model], *TINY_TASK[task], *QUICK, "--trainer.default_root_dir", str(root), *extra]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.mark.parametrize("task", list(TINY_TASK))
@pytest.mark.parametrize("model", list(TINY_MODEL))
def test_short_fit_writes_checkpoint_csv_and_wandb(task, model, tmp_path):
    main(fit_args(task, model, tmp_path))
    run = tmp_path / f"{task}-{model}" / "seed0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "wandb").glob("offline-run-*")), "no W&B offline run"
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert any(h.startswith("val/") and h.endswith("/cost_bits") for h in header)
    values = [float(v) for line in lines[1:] for v in line.split(",") if v not in ("",)]
    assert values and all(torch.isfinite(torch.tensor(values)))


def resumable_args(root: Path, steps: int, *extra: str) -> list[str]:
    """A copy NTM run of ``steps`` steps with a validation (and checkpoint) every 5."""
    return fit_args("copy", "ntm", root, "--trainer.max_steps", str(steps), "--trainer.val_check_interval", "5", *extra)


def last_checkpoint(root: Path) -> dict:
    return torch.load(root / "copy-ntm/seed0/checkpoints/last.ckpt", weights_only=True)


def logged_steps(root: Path) -> list[int]:
    return pd.read_csv(root / "copy-ntm/seed0/metrics.csv")["step"].tolist()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The 20-step run that the resumed runs below must end as, trained once for them all."""
    root = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        main(resumable_args(root, 20))
    return root


def assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    """Bit for bit the same parameters at step 20, and every step logged once, as in the uninterrupted run."""
    once, again = last_checkpoint(uninterrupted), last_checkpoint(resumed)
    assert once["global_step"] == again["global_step"] == 20
    for key, value in once["state_dict"].items():
        torch.testing.assert_close(again["state_dict"][key], value, rtol=0, atol=0, msg=key)
    assert logged_steps(resumed) == logged_steps(uninterrupted)
    assert 4 in logged_steps(resumed) and 19 in logged_steps(resumed)


def test_resume_continues_exactly(tmp_path, uninterrupted):
    """Trained to step 10, then resumed to 20: the same run, and its CSV log keeps the curve from before.
    It resumes with another compile_steps, an execution argument (how a step runs, not what it computes),
    which comes from the command line, not from the checkpoint (unlike the core's other arguments). (Here it
    changes nothing: the NTM's sequence kernel trains whatever compile_steps says. Switching to the step
    path instead would change the run by rounding, and this test asks for the same bits.)"""
    main(resumable_args(tmp_path, 10))
    checkpoint = tmp_path / "copy-ntm/seed0/checkpoints/last.ckpt"  # a file: its hyperparameters are read
    main(resumable_args(tmp_path, 20, "--ckpt_path", str(checkpoint), "--model.core.init_args.compile_steps", "3"))
    assert_same_run(tmp_path, uninterrupted)
    assert last_checkpoint(tmp_path)["hyper_parameters"]["core"]["init_args"]["compile_steps"] == 3


def test_the_core_a_command_names_is_read_from_a_short_name_or_a_class_path():
    """What decides whether a resumed core takes the command's compile settings (``_parse_ckpt_path``)."""
    from jsonargparse import Namespace

    from mann_zoo.models import CoreSpec
    from mann_zoo.training.cli import _core_given, _same_class

    by_name = _core_given("ntm")
    by_path = _core_given(Namespace(class_path="mann_zoo.models.ntm.NTM", init_args=Namespace(compile_steps=2)))
    assert by_path.init_args == {"compile_steps": 2}
    assert _same_class(by_name, by_path) and _same_class(by_path, CoreSpec("mann_zoo.models.NTM"))
    assert not _same_class(by_name, _core_given("dnc")) and not _same_class(by_name, CoreSpec("no_such.Core"))


def test_a_run_stopped_by_sigterm_resumes_at_the_step_it_stopped(tmp_path, monkeypatch, uninterrupted):
    """SIGTERM at step 7, between validations (every 5 steps): the checkpoint is written at the stop, so no
    step is lost. Resumed and stopped again at the end of the validation at step 15: that validation's
    checkpoint stands (Lightning counts it differently from one written after a step). Resumed to 20, the
    run ends as the uninterrupted one, bit for bit, each step logged once."""
    import signal

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from mann_zoo.training.lightning_module import SequenceModel

    def stop_at(hook: str, step: int, *extra: str) -> None:
        original = getattr(SequenceModel, hook)

        def stopping(self, *hook_args):
            original(self, *hook_args)
            if self.trainer.global_step == step and not self.trainer.sanity_checking:
                assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "no handler: would end pytest"
                os.kill(os.getpid(), signal.SIGTERM)

        with monkeypatch.context() as patch:
            patch.setattr(SequenceModel, hook, stopping)
            with pytest.raises((SIGTERMException, SystemExit)):
                main(resumable_args(tmp_path, 20, *extra))
        assert last_checkpoint(tmp_path)["global_step"] == step

    stop_at("on_train_batch_end", 7)
    stop_at("on_validation_end", 15, "--ckpt_path", "last")
    main(resumable_args(tmp_path, 20, "--ckpt_path", "last"))
    assert_same_run(tmp_path, uninterrupted)


def test_load_model_returns_the_trained_core(tmp_path):
    main(fit_args("copy", "dnc", tmp_path))
    path = tmp_path / "copy-dnc/seed0/checkpoints/last.ckpt"
    core = mann_zoo.load_model(path)
    assert not core.training and type(core).__name__ == "DNC"
    state = torch.load(path, weights_only=True)["state_dict"]
    for name, value in core.state_dict().items():
        torch.testing.assert_close(value, state[f"core.{name}"])
    assert core(torch.rand(2, 5, 9)).shape == (2, 5, 8)
    with pytest.raises(FileNotFoundError, match="checkpoint_path"):
        mann_zoo.load_model(tmp_path / "missing.ckpt")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``mann-zoo ARGS`` in this process (a subprocess costs ~8 s of imports): exit status, stdout, stderr
    (``capsys``, or ``capfd`` for what is written to the file descriptors too)."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_info:
        code = 0 if exit_info.code is None else exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 240, pythonpath: Path | None = None
            ) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "mann_zoo.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)


@pytest.mark.parametrize(
    "extra, field",
    [
        (["--model.core", "gru"], "core"),
        (["--model.core", "my_pkg.MissingCore"], "my_pkg.MissingCore"),
        (["--data", "tasks.SortingTask"], "data"),
        (["--data.min_length", "30", "--data.max_length", "20"], "min_length"),
        (["--model.core.init_args.memory_slots", "0"], "memory_slots"),
        (["--model.core.init_args.shift_range", "2"], "shift_range"),
        (["--model.core.init_args.memory_slotz", "8"], "memory_slotz"),
    ],
)
def test_bad_input_is_a_one_line_error(extra, field, tmp_path, capsys, caplog):
    """In-process (a subprocess each cost ~9 s of imports); test_malformed_yaml_is_a_one_line_error checks the
    same through a real process. Any exception other than the exit would fail the test with its traceback."""
    code, _, stderr = cli(capsys, *fit_args("copy", "ntm", tmp_path, *extra))
    assert code != 0
    assert "Traceback" not in stderr + caplog.text  # printed, or logged (Lightning's handler writes elsewhere)
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("mann-zoo: error:")]
    assert len(errors) == 1 and field in errors[0], stderr
    assert not (tmp_path / "copy-ntm").exists(), "bad input started a run"


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--model.core.init_args.memory_slotz", "8"],
         "--model.core.init_args.memory_slotz: NTM has no argument 'memory_slotz' (did you mean 'memory_slots'?)"),
        (["--model.core.init_args.memory_slots", "abc"], "--model.core.init_args.memory_slots: expected int, default 128; got 'abc'"),
        (["--trainer.max_stepz", "3"], "--trainer.max_stepz: Trainer has no argument 'max_stepz' (did you mean 'max_steps'?)"),
        (["--modle.lr", "3"], "--modle.lr: unknown option; accepted: --model.*"),
        (["--data.init_args.bits", "-1"], "CopyTask: bits must be >= 1, got -1"),
        (["--data", "tasks.SortingTask"], "--data: class path 'tasks.SortingTask' cannot be imported; accepted: tasks.CopyTask"),
        (["--optimizer", "torch.optim.RMSprop", "--optimizer.init_args.momentm", "0.9"],
         "--optimizer.init_args.momentm: RMSprop has no argument 'momentm' (did you mean 'momentum'?)"),
        (["--optimizer.init_args.lr", "3e-5", "--optimizer", "torch.optim.RMSprop"],
         "--optimizer.init_args.lr: given before --optimizer names its class; name the class first"),
        # The config file's NTM arguments do not count once the core is another class.
        (["--model.core", "lstm", "--model.core.init_args.memory_slots", "4"],
         "--model.core.init_args.memory_slots: LSTMBaseline has no argument 'memory_slots'; its arguments: controller_size"),
    ],
)
def test_errors_name_the_argument_from_the_signatures(extra, expected, tmp_path):
    """The one-line error is built from the user's tokens and the configured classes' signatures (or, for a
    check inside one of our classes, from that exception), not from the parser's wording."""
    from mann_zoo.configs import resolve_config_files
    from mann_zoo.training.arguments import explain
    from mann_zoo.training.cli import parse_fit_args

    args = resolve_config_files(fit_args("copy", "ntm", tmp_path, *extra)[1:])  # without "fit"
    [error] = parse_fit_args([args])
    assert error is not None
    assert explain(args, error).startswith(expected)


def test_command_errors_name_the_option_from_its_declaration():
    from pathlib import Path as P

    from mann_zoo.console import CommandParser

    parser = CommandParser("mann-zoo test", "a test")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", type=P)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    cases = {("--jobs", "x"): "--jobs: expected int; got x", ("--jobs=y",): "--jobs: expected int; got y",
             ("--seeds", "1", "z"): "--seeds: expected int values; got 1 z", ("--seeds",): "--seeds: needs a value",
             ("--jobz", "1"): "--jobz: unknown option (did you mean --jobs?)",
             ("--device", "tpu"): "--device: expected one of cpu, cuda; got tpu"}
    for given, expected in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(list(given))
        assert exit_info.value.code == 2
    for given, expected in cases.items():
        parser._given = list(given)
        assert parser.explain("upstream text") == expected, given


def test_malformed_yaml_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  core: ntm\n   memory_slots: [1, 2\n")
    result = run_cli("fit", "--config", str(bad), "--trainer.default_root_dir", str(tmp_path))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("mann-zoo: error:")]
    assert len(errors) == 1 and "bad.yaml" in errors[0], result.stderr


def test_help_is_useful(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "fit" in out and "configs/task/copy.yaml" in out
    code, out, _ = cli(capsys, "fit", "--help")
    assert code == 0 and "--model.core" in out and "--data" in out
    # A core's own arguments, documented, with their real defaults.
    code, out, err = cli(capsys, "fit", "--model.core.help", "mann_zoo.models.NTM")
    assert code == 0 and "--model.core.memory_slots" in out, err
    assert "default: 128" in out and "memory slots N" in " ".join(out.split())


def test_a_validated_option_says_what_it_accepts_in_the_help(capsys):
    """--device's type is a validating function: the help names what it accepts, not the function."""
    from mann_zoo.cli import main

    with pytest.raises(SystemExit):
        main(["speed", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "<function" not in help_text
    assert "type: a device this machine has (cpu, or cuda[:N] / mps where present)" in help_text


def test_ddp_two_cpu_processes_agree(tmp_path):
    """The same command under Lightning's DDP (gloo, two CPU processes): both ranks end with the same
    parameters, having drawn different batches."""
    result = run_cli(*fit_args("copy", "ntm", tmp_path, "--trainer.strategy", "ddp", "--trainer.devices", "2",
                               "--trainer.accelerator", "cpu", "--trainer.max_steps", "3",
                               "--trainer.callbacks+=mann_zoo.training.callbacks.ParameterDigest",
                               "--trainer.callbacks.dirpath", str(tmp_path / "digest")), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    digests = [json.loads((tmp_path / "digest" / f"parameter_digest_rank{r}.json").read_text()) for r in (0, 1)]
    assert digests[0]["world_size"] == 2 and digests[0]["step"] == 3
    same = lambda digest: {k: v for k, v in digest.items() if k not in ("rank", "batch_sums")}  # noqa: E731
    assert same(digests[0]) == same(digests[1])
    # Each rank trained on batches of its own: none of the three is the same on both.
    assert len(digests[0]["batch_sums"]) == len(digests[1]["batch_sums"]) == 3
    assert all(a != b for a, b in zip(digests[0]["batch_sums"], digests[1]["batch_sums"]))


def test_curriculum_raises_the_length_when_mastered(tmp_path):
    """With a threshold no model misses, the curriculum climbs from 2 to the task's maximum 5 and the
    state travels in the checkpoint."""
    main(fit_args("copy", "lstm", tmp_path, "--data.max_length", "5", "--data.curriculum_max_length", "2",
                  "--trainer.max_steps", "4", "--trainer.val_check_interval", "4",
                  "--trainer.callbacks+=mann_zoo.training.callbacks.Curriculum", "--trainer.callbacks.threshold", "1000",
                  "--trainer.callbacks.increment", "1", "--trainer.callbacks.smoothing", "1"))
    checkpoint = torch.load(tmp_path / "copy-lstm/seed0/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["CopyTask"]["curriculum_max_length"] == 5


def test_curriculum_waits_one_time_constant_between_changes():
    """Every batch below the threshold: with smoothing 0.25 the length grows once per 4 steps, not once
    per step (the batch fetched ahead of a change still has the old length)."""
    from types import SimpleNamespace

    from mann_zoo.training.callbacks import Curriculum
    from tasks import CopyTask

    task = CopyTask(max_length=20, curriculum_max_length=2)
    logged = []
    module = SimpleNamespace(log=lambda name, value, **kwargs: logged.append(value))
    trainer = SimpleNamespace(datamodule=task, callback_metrics={"train/bit_errors": torch.tensor(0.0)})
    curriculum = Curriculum(threshold=0.5, increment=3, smoothing=0.25)
    for _ in range(12):
        curriculum.on_train_batch_end(trainer, module, None, None, 0)
    assert logged == [2.0] * 3 + [5.0] * 4 + [8.0] * 4 + [11.0]


def test_curriculum_rejects_bad_arguments():
    from mann_zoo.training.callbacks import Curriculum

    for kwargs, field in ((dict(threshold=0), "threshold"), (dict(increment=0), "increment"), (dict(smoothing=2), "smoothing")):
        with pytest.raises(ValueError, match=field):
            Curriculum(**kwargs)


OUTSIDE_CORE = """
import torch


class EchoCore(torch.nn.Module):
    \"\"\"A core defined outside mann-zoo.

    Args:
        input_size: width of the input.
        output_size: width of the logits.
        width: hidden units.
    \"\"\"

    def __init__(self, input_size: int, output_size: int, width: int = 5):
        super().__init__()
        self.width = width
        self.net = torch.nn.Sequential(torch.nn.Linear(input_size, width), torch.nn.Tanh(),
                                       torch.nn.Linear(width, output_size))

    def forward(self, x):
        return self.net(x)
"""


def test_a_core_from_another_package_trains_by_class_path_and_loads(tmp_path, monkeypatch):
    """No registration: ``--model.core my_cores.EchoCore`` with its own argument, then ``load_model``."""
    (tmp_path / "my_cores.py").write_text(OUTSIDE_CORE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", "configs/task/copy.yaml", "--model.core", "my_cores.EchoCore",
          "--model.core.init_args.width", "7", *TINY_TASK["copy"], *QUICK, "--trainer.default_root_dir", str(tmp_path / "runs")])
    sys.modules.pop("my_cores")  # load_model imports the class itself, as in a new process
    core = mann_zoo.load_model(tmp_path / "runs" / "copy-echocore" / "seed0" / "checkpoints" / "last.ckpt")
    assert type(core).__name__ == "EchoCore" and core.width == 7 and not core.training
    assert "my_cores" in sys.modules
    sys.modules.pop("my_cores")


def test_short_names_stand_for_a_class_path_and_its_defaults(tmp_path):
    """``--model.core dnc_md`` is the DNC with the three improvements; later init_args refine it."""
    main(["fit", "--config", str(ROOT / "configs/task/copy.yaml"), "--model.core", "dnc_md",
          *TINY_MODEL["dnc"], *TINY_TASK["copy"], *QUICK, "--trainer.default_root_dir", str(tmp_path)])
    hparams = torch.load(tmp_path / "copy-dnc_md/seed0/checkpoints/last.ckpt", weights_only=True)["hyper_parameters"]
    assert hparams["core"]["class_path"] == "mann_zoo.models.DNC"
    init_args = hparams["core"]["init_args"]
    assert init_args["masking"] and init_args["deallocation"] and init_args["link_sharpness"]
    assert init_args["memory_slots"] == 8


def test_shipped_configs_are_found_from_any_folder(tmp_path, monkeypatch, capsys):
    """From a folder without configs/, ``--config configs/task/copy.yaml`` and ``task/copy`` name the
    shipped files."""
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "fit", "--config", "configs/task/copy.yaml", "--config", "model/lstm", *TINY_MODEL["lstm"],
                       *TINY_TASK["copy"], *QUICK, "--trainer.default_root_dir", str(tmp_path / "runs"))
    assert code == 0, err[-3000:]
    assert (tmp_path / "runs" / "copy-lstm" / "seed0" / "checkpoints" / "last.ckpt").is_file()
    code, _, err = cli(capsys, "fit", "--config", "task/nonesuch")
    errors = [line for line in err.splitlines() if line.startswith("mann-zoo: error:")]
    assert code != 0 and len(errors) == 1 and "task/nonesuch" in errors[0], err


@pytest.mark.parametrize("checkpoint", sorted((ROOT / "paper" / "results").glob("*/models/*.ckpt")),
                         ids=lambda path: f"{path.parents[1].name}/{path.stem}")
def test_committed_checkpoints_load_strictly(checkpoint):
    """The kept models of paper/results (saved before cores had class paths) load, every weight present."""
    core = mann_zoo.load_model(checkpoint)
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert set(core.state_dict()) == {k.removeprefix("core.") for k in state if k.startswith("core.")}
    assert torch.isfinite(core(torch.rand(2, 3, core.input_size))).all()


def test_dnc_and_dnc_md_runs_have_folders_of_their_own(tmp_path):
    """The most specific short name names the run: the DNC with its three switches is dnc_md."""
    for config in ("dnc", "dnc_md"):
        main(["fit", "--config", str(ROOT / "configs/task/copy.yaml"), "--config", str(ROOT / f"configs/model/{config}.yaml"),
              *TINY_MODEL["dnc"], *TINY_TASK["copy"], *QUICK, "--trainer.default_root_dir", str(tmp_path)])
    assert (tmp_path / "copy-dnc/seed0/checkpoints/last.ckpt").is_file()
    assert (tmp_path / "copy-dnc_md/seed0/checkpoints/last.ckpt").is_file()


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # Lightning, on validating into another folder
def test_validate_keeps_the_training_curve_and_reads_old_checkpoints(tmp_path, capsys):
    """validate writes its metrics in a folder of its own; a checkpoint file from before cores had class
    paths (hyperparameters: a short name and the core's arguments beside it) is read through them."""
    main(fit_args("copy", "ntm", tmp_path))
    log = tmp_path / "copy-ntm/seed0/metrics.csv"
    before = log.read_text()
    main(["validate", *fit_args("copy", "ntm", tmp_path)[1:], "--ckpt_path", "last"])
    assert log.read_text() == before
    assert (tmp_path / "copy-ntm/seed0/validate/metrics.csv").is_file()
    checkpoint = torch.load(tmp_path / "copy-ntm/seed0/checkpoints/last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"] = {"name": "ntm", "input_size": 9, "output_size": 8, "controller_size": 12,
                                      "memory_slots": 8, "word_size": 4, "memory_init": None, "compile": False,
                                      "extra": None, "lr": 1e-3}
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    code, _, err = cli(capsys, "validate", "--config", str(ROOT / "configs/task/copy.yaml"), *TINY_TASK["copy"], *QUICK,
                       "--trainer.default_root_dir", str(tmp_path / "old"), "--ckpt_path", str(old))
    assert code == 0, err[-3000:]


def test_map_option_changes_both_forms_of_an_option_and_nothing_else():
    from mann_zoo.console import map_option

    args = ["--config", "a", "--config=b", "-c", "c", "--configs", "d", "--data.x=e", "--config"]
    assert map_option(args, ("--config", "-c"), str.upper) == [
        "--config", "A", "--config=B", "-c", "C", "--configs", "d", "--data.x=e", "--config"]


def test_a_memory_smaller_than_the_task_is_a_warning(capsys):
    from mann_zoo.models import DNC, NTM
    from mann_zoo.training.cli import warn_if_memory_too_small
    from tasks import AssociativeRecallTask, CopyTask, NgramsTask, PrioritySortTask, RepeatCopyTask

    assert CopyTask(max_length=20, val_lengths=[50]).vectors_to_hold() == 50
    assert RepeatCopyTask(max_length=10, val_lengths_repeats=[[20, 10]]).vectors_to_hold() == 20
    assert AssociativeRecallTask(max_items=6, val_items=[12], item_length=3).vectors_to_hold() == 36
    assert PrioritySortTask(num_inputs=20, val_sizes=[]).vectors_to_hold() == 20
    assert NgramsTask().vectors_to_hold() is None
    task = CopyTask(max_length=20, val_lengths=[50])
    warn_if_memory_too_small(task, NTM(9, 8, memory_slots=64))
    assert capsys.readouterr().err == ""
    warn_if_memory_too_small(task, DNC(9, 8, memory_slots=16))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: copy: examples of up to 50 vectors" in err and "16 memory slots" in err


def test_what_fit_and_validate_print(tmp_path, capfd, caplog):
    """fit: the bar shows the training bit errors and cost, not v_num, and counts to max_steps across a resume;
    the run folder is named at the end; no litlogger tip, no W&B 'anonymous' warning. validate: our table
    of scores per set. A closed pipe ends a command quietly. (The first fit and validate run in this process,
    their output caught at the file descriptors; the resumed fit in a process of its own.)"""
    quick = fit_args("copy", "ntm", tmp_path)
    quick[quick.index("--trainer.enable_progress_bar") + 1] = "true"
    code, first_out, first_err = cli(capfd, *quick)
    assert code == 0, first_err[-2000:]
    longer = list(quick)
    longer[longer.index("--trainer.max_steps") + 1] = "4"
    resumed = run_cli(*longer, "--ckpt_path", "last")
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0 and "4/4" in out and "bit errors" in out and "v_num" not in out, out[-2000:]
    assert f"run saved in {tmp_path / 'copy-ntm/seed0'}" in resumed.stderr
    in_process = first_out + first_err + caplog.text  # Lightning's tips are log records (its handler: not capfd's)
    assert "Seed set to 0" in caplog.text  # which caplog does see
    assert "litlogger" not in out + in_process and "anonymous" not in out + in_process
    code, validated, _ = cli(capfd, "validate", *quick[1:], "--ckpt_path", "last")
    assert code == 0 and "bit errors/seq" in validated and "len_5" in validated
    closed = subprocess.Popen([sys.executable, "-m", "mann_zoo.cli", "--help"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=ROOT)
    closed.stdout.close()
    assert closed.wait(timeout=60) in (0, 141) and b"Traceback" not in closed.stderr.read()

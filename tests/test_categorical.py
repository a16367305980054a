"""Categorical tasks in the training path (issue 13, point 1): one-hot class targets scored by cross-entropy,
token and sequence accuracy under the same metric names as the bit tasks; the Chomsky-hierarchy protocol
(one length per batch, unpadded validation batches, blank output steps)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mann_zoo.training.lightning_module import SequenceModel, bit_scores, class_scores, sequence_scores
from tasks import ParityCheckTask

ROOT = Path(__file__).resolve().parents[1]


def test_class_scores_by_hand():
    """Two sequences of three steps, three classes; step 0 is not scored. Sequence 0: step 1 right with
    p = 1/2 (logits log 2, 0, 0 -> softmax 1/2, 1/4, 1/4), step 2 wrong (arg-max class 0, target class 2
    with p = 1/4): cost 1 + 2 = 3 bits, 1 wrong token, token accuracy 1/2. Sequence 1: both right with
    uniform-but-one logits (arg-max class 1, p = 1/2 each): 2 bits, no error."""
    half = [math.log(2.0), 0.0, 0.0]
    logits = torch.tensor([[[9.0, 9.0, 9.0], half, half],
                           [[0.0, 0.0, 0.0], [0.0, math.log(2.0), 0.0], [0.0, math.log(2.0), 0.0]]])
    targets = torch.zeros(2, 3, 3)
    targets[0, 1, 0] = targets[0, 2, 2] = targets[1, 1, 1] = targets[1, 2, 1] = 1.0
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    scores = class_scores(logits, targets, mask)
    torch.testing.assert_close(scores["cost_bits"], torch.tensor([3.0, 2.0]))
    torch.testing.assert_close(scores["bit_errors"], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(scores["token_accuracy"], torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(scores["seq_accuracy"], torch.tensor([0.0, 1.0]))
    assert sequence_scores(logits, targets, mask, "classes")["cost_bits"].tolist() == scores["cost_bits"].tolist()


def test_bit_scores_token_accuracy_counts_whole_vectors():
    """A scored step is right when every bit of its vector is: sequence 0 has one wrong bit in one of two
    scored steps (token accuracy 1/2, 1 bit error); an unscored step's errors do not count."""
    logits = torch.tensor([[[5.0, -5.0], [5.0, 5.0], [-5.0, -5.0]]]).repeat(2, 1, 1)
    targets = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]]]).repeat(2, 1, 1)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    scores = bit_scores(logits, targets, mask)
    torch.testing.assert_close(scores["bit_errors"], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(scores["token_accuracy"], torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(scores["seq_accuracy"], torch.tensor([0.0, 1.0]))


def test_class_scores_are_finite_for_huge_logits_and_the_loss_has_a_gradient():
    logits = torch.tensor([[[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]]], requires_grad=True)
    targets = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]])
    scores = class_scores(logits, targets, torch.ones(1, 2))
    assert all(torch.isfinite(value).all() for value in scores.values())
    scores["cost_bits"].sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_scoring_is_checked():
    with pytest.raises(ValueError, match="scoring must be one of bits, classes, got 'tokens'"):
        SequenceModel("lstm", 3, 2, scoring="tokens")
    with pytest.raises(ValueError, match="scoring must be one of bits, classes, got 'class'"):
        sequence_scores(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), torch.ones(1, 1), "class")


def test_a_model_whose_scoring_is_not_the_tasks_stops_before_training():
    """Outside the command line (which links the task's scoring into the model) a model built with the
    default bit scoring for a categorical task would train binary cross-entropy on one-hot targets."""
    import lightning as L

    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    with pytest.raises(ValueError, match="scoring: the model scores 'bits' but the task ParityCheckTask has scoring 'classes'"):
        trainer.fit(SequenceModel("lstm", 3, 2), datamodule=ParityCheckTask(batch_size=2, num_val_sequences=2))


def test_parity_check_format_by_hand():
    """Input 1 0 1 then one blank step (channel 2); the target on the blank step is class 0 (two 1s)."""
    task = ParityCheckTask(batch_size=2)
    batch = task.encode(torch.tensor([[1, 0, 1], [1, 1, 1]]), torch.tensor([[0], [1]]))
    assert batch.inputs.shape == (2, 4, 3) and batch.targets.shape == (2, 4, 2)
    assert batch.inputs[0].argmax(dim=-1).tolist() == [1, 0, 1, 2] and batch.inputs.sum(dim=-1).eq(1).all()
    assert batch.mask.tolist() == [[0, 0, 0, 1]] * 2
    assert batch.targets[:, 3].tolist() == [[1, 0], [0, 1]] and not batch.targets[:, :3].any()
    tokens, outputs = task.sample(torch.Generator().manual_seed(0), 64, 9)
    assert torch.equal(outputs[:, 0], tokens.sum(dim=1) % 2)


def test_chomsky_batches_have_one_length_and_validation_covers_the_range():
    """Training: one length per batch (the paper's loop), drawn from 1-40. Validation: no padding (every
    batch one length), and the training-distribution set has every length 1-40, 5 sequences each."""
    task = ParityCheckTask(batch_size=4, num_val_sequences=200, val_batch_size=16, val_lengths=(45,))
    lengths = {task.train_batch(i).inputs.shape[1] - 1 for i in range(30)}
    assert len(lengths) > 10 and min(lengths) >= 1 and max(lengths) <= 40
    first, longer = task.val_sets
    assert first.name == "len_1-40" and longer.name == "len_45" and first.num_sequences == 200
    assert all(batch.mask.sum(dim=1).eq(1).all() for batch in first.batches)  # one output step, no padding
    assert sorted(batch.inputs.shape[1] - 1 for batch in first.batches) == list(range(1, 41))
    assert {batch.inputs.shape[0] for batch in first.batches} == {5}
    assert {batch.inputs.shape[1] for batch in longer.batches} == {46}


def test_a_categorical_fit_logs_token_accuracy_and_keeps_its_scoring(tmp_path, monkeypatch):
    """mann-zoo fit on parity check: the model is told the task's scoring, the checkpoint keeps it, the
    run's result has token accuracy per set, and mann-zoo evaluate's scores read it back."""
    import json

    from mann_zoo import load_model
    from mann_zoo.cli import main
    from mann_zoo.experiments.evaluate import score_sets

    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", "--config", str(ROOT / "configs/task/parity_check.yaml"), "--model.core", "lstm",
          "--model.core.init_args.controller_size", "8", "--model.core.init_args.controller_layers", "1",
          "--data.batch_size", "4", "--data.num_val_sequences", "8", "--data.val_lengths", "[45]",
          "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp_path)])
    run = tmp_path / "parity_check-lstm" / "seed0"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["scoring"] == "classes"
    sets = json.loads((run / "result.json").read_text())["sets"]
    assert [s["val_set"] for s in sets] == ["len_1-40", "len_45"]
    assert all(0.0 <= s["token_accuracy"] <= 1.0 and s["bit_errors"] <= 1.0 for s in sets)
    scores = score_sets(load_model(run / "checkpoints" / "last.ckpt"),
                        ParityCheckTask(num_val_sequences=8, val_lengths=(45,)))
    assert scores["token_accuracy"].between(0, 1).all() and (scores["cost_bits"] > 0).all()


def test_a_core_that_takes_the_input_length_is_given_the_steps_before_the_first_scored_one():
    """The Tape-RNN jumps by the input's length: the training step, validation and mann-zoo evaluate give a
    core whose forward takes ``input_length`` the steps before each sequence's first scored step (a
    Chomsky-hierarchy string's length); other cores get the inputs alone."""
    from mann_zoo.training.lightning_module import core_logits

    class Spy(torch.nn.Module):
        def forward(self, x, input_length=None):
            self.seen = input_length
            return torch.zeros(*x.shape[:2], 2)

    task = ParityCheckTask()
    batch = task.encode(torch.tensor([[1, 0, 1], [0, 0, 1]]), torch.tensor([[0], [1]]))
    spy = Spy()
    core_logits(spy, batch.inputs, batch.mask)
    assert spy.seen.tolist() == [3, 3]
    plain = torch.nn.Linear(3, 2)
    torch.testing.assert_close(core_logits(plain, batch.inputs, batch.mask), plain(batch.inputs))


NEW_CORES = {  # the Chomsky-hierarchy suite's models, tiny (the Stack-RNN takes the Tape-RNN's path: MemoryCore)
    "transformer": ["--model.core.init_args.embedding_size", "8", "--model.core.init_args.layers", "1",
                    "--model.core.init_args.heads", "2", "--model.core.init_args.positional", "randomised"],
    "tape_rnn": ["--model.core.init_args.controller_size", "8", "--model.core.init_args.memory_slots", "8",
                 "--model.core.init_args.word_size", "2"],
    "stack_rnn": ["--model.core.init_args.controller_size", "8", "--model.core.init_args.memory_slots", "8",
                  "--model.core.init_args.word_size", "2"],
}


@pytest.mark.parametrize("core", list(NEW_CORES))
def test_the_suites_cores_train_on_a_categorical_task_and_reload(core, tmp_path, monkeypatch):
    """mann-zoo fit with each new core by its short name on reverse string (L outputs), and load_model
    rebuilds it from the checkpoint: the trained weights as saved (not a fresh initialisation), the same
    outputs at every load."""
    from mann_zoo import load_model
    from mann_zoo.cli import main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    main(["fit", "--config", str(ROOT / "configs/task/reverse_string.yaml"), "--model.core", core, *NEW_CORES[core],
          "--data.batch_size", "4", "--data.max_length", "6", "--data.num_val_sequences", "12",
          "--data.val_lengths", "[8]", "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
          "--trainer.default_root_dir", str(tmp_path)])
    [checkpoint] = tmp_path.glob(f"reverse_string-{core}/seed0/checkpoints/last.ckpt")
    model = load_model(checkpoint)
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    loaded = model.state_dict()
    assert loaded and all(torch.equal(value, saved[f"core.{name}"]) for name, value in loaded.items())
    x = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 9)), 3).float()
    torch.testing.assert_close(model(x), load_model(checkpoint)(x))
    assert model(x).shape == (2, 9, 2)


@pytest.mark.parametrize("name", ["binary_addition", "stack_manipulation", "mqar"])
def test_a_validation_set_is_the_same_whatever_the_validation_batch_size(name):
    """The named sets hold the same sequences at any val_batch_size (tasks.base's promise), also for the
    tasks that draw several random parts per sequence and make their validation batches themselves."""
    from tasks import build_task

    sizes = {"mqar": dict(vocabulary=16, sequence_length=8, pairs=2, val_settings=((12, 3),))}.get(
        name, dict(max_length=12, val_lengths=(20,)))

    def sequences(val_batch_size: int) -> list[tuple[torch.Tensor, ...]]:
        task = build_task(name, num_val_sequences=30, val_batch_size=val_batch_size, **sizes)
        return [example for s in task.val_sets for batch in s.batches for example in zip(*batch)]

    small, large = sequences(4), sequences(128)
    assert len(small) == len(large) == 60
    assert all(torch.equal(x, y) for a, b in zip(small, large) for x, y in zip(a, b))


def test_the_training_distributions_set_spreads_evenly_over_its_lengths():
    """64 sequences over lengths 1-40: every length once or twice, the doubles spread over the range (not
    all on the short lengths), mean length within half a step of the uniform 20.5."""
    task = ParityCheckTask(num_val_sequences=64)
    lengths = [batch.inputs.shape[1] - 1 for batch in task.val_sets[0].batches for _ in range(batch.inputs.shape[0])]
    counts = torch.bincount(torch.tensor(lengths))[1:]
    assert set(counts.tolist()) == {1, 2} and len(counts) == 40
    assert abs(sum(lengths) / len(lengths) - 20.5) < 0.5


@pytest.mark.parametrize("extra, expected", [
    (["--data.max_lenght", "5"], "--data.max_lenght: BucketSortTask has no argument 'max_lenght' (did you mean 'max_length'?)"),
    (["--data.max_length", "x"], "--data.max_length: expected int, default 40; got 'x'"),
    (["--data.vocab_size", "1.5"], "--data.vocab_size: expected int, default 5; got '1.5'"),
])
def test_a_task_that_passes_kwargs_to_its_base_still_gets_one_line_errors(extra, expected):
    """The string tasks take the protocol's arguments as **kwargs for ChomskyTask (jsonargparse shows them):
    a misspelt or mistyped one is still named, from the base class's signature."""
    from mann_zoo.configs import resolve_config_files
    from mann_zoo.training.arguments import explain
    from mann_zoo.training.cli import parse_fit_args

    args = resolve_config_files(["--config", str(ROOT / "configs/task/bucket_sort.yaml"), "--model.core", "lstm", *extra])
    [error] = parse_fit_args([args])
    assert error is not None and explain(args, error).startswith(expected)

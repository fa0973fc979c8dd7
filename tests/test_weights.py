"""tools/engine/weights.py: weights{0,1}.pt in the original's format, strict loading with clear sentences."""
import os

import pytest
import torch

from tests.train_helpers import StandIn
from tools.engine.weights import WeightsMismatchError, load_weights, save_weights, weights_path
from tools.models.archfile import load_arch, published_arch_path
from tools.models.derived import build_derived
from tools.utils.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_derived(load_arch(published_arch_path(1)), 1, stem_head_width=(8. / 12, 8. / 12))


def test_save_then_load_round_trip_is_exact(tmp_path):
    model, other = StandIn(), StandIn()
    path = save_weights(model, str(tmp_path), 1)
    assert path == weights_path(str(tmp_path), 1) and os.path.basename(path) == "weights1.pt"
    saved = torch.load(path, weights_only=True)
    assert list(saved) == list(model.state_dict())          # a plain state_dict, same keys and order
    load_weights(other, path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_original_style_file_with_thop_buffers_and_ddp_prefix_loads(tmp_path):
    model, other = StandIn(), StandIn()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.conv.total_ops"] = torch.zeros(1, dtype=torch.float64)     # what thop 0.0.31 leaves behind
    state["total_params"] = torch.zeros(1, dtype=torch.float64)
    torch.save(state, tmp_path / "weights0.pt")
    load_weights(other, str(tmp_path / "weights0.pt"))
    assert torch.equal(other.conv.weight, model.conv.weight)


def test_the_original_published_student_state_dict_loads_and_reproduces_its_output(reference_dir, tmp_path):
    reference = torch.load(os.path.join(reference_dir, "student_equivalence.pt"), weights_only=True)
    torch.save(reference["state_dict"], tmp_path / "weights1.pt")           # the original's file layout
    model = build_derived(load_arch(published_arch_path(1)), 1, stem_head_width=(8. / 12, 8. / 12))
    load_weights(model, str(tmp_path / "weights1.pt"))
    model.eval()
    with torch.no_grad():
        output = model(reference["input"])
    assert torch.allclose(output, reference["output_eval"], rtol=1e-5, atol=1e-5)


def test_missing_aux_heads_are_tolerated_but_nothing_else(tmp_path, student):
    state = {k: v for k, v in student.state_dict().items() if not k.startswith(("heads16.", "heads32."))}
    torch.save(state, tmp_path / "weights1.pt")
    load_weights(student, str(tmp_path / "weights1.pt"))
    del state["heads8.conv_1x1.bias"]
    torch.save(state, tmp_path / "weights1.pt")
    with pytest.raises(WeightsMismatchError, match=r"1 keys missing \(heads8.conv_1x1.bias\)"):
        load_weights(student, str(tmp_path / "weights1.pt"))


def test_teacher_weights_into_the_student_name_the_mismatch(tmp_path, student):
    teacher = build_derived(load_arch(published_arch_path(0)), 0)
    save_weights(teacher, str(tmp_path), 0)
    with pytest.raises(WeightsMismatchError, match=r"weights0.pt does not fit the network built from the arch "
                                                   r"file: .*shape mismatches .*same arch file"):
        load_weights(student, str(tmp_path / "weights0.pt"))


def test_missing_or_foreign_file_is_one_sentence(tmp_path):
    with pytest.raises(CheckpointError, match=r"weights0.pt does not exist\. It is written by teacher training"):
        load_weights(StandIn(), str(tmp_path / "weights0.pt"), produced_by="teacher training")
    torch.save({"epoch": 3}, tmp_path / "weights1.pt")
    with pytest.raises(CheckpointError, match="does not hold a state_dict"):
        load_weights(StandIn(), str(tmp_path / "weights1.pt"))

"""Derivation rules (tools/models/derive.py) against the original's recorded derivations."""
import json
import os

import pytest
import torch

from tools.models.derive import (DerivationError, alphas2ops_path_width, betas2path, choose_lasts, derive_all,
                                 downs2path, effective_width_mult_list, network_metas, objective_acc_lat,
                                 path2downs, path2widths)

FIELDS = ("ops", "path", "downs", "widths")


@pytest.fixture(scope="module")
def cases():
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "derivation_cases.json")
    with open(here) as handle:
        return json.load(handle)


def _inputs(case):
    inputs = case["inputs"]
    alphas = [torch.tensor(a, dtype=torch.float32) for a in inputs["alphas"]]
    betas = [None if b is None else torch.tensor(b, dtype=torch.float32) for b in inputs["betas"]]
    ratios = [torch.tensor(r, dtype=torch.float32) for r in inputs["ratios"]]
    return alphas, betas, ratios


def _derive(case, layers, mode):
    alphas, betas, ratios = _inputs(case)
    metas = derive_all(alphas, betas, ratios, case["width_mult_list"], layers, case["ignore_skip"], mode=mode)
    return {str(last): dict(zip(FIELDS, meta)) for last, meta in metas.items()}


@pytest.mark.parametrize("mode", ["sequential", "fresh"])
def test_all_recorded_cases_identical(cases, mode):
    assert len(cases["cases"]) == 40
    for case in cases["cases"]:
        assert _derive(case, cases["layers"], mode) == case[mode], f"case {case['case']} ({mode})"


def test_published_cases_identical(cases):
    for case in cases["published_cases"]:
        for mode in ("sequential", "fresh"):
            assert _derive(case, cases["layers"], mode) == case[mode], case["case"]


def test_sequential_reproduces_b5_where_it_matters(cases):
    differing = cases["summary"]["cases_sequential_differs_from_fresh"]
    assert differing == [5, 7, 10, 11, 13, 18, 20, 23]
    for case in cases["cases"]:
        seq, fresh = _derive(case, cases["layers"], "sequential"), _derive(case, cases["layers"], "fresh")
        assert (seq != fresh) == (case["case"] in differing)
        assert seq["0"] == fresh["0"]


def test_derive_all_leaves_caller_tensors_untouched(cases):
    case = cases["cases"][5]
    alphas, betas, ratios = _inputs(case)
    before = [t.clone() for t in alphas + betas[1:] + ratios]
    derive_all(alphas, betas, ratios, case["width_mult_list"], cases["layers"], case["ignore_skip"])
    assert betas[0] is None
    for old, new in zip(before, alphas + betas[1:] + ratios):
        assert torch.equal(old, new)


def test_network_metas_mutates_like_the_original(cases):
    case = cases["published_cases"][0]
    alphas, betas, ratios = _inputs(case)
    beta1 = betas[1]
    network_metas(alphas, betas, ratios, [1.0], cases["layers"], 0, ignore_skip=True)
    assert torch.equal(betas[1], torch.softmax(beta1, dim=-1))
    assert torch.isinf(alphas[0][:, 0]).all()


def test_derive_all_rejects_unknown_mode(cases):
    alphas, betas, ratios = _inputs(cases["cases"][0])
    with pytest.raises(ValueError, match="sequential"):
        derive_all(alphas, betas, ratios, cases["cases"][0]["width_mult_list"], 16, mode="copy")


def test_path_downs_round_trip():
    path = [0, 0, 1, 1, 1, 2, 2]
    downs = path2downs(path)
    assert downs == [0, 1, 0, 0, 1, 0, 0]
    assert downs2path(downs) == path
    with pytest.raises(DerivationError, match="jumps by 2"):
        path2downs([0, 2])


def test_betas2path_rules():
    layers = 10
    beta1 = torch.full((layers - 2, 2), 0.5)
    beta2 = torch.full((layers - 3, 2), 0.5)
    beta1[3, 0] = 0.9
    assert betas2path([None, beta1, beta2], 0, layers) == [0] * layers
    # last 1: the down follows the row of largest beta1 (rows 1..layers-4 only)
    assert betas2path([None, beta1, beta2], 1, layers) == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    # last 2: downs after rows i+1 and j+2 maximising beta1[i] * beta2[j] with i <= j - 2
    beta2[5, 0] = 0.9
    assert betas2path([None, beta1, beta2], 2, layers) == [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]


def test_path2widths_uses_the_scale_rows():
    ratios = [torch.eye(3)[[0, 1, 2, 0]], torch.eye(3)[[2, 2, 2, 2]], torch.eye(3)[[1, 1, 1]]]
    assert path2widths([0, 0, 1, 1, 2], ratios, [0.25, 0.5, 1.0]) == [0.25, 1.0, 1.0, 0.5]


def test_alphas2ops_prunes_skips_down_to_min_len():
    layers = 6
    alphas = [torch.zeros(layers - s, 5) for s in range(3)]
    for row in alphas[0]:
        row[0], row[3] = 2.0, 1.0
    ops, path, widths = alphas2ops_path_width(alphas, [0] * layers, [1.0] * (layers - 1))
    assert len(path) == 2 and ops == [3, 3] and path == [0, 0] and widths == [1.0]
    with pytest.raises(DerivationError, match="len\\(path\\)"):
        alphas2ops_path_width(alphas, [0] * layers, [1.0] * layers)


def test_ignore_skip_never_keeps_or_prunes_skip():
    layers = 6
    alphas = [torch.zeros(layers - s, 5) for s in range(3)]
    alphas[0][:, 0] = 5.0
    alphas[0][:, 4] = 1.0
    ops, path, widths = alphas2ops_path_width(alphas, [0] * layers, [1.0] * (layers - 1), ignore_skip=True)
    assert ops == [4] * layers and len(widths) == layers - 1


def test_effective_width_mult_list():
    one = [torch.zeros(15, 1)]
    full = [torch.zeros(15, 5)]
    widths = [4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0]
    assert effective_width_mult_list(one, widths, ignore_skip=True) == [1.0]
    assert effective_width_mult_list(one, widths, ignore_skip=False) == [4 / 12]
    assert effective_width_mult_list(full, widths, ignore_skip=False) == widths
    with pytest.raises(DerivationError, match="width_mult_list"):
        effective_width_mult_list(full, widths[:3], ignore_skip=False)


def test_objective_and_lasts_of_the_published_files(test_data_dir):
    with open(os.path.join(test_data_dir, "figures.json")) as handle:
        figures = json.load(handle)
    obj = figures["student"]["objective_acc_lat"]
    assert objective_acc_lat(obj["mIoU02"], obj["latency02"]) == pytest.approx(obj["obj02"], rel=1e-12)
    assert objective_acc_lat(obj["mIoU12"], obj["latency12"]) == pytest.approx(obj["obj12"], rel=1e-12)
    assert choose_lasts(obj["mIoU02"], obj["latency02"], obj["mIoU12"], obj["latency12"]) == [2, 1]
    assert choose_lasts(0.7, 5.0, 0.6, 5.0) == [2, 0]
    assert objective_acc_lat(0.5, 16.6) == pytest.approx(0.5 * 2 ** -0.07)

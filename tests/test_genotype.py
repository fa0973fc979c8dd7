"""tools/models/genotype.py, the genotype in arch files and tools/models/build.py: derived once, stored next to
the tensors, the network built from it in one step, the same network as the original's two-step build."""
import pytest
import torch

from tools.config import load_config
from tools.models.archfile import (GENOTYPE_KEY, ArchFileError, arch_parameters, load_arch, published_arch_path,
                                   record_genotype, save_arch)
from tools.models.build import arch_name, derived_from_config
from tools.models.derive import choose_lasts
from tools.models.derived import Network_Multi_Path_Infer, build_derived
from tools.models.genotype import Genotype, GenotypeError, derive_genotype

WIDTHS = [4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.]
STEM_HEAD = {0: (1., 1.), 1: (8. / 12, 8. / 12)}
STRUCTURE = ["lasts", "ops", "paths", "downs", "widths", "branch_groups", "ch_16", "ch_8_2", "ch_8_1",
             "_width_mult_list"] + [f"{name}{last}" for name in ("ops", "path", "downs", "widths") for last in range(3)]


def published(idx):
    return load_arch(published_arch_path(idx))


def two_step(record, idx, **kwargs):
    """The original's construction: arch tensors to the constructor, then build_structure(lasts)."""
    alphas, betas, ratios = arch_parameters(record, idx)
    lasts = choose_lasts(record["mIoU02"], record["latency02"], record["mIoU12"], record["latency12"])
    net = Network_Multi_Path_Infer(alphas, betas, ratios, layers=16, Fch=12, width_mult_list=WIDTHS,
                                   stem_head_width=STEM_HEAD[idx], ignore_skip=idx == 0, **kwargs)
    return net.build_structure(lasts)


@pytest.mark.parametrize("idx", [0, 1])
def test_from_genotype_is_the_original_two_step_build(idx):
    record = published(idx)
    genotype = record_genotype(record, idx, 16, WIDTHS)
    with torch.device("meta"):
        one = Network_Multi_Path_Infer.from_genotype(genotype, stem_head_width=STEM_HEAD[idx])
        two = two_step(record, idx)
    for key in STRUCTURE:
        assert getattr(one, key) == getattr(two, key), key
    assert {k: v.shape for k, v in one.state_dict().items()} == {k: v.shape for k, v in two.state_dict().items()}
    assert list(one.state_dict()) == list(two.state_dict())
    assert one.genotype == two.genotype == genotype and genotype.lasts == tuple(one.lasts)


def test_same_seed_same_weights_either_way():
    record = published(1)
    torch.manual_seed(0)
    one = build_derived(record, 1, stem_head_width=STEM_HEAD[1])
    torch.manual_seed(0)
    two = two_step(record, 1)
    for (name, a), (_, b) in zip(one.state_dict().items(), two.state_dict().items()):
        assert torch.equal(a, b), name


def test_plain_form_round_trips_and_names_the_operators():
    genotype = record_genotype(published(1), 1, 16, WIDTHS)
    plain = genotype.to_plain()
    assert plain["ops"][2][:2] == ["conv_2x", "conv_2x"] and plain["lasts"] == [2, 1]
    assert Genotype.from_plain(plain) == genotype
    assert Genotype.from_plain(dict(plain, lasts=None)).lasts is None
    with pytest.raises(GenotypeError, match="not in the search space"):
        Genotype.from_plain(dict(plain, ops=[["sep_conv"]] + plain["ops"][1:]))
    with pytest.raises(GenotypeError, match="do not describe a branch"):
        Genotype.from_plain(dict(plain, paths=[plain["paths"][0][:-1]] + plain["paths"][1:]))
    with pytest.raises(GenotypeError, match="exactly the keys"):
        Genotype.from_plain({"ops": []})


def test_arch_file_stores_the_genotype_and_training_reads_it(tmp_path):
    """A search's arch file holds the genotype (plain lists: weights_only loads it); build_derived uses the stored
    one, and asks the tensors again only for other derivation settings."""
    record = published(1)
    genotype = record_genotype(record, 1, 16, WIDTHS)
    record[GENOTYPE_KEY] = genotype.to_plain()
    path = str(tmp_path / "arch_1.pt")
    save_arch(record, path)
    loaded = torch.load(path, weights_only=True)
    assert list(loaded)[-1] == GENOTYPE_KEY and Genotype.from_plain(loaded[GENOTYPE_KEY]) == genotype
    assert record_genotype(load_arch(path), 1, 16, WIDTHS) == genotype
    edited = dict(loaded[GENOTYPE_KEY], ops=[["conv"] * len(ops) for ops in loaded[GENOTYPE_KEY]["ops"]])
    loaded[GENOTYPE_KEY] = edited       # a stored genotype wins over the tensors ...
    assert record_genotype(loaded, 1, 16, WIDTHS).ops[2] == (1,) * len(genotype.ops[2])
    assert record_genotype(loaded, 1, 16, WIDTHS, derivation="fresh") == genotype    # ... unless asked otherwise
    loaded[GENOTYPE_KEY] = {"ops": "conv"}
    with pytest.raises(ArchFileError, match="genotype"):
        record_genotype(loaded, 1, 16, WIDTHS)


def test_genotype_needs_lasts_to_build_and_derivation_leaves_tensors_alone():
    alphas, betas, ratios = arch_parameters(published(1), 1)
    before = [t.clone() for t in alphas]
    genotype = derive_genotype(alphas, betas, ratios, WIDTHS, 16)
    assert all(torch.equal(a, b) for a, b in zip(alphas, before))
    assert genotype.lasts is None and genotype.width_mult_list == tuple(WIDTHS) and genotype.layers == 16
    with pytest.raises(ValueError, match="no lasts"):
        Network_Multi_Path_Infer.from_genotype(genotype)


def test_config_builder_is_train_py_build_and_names():
    config = load_config("train", ["device='cpu'"])
    assert config.arch_idx == [0, 1] and [arch_name(i) for i in (0, 1, 2)] == ["teacher", "student", "arch2"]
    torch.manual_seed(0)
    model = derived_from_config(config, 1, "cpu")
    torch.manual_seed(0)
    expected = build_derived(published(1), 1, stem_head_width=STEM_HEAD[1]).init_weights(config.bn_eps,
                                                                                        config.bn_momentum)
    for (name, a), (_, b) in zip(model.state_dict().items(), expected.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="not one of the config's networks"):
        derived_from_config(load_config("train", ["mode='teacher'"]), 1)


def test_config_builder_names_the_missing_arch_file(tmp_path):
    config = load_config("train", [f"load_path='{tmp_path}'"])
    with pytest.raises(ArchFileError, match="arch_0.pt does not exist; it is written by the search"):
        derived_from_config(config, 0)

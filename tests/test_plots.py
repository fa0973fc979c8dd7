"""tools/plots.py: the operator table rows and the path/width figure of derived networks."""
import pytest

from tools.models.archfile import load_arch, published_arch_path, record_genotype
from tools.plots import op_table_rows, plot_op, plot_path_width, save_arch_plots, save_figure

STUDENT_OPS2 = [3, 3, 4, 2, 4, 4, 4, 4, 4, 4]
STUDENT_PATH2 = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
STUDENT_WIDTHS2 = [1 / 3, 1 / 3, 1 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3]


def test_op_table_rows_of_the_published_student():
    rows = op_table_rows(STUDENT_OPS2, STUDENT_PATH2, STUDENT_WIDTHS2, head_width=8 / 12, F_base=12)
    assert rows[0] == [1, "conv_2x", "1/8", 32]
    assert rows[3] == [4, "conv_downup", "1/8", 64]
    assert rows[-1] == [10, "conv_2x_downup", "1/32", 256]
    assert [row[3] for row in op_table_rows([1, 1], [0, 1], F_base=12)] == [96, 192]


def test_figures_are_written(tmp_path):
    op_png = save_figure(plot_op(STUDENT_OPS2, STUDENT_PATH2, STUDENT_WIDTHS2, 8 / 12, 12), str(tmp_path / "o.png"))
    pw_png = save_figure(plot_path_width([2, 1], [STUDENT_PATH2, [0] * 6 + [1] * 3],
                                         [STUDENT_WIDTHS2, [1 / 3] * 7 + [1.0]]), str(tmp_path / "p.png"))
    for path in (op_png, pw_png):
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_inputs_are_not_modified_and_bad_lengths_are_refused():
    path = [0, 0, 1]
    plot_path_width([2], [path], [[1.0, 1.0, 1.0]])
    assert path == [0, 0, 1]
    with pytest.raises(ValueError, match="path has 3 nodes but 1 widths"):
        plot_path_width([1], [[0, 0, 1]], [[1.0]])
    with pytest.raises(ValueError, match="2 widths for 2 ops"):
        op_table_rows([1, 1], [0, 0], [1.0, 1.0])


def test_arch_plots_of_a_genotype_are_train_py_files(tmp_path):
    genotype = record_genotype(load_arch(published_arch_path(1)), 1, 16, [4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.])
    written = save_arch_plots(genotype, 1, str(tmp_path), F_base=12, head_width=8 / 12)
    assert [p.split("/")[-1] for p in written] == ["ops_1_2.png", "ops_1_1.png", "path_width1.png",
                                                    "path_width_all1.png"]

"""tools/data/labels.py: class definitions for Cityscapes, CamVid and custom labels files."""
import glob
import json
import os

import numpy as np
import pytest

from tools.data.errors import DataError, DataFileNotFoundError
from tools.data.labels import camvid_labels, cityscapes_labels, load_labels_file

# train/test.py's cityscapes_trainID2id of the original
ORIGINAL_TRAINID2ID = {0: 7, 1: 8, 2: 11, 3: 12, 4: 13, 5: 17, 6: 19, 7: 20, 8: 21, 9: 22, 10: 23, 11: 24, 12: 25,
                       13: 26, 14: 27, 15: 28, 16: 31, 17: 32, 18: 33, 19: 0}
ORIGINAL_NAMES = ['road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
                  'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
                  'bicycle']
ORIGINAL_COLORS = [[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
                   [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
                   [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32]]

GAUSSIANER_CSV = """name,id,trainId,category,catId,hasInstances,ignoreInEval,color_r,color_g,color_b
unlabeled,0,255,void,0,False,True,0,0,0
background,1,0,flat,1,False,False,0,0,0
route,2,1,flat,1,False,False,128,64,128
route_group,2,1,flat,1,False,False,128,64,128
obstacle,3,2,object,2,True,False,220,20,60
license,-1,-1,void,0,False,True,0,0,142
"""


def test_cityscapes_classes_match_the_original():
    labels = cityscapes_labels()
    assert labels.names == ORIGINAL_NAMES
    assert labels.colors == ORIGINAL_COLORS
    assert labels.num_classes == 19 and labels.ignore_index == 255


def test_trainid_to_labelid_is_the_original_mapping_vectorised():
    labels = cityscapes_labels()
    pred = np.array([[k for k in range(19)] + [255]], np.int64)
    expected = np.array([[ORIGINAL_TRAINID2ID[k] for k in range(19)] + [0]])
    np.testing.assert_array_equal(labels.trainid_to_labelid(pred), expected)
    with pytest.raises(DataError):
        labels.trainid_to_labelid(np.array([300]))


def test_camvid_maps_void_to_ignore():
    labels = camvid_labels()
    assert labels.num_classes == 11 and labels.names[0] == "Sky" and labels.names[-1] == "Bicyclist"
    assert camvid_labels("fasterseg").names[0] == "Building"
    with pytest.raises(DataError, match="camvid_classes"):
        camvid_labels("nonsense")
    lut = labels.raw_label_lut()
    assert lut[11] == 255 and list(lut[:11]) == list(range(11)) and lut[12] == 12


def test_custom_csv_in_the_gaussianer_format(tmp_path):
    path = tmp_path / "labelDefinitions.csv"
    path.write_text(GAUSSIANER_CSV)
    labels = load_labels_file(str(path))
    assert labels.names == ["background", "route", "obstacle"]
    assert labels.label_ids == [1, 2, 3]
    assert labels.colors == [[0, 0, 0], [128, 64, 128], [220, 20, 60]]
    assert labels.polygon_value("route_group", "trainIds") == 1
    assert labels.polygon_value("unlabeled", "trainIds") == 255
    assert labels.polygon_value("license", "ids") is None          # negative id: not drawn, as cityscapesscripts
    assert labels.background_train_id == 255 and labels.background_label_id == 0
    assert labels.knows("obstacle") and not labels.knows("car")


def test_custom_json_labels_file(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps([{"name": "a", "trainId": 0, "color_r": 1, "color_g": 2, "color_b": 3},
                                {"name": "b", "trainId": 1, "id": 9, "color_r": 4, "color_g": 5, "color_b": 6}]))
    labels = load_labels_file(str(path))
    assert labels.names == ["a", "b"] and labels.label_ids == [0, 9]


@pytest.mark.parametrize("content, match", [
    ("name,trainId,color_r,color_g,color_b\na,0,1,2,3\nb,2,1,2,3\n", "without gaps"),
    ("name,trainId,color_r,color_g\na,0,1,2\n", "lacks color_b"),
    ("name,trainId,color_r,color_g,color_b\na,x,1,2,3\n", "non-integer"),
    ("name,trainId,color_r,color_g,color_b\n", "defines no classes"),
    ("name,trainId,color_r,color_g,color_b\nroad,0,1,2,3\ncar,1,4,5,6\nroad,2,7,8,9\n",
     "names the class 'road' on lines 2 and 4"),
])
def test_bad_labels_files_are_one_clear_sentence(tmp_path, content, match):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        load_labels_file(str(path))


def test_missing_labels_file_names_the_config_key(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="labels_file"):
        load_labels_file(str(tmp_path / "nope.csv"))


CAMVID_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "camvid")


def _camvid_labels_on_disk():
    import cv2
    paths = sorted(glob.glob(os.path.join(CAMVID_DATA, "*annot", "*.png")))
    assert len(paths) == 3
    return [cv2.imread(p, cv2.IMREAD_UNCHANGED) for p in paths]


def test_camvid_names_match_the_pixels_of_real_segnet_labels():
    """Value 0 must be the sky (top rows), 3 and 4 road and pavement (bottom rows), 1 building above the road."""
    labels = camvid_labels()
    rows = {}
    for gt in _camvid_labels_on_disk():
        assert gt.shape == (360, 480) and gt.max() <= 11
        for value in range(11):
            ys = np.nonzero(gt == value)[0]
            if len(ys):
                rows.setdefault(labels.names[value], []).append(ys.mean() / gt.shape[0])
    mean_row = {name: float(np.mean(v)) for name, v in rows.items()}
    assert mean_row["Sky"] < 0.25, mean_row
    assert mean_row["Road"] > 0.7 and mean_row["Pavement"] > 0.6, mean_row
    assert mean_row["Sky"] < mean_row["Building"] < mean_row["Road"], mean_row
    top = np.concatenate([gt[:20].ravel() for gt in _camvid_labels_on_disk()])
    bottom = np.concatenate([gt[-20:].ravel() for gt in _camvid_labels_on_disk()])
    assert labels.names[np.bincount(top, minlength=12)[:11].argmax()] in ("Sky", "Building", "Tree")
    assert labels.names[np.bincount(bottom, minlength=12)[:11].argmax()] in ("Road", "Pavement")
    assert labels.colors[labels.names.index("Sky")] == [128, 128, 128]
    assert labels.colors[labels.names.index("Road")] == [128, 64, 128]

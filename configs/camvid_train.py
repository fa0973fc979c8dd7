"""CamVid on the train stage: an alias of ``--config train dataset=camvid``, kept so the documented commands work
(e.g. ``python train/train.py --config camvid_train is_eval=True eval_path=pretrained/camvid dataset_path=DIR``).

The CamVid keys (11 classes, 352x480 crops, evaluation on the whole 360x480 image) are in
configs/datasets/camvid.py; this file adds nothing else.
"""
STAGE = "train"
C = dict(dataset="camvid")

"""CamVid on the search stage: an alias of ``--config search dataset=camvid``, kept so the documented commands work.

The CamVid keys (11 classes, 352x480 crops, evaluation on the whole 360x480 image) are in
configs/datasets/camvid.py; this file adds nothing else.
"""
STAGE = "search"
C = dict(dataset="camvid")

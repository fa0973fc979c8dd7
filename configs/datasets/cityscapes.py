"""Cityscapes, the original's data: 19 classes, 2975 train / 500 val images of 1024x2048 (fine annotations).

The stage defaults (configs/search.py, configs/train.py) hold these values, so they are the original's Cityscapes
configs; ``dataset=cityscapes`` brings them back over a preset of other data. The lists are read from
``dataset_path`` as ``python dataset/create_mapping_lists.py --root DIR --layout cityscapes`` writes them.
"""
C = dict(
    dataset="cityscapes", dataset_path="data/cityscapes", num_classes=19,
    eval_height=1024, eval_width=2048, num_train_imgs=2975, num_eval_imgs=500,
)

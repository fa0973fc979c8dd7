"""Your own data on the train stage: an alias of ``--config train dataset=custom`` (configs/datasets/custom.py).

    python train/train.py --config custom_train labels_file='data/own/labels.csv' dataset_path='data/own'
"""
STAGE = "train"
C = dict(dataset="custom")

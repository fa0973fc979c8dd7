"""Your own data on the search stage: an alias of ``--config search dataset=custom`` (configs/datasets/custom.py).

    python search/train_search.py --config custom_search labels_file='data/own/labels.csv' dataset_path='data/own'
"""
STAGE = "search"
C = dict(dataset="custom")

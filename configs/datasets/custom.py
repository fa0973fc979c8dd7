"""Your own data: the classes (names, colours, ignored values) come from one labels file.

Prepare the data as docs/usage.md says (split_dataset.py → createTrainIdLabelImgs.py --layout custom
--labels-file … → create_mapping_lists.py --layout custom), then set `labels_file` (and `dataset_path`):
num_classes, the class names and colours and the list files all follow from them.

    python search/train_search.py --config search dataset=custom labels_file=data/own/labels.csv dataset_path=data/own
"""
C = dict(
    dataset="custom",
    dataset_path="data/custom",
    labels_file="data/custom/labels.csv",
)

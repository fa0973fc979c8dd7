"""A tiny pretrain/search preset for the tests and the demo: configs/search.py with a small supernet and crops.

Everything not listed here is the original default (sandwich loss, OHEM, SGD/Adam settings, lr decay, latency
weights [0, 1e-2] when searching, FPS bounds, train/arch halves). The data is the embedded demo dataset
(configs/datasets/demo.py: 256x512 scenes in data/demo, 128x256 after down_sampling 2). The supernet has 6
layers (the fewest whose 1/32 branch derives: 6 >= round(6/3) + 4), Fch 3 and widths {4/12, 8/12, 1} (with
Fch 3 the widths 6/12 and 10/12 give FactorizedReduce halves that do not add up, docs/differences.md SN4);
crops are 64x128 and latency is estimated at 128x256 with a lookup table measured on demand on this machine
(short timing budgets). Pretrain then search each take a few minutes on 2 CPU cores.
"""
STAGE = "search"
C = dict(
    dataset="demo",
    num_train_imgs=24, num_eval_imgs=8,     # the demo's image counts (only the default niters_per_epoch reads them)
    layers=6, Fch=3, width_mult_list=[4. / 12, 8. / 12, 1.],
    num_workers=0,
    latency_height=128, latency_width=256, latency_backend="pytorch", lut_budget_s=0.02, lut_calib_s=0.005,
    # the keys configs/search.py derives from `pretrain` (crop, batch, epochs, steps): the same for both phases
    image_height=64, image_width=128, batch_size=2, nepochs=2, niters_per_epoch=4,
)

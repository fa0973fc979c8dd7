"""The bottom layer: file-format and process plumbing that every other layer uses.

* :mod:`tools.utils.fileio` — the one atomic writer (temporary file + ``os.replace``, mode ``0o666 & ~umask``,
  one-sentence :class:`~tools.utils.fileio.WriteError`), PNG / text / JSON helpers, leftover temp-file cleanup;
* :mod:`tools.utils.checkpoint` — ``save_checkpoint`` / ``load_checkpoint`` (``weights_only=True``),
  ``rng_state`` / ``set_rng_state``, ``CheckpointError`` (the layout of a run's checkpoint is the run's business);
* :mod:`tools.utils.legacy_files` — restricted unpicklers for the original's arch files and ``.npy`` tables;
* :mod:`tools.utils.device` — ``resolve_device``, the one reading of ``device='auto'|'cpu'|'cuda[:N]'``;
* :mod:`tools.utils.seed` — ``seed_everything``.

The rule: modules here import only the standard library, numpy, cv2, torch and each other — never another
``tools`` package (no models, no config, no run). Everything above may import from here (tests/test_layers.py
checks it).
"""

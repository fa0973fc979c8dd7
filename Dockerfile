# FasterSeg on a GPU box: CUDA, cuDNN, PyTorch and TensorRT come from NVIDIA's PyTorch container.
# Build and run the main job (README "Docker"; more commands in docs/usage.md):
#   docker build -t fasterseg .
#   mkdir -p data runs
#   docker run --gpus all --ipc=host --user "$(id -u):$(id -g)" -v "$PWD/data:/workspace/fasterseg/data" \
#       -v "$PWD/runs:/workspace/fasterseg/runs" fasterseg python run_demo.py
FROM nvcr.io/nvidia/pytorch:24.12-py3

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /workspace/fasterseg

# The base image's stack is kept as it ships: its CUDA build of torch, the numpy that torch is built against
# (1.26: opencv-python-headless >= 4.12 would pull numpy 2) and TensorRT are pinned to the installed versions in
# a constraints file, which every later `pip install` in the container obeys (PIP_CONSTRAINT, set below, after
# the base's own constraints were folded into it). requirements.txt pins torch for CPU machines; the image's copy
# names torch without a version, so `pip install -r requirements.txt` inside the container (README) keeps the
# base's CUDA torch. onnxruntime is the CPU build (the onnxruntime backend says so when asked for CUDA); for its
# CUDA provider: pip install onnxruntime-gpu in place of onnxruntime.
COPY requirements.txt requirements-test.txt ./
RUN mkdir -p /etc/fasterseg \
    && { if [ -f "${PIP_CONSTRAINT:-}" ]; then cat "$PIP_CONSTRAINT"; echo; fi; \
         pip list --format=freeze | grep -iE '^(torch|numpy|tensorrt)=='; } > /etc/fasterseg/constraints.txt \
    && grep -qiE '^torch==' /etc/fasterseg/constraints.txt && grep -qiE '^numpy==' /etc/fasterseg/constraints.txt \
    && sed -i 's/^torch==.*/torch  # the base image CUDA build, pinned by \/etc\/fasterseg\/constraints.txt/' \
        requirements.txt \
    && pip install -c /etc/fasterseg/constraints.txt -r requirements-test.txt \
    && python -c "import cv2, numpy, onnxruntime, tensorrt, torch; \
assert torch.from_numpy(numpy.arange(3.0)).sum().item() == 3.0 and torch.ones(2).numpy().sum() == 2.0; \
print('torch', torch.__version__, 'numpy', numpy.__version__, 'opencv', cv2.__version__, \
'onnxruntime', onnxruntime.__version__, 'TensorRT', tensorrt.__version__)"
ENV PIP_CONSTRAINT=/etc/fasterseg/constraints.txt

# Everything the README's commands and the tests read (the lint in tests/test_dockerfile.py keeps this list whole).
RUN useradd --create-home --shell /bin/bash fasterseg
COPY --chown=fasterseg tools ./tools
COPY --chown=fasterseg configs ./configs
COPY --chown=fasterseg search ./search
COPY --chown=fasterseg train ./train
COPY --chown=fasterseg latency ./latency
COPY --chown=fasterseg dataset ./dataset
COPY --chown=fasterseg benchmarks ./benchmarks
COPY --chown=fasterseg docs ./docs
COPY --chown=fasterseg pretrained ./pretrained
COPY --chown=fasterseg tests ./tests
COPY --chown=fasterseg .ci ./.ci
COPY --chown=fasterseg run_demo.py pytest.ini README.md Dockerfile ./
# data/ and runs/ are where volumes go; the folder stays writable for a `--user` that is not fasterseg.
RUN mkdir -p data runs && chown fasterseg data runs requirements.txt requirements-test.txt \
    && chmod 1777 /workspace/fasterseg data runs
USER fasterseg

EXPOSE 6006
CMD ["python", "run_demo.py"]

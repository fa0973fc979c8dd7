# FasterSeg on a GPU box: CUDA, cuDNN, PyTorch and TensorRT come from NVIDIA's PyTorch container.
# Build:  docker build -t fasterseg .
# Run:    docker run --gpus all --ipc=host -v /path/to/cityscapes:/data/cityscapes -v $PWD/runs:/workspace/fasterseg/runs \
#           fasterseg python search/train_search.py dataset_path='/data/cityscapes'
FROM nvcr.io/nvidia/pytorch:24.12-py3

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /workspace/fasterseg

# The base image's CUDA torch and TensorRT are kept: the torch pin of requirements.txt is for CPU machines.
COPY requirements.txt requirements-test.txt ./
RUN grep -v '^torch==' requirements.txt > /tmp/requirements-gpu.txt \
    && pip install -r /tmp/requirements-gpu.txt pycuda==2024.1.2 \
    && python -c "import tensorrt, torch; print('TensorRT', tensorrt.__version__, 'torch', torch.__version__)"

COPY tools ./tools
COPY configs ./configs
COPY search ./search
COPY train ./train
COPY latency ./latency
COPY dataset ./dataset
COPY benchmarks ./benchmarks
COPY tests ./tests
COPY pytest.ini README.md ./

EXPOSE 6006
CMD ["python", "latency/run_latency.py"]

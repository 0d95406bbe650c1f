# The pipeline image for Vertex AI / Kubeflow (vertex.image in the pipeline config): every component runs in it,
# so it holds this repository installed from the lock. Build from the repository root:
#   docker build -t us-docker.pkg.dev/PROJECT/REPO/prottrans:TAG . && docker push us-docker.pkg.dev/PROJECT/REPO/prottrans:TAG
# For GPU trainer pools, build FROM an image with the CUDA runtime TensorFlow 2.21 needs (or add
# tensorflow[and-cuda] to the image); TPU VMs take the same image with the TPU runtime installed.
FROM python:3.11-slim

WORKDIR /app
RUN python3 -m pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock README.md ./
COPY third_party third_party
COPY beam_jobs beam_jobs
COPY models models
COPY tfx_pipeline tfx_pipeline
COPY serving serving
RUN python3 -m uv sync --frozen --all-extras --no-default-groups --compile-bytecode --no-editable
# TFX's Vertex launcher runs `python -m tfx.orchestration.kubeflow.v2.container…`: this venv's python.
ENV PATH=/app/.venv/bin:$PATH PYTHONPATH=/app TF_CPP_MIN_LOG_LEVEL=2

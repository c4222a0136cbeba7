"""The framework snippets of docs/trainers.md, read the way the tests check them.

A snippet the tests check follows a ``<!-- checked: NAME ... -->`` line; the fenced block after it is
the snippet. Tests hand it to the framework's own parser or config, so the docs cannot drift from the
versions tested.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1] / "docs" / "trainers.md"


def snippet(name: str) -> str:
    """The fenced block after ``<!-- checked: name``."""
    text = DOCS.read_text()
    found = re.search(rf"<!-- checked: {re.escape(name)}\b[^>]*-->\n```[a-z]*\n(.*?)\n```", text, re.S)
    if found is None:
        raise AssertionError(f"docs/trainers.md has no checked snippet {name!r}")
    return found.group(1)


def command_args(name: str) -> list[str]:
    """The arguments a ``python -m MODULE ...`` shell snippet passes to its module, as bash expands them.

    bash runs the snippet with ``python`` defined as a function: ``python -m MODULE ARGS`` prints
    ARGS one per line (NUL-separated), any other ``python`` call (a ``$(python -c ...)`` in the
    snippet) runs this interpreter. So substitutions and quoting expand as in the user's shell.
    """
    interpreter = shlex.quote(sys.executable)
    prelude = f'python() {{ if [ "$1" = -m ]; then shift 2; printf "%s\\0" "$@"; else {interpreter} "$@"; fi; }}\n'
    done = subprocess.run(["bash", "-c", prelude + snippet(name)], capture_output=True, text=True, check=True)
    return done.stdout.split("\0")[:-1]


def openrlhf_args(argv: list[str]) -> Any:
    """OpenRLHF 0.11.2's own command-line parser applied to ``argv``, hierarchised as its trainer does.

    ``train_ppo_ray`` builds its parser inline under ``if __name__ == "__main__"`` (no function to
    import, and importing the module pulls in its GPU stack), so this runs the statements of that
    block from the installed file, up to and including ``parser.parse_args()``.

    Raises:
        SystemExit: as argparse does for an unknown or malformed argument.
    """
    from openrlhf.utils.config import hierarchize

    spec = importlib.util.find_spec("openrlhf.cli.train_ppo_ray")
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom) and _stdlib(n)]
    main = next(n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))
    body = []
    for statement in main.body:
        body.append(statement)
        if "parse_args()" in ast.unparse(statement):
            break
    code = compile(ast.Module(body=[*imports, *body], type_ignores=[]), spec.origin, "exec")
    namespace: dict[str, Any] = {}
    saved = sys.argv
    sys.argv = ["train_ppo_ray", *argv]
    try:
        exec(code, namespace)
    finally:
        sys.argv = saved
    return hierarchize(namespace["args"])


def _stdlib(node: ast.Import | ast.ImportFrom) -> bool:
    names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
    return all(n in ("argparse", "os", "datetime") for n in names)


def verl_overrides(*, values: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> list[str]:
    """The Hydra overrides of the verl snippet as the shell expands them, with ``values`` replacing
    the documented values of the keys they name (``name``, ``base_url``, ...); ``extra`` adds
    ``reward_kwargs``."""
    assert snippet("verl").startswith("python -m verl.trainer.main_ppo ")
    values = {**(values or {}), **{k: str(v) for k, v in (extra or {}).items()}}
    out, seen = [], set()
    for word in command_args("verl"):
        key, _, value = word.partition("=")
        leaf = key.rsplit(".", 1)[-1]
        seen.add(leaf)
        out.append(f"{key}={values.get(leaf, value)}")
    for key, value in (extra or {}).items():
        if key not in seen:
            out.append(f"+reward.custom_reward_function.reward_kwargs.{key}={value}")
    return out


def verl_config(overrides: list[str]) -> Any:
    """verl 0.9.1's trainer config (``ppo_trainer.yaml``, its Hydra schema) composed with ``overrides``."""
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def run_python_snippet(name: str, replacements: dict[str, str], namespace: dict[str, Any]) -> dict[str, Any]:
    """Run a Python snippet after replacing the placeholders it shows (``gconfig=...``, the URL) with
    the test's own values; every replacement must occur, so a changed snippet fails loudly."""
    code = snippet(name)
    for old, new in replacements.items():
        assert old in code, f"docs/trainers.md's {name} snippet no longer holds {old!r}"
        code = code.replace(old, new)
    exec(compile(code, f"docs/trainers.md:{name}", "exec"), namespace)
    return namespace

"""The recall demo's claims, the package's layering rules and its public names."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import titanmem
from titanmem.cli import main
from titanmem.recall import RecallSetting, chunk_matches_naive, recall_accuracy

PACKAGE = Path(titanmem.__file__).parent
# docs/design.md: each stratum imports only from the ones above it.
STRATA = ["ops", "modules", "layers", "blocks", "models", "data", "train", "eval", "bench"]
# One subpackage per application domain: each imports from the strata and itself, never from another
# domain, and no stratum imports a domain.
DOMAINS = ["timeseries", "fewshot", "genomics"]
ALLOWED = {
    "ops": {"ops"},
    "modules": {"ops", "modules"},
    "layers": {"ops", "modules", "layers"},
    "blocks": {"ops", "modules", "layers", "blocks"},
    "models": {"ops", "modules", "layers", "blocks", "models"},
    "data": {"data"},
    "train": set(STRATA),
    "eval": set(STRATA),
    "bench": set(STRATA),
    **{domain: set(STRATA) | {domain} for domain in DOMAINS},
}


def test_few_pairs_are_recalled_exactly():
    assert recall_accuracy(RecallSetting(pairs=16, depth=1, theta=0.5)) == 1.0


def test_recall_falls_with_load_and_with_forgetting():
    light = recall_accuracy(RecallSetting(pairs=32, depth=1, theta=0.5))
    heavy = recall_accuracy(RecallSetting(pairs=128, depth=1, theta=0.5))
    forgetting = recall_accuracy(RecallSetting(pairs=32, depth=1, theta=0.5, alpha=0.1))
    assert heavy < light and forgetting < light


def test_repeated_passes_raise_recall_of_a_deep_memory():
    once = recall_accuracy(RecallSetting(pairs=128, depth=2, theta=0.1, eta=0.5, passes=1))
    eight = recall_accuracy(RecallSetting(pairs=128, depth=2, theta=0.1, eta=0.5, passes=8))
    assert eight > 0.95 and eight > once


def test_recall_demo_runs_from_the_cli(capsys):
    assert main(["recall"]) == 0
    out = capsys.readouterr().out
    assert "recall" in out and "max |difference|" in out
    assert chunk_matches_naive() < 1e-5


def _imported_strata(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                parts = path.relative_to(PACKAGE).parts[: -node.level]
                target = list(parts) + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("titanmem."):
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                found.add(target[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("titanmem."):
                    found.add(alias.name.split(".")[1])
    return found & set(STRATA + DOMAINS)


@pytest.mark.parametrize("stratum", STRATA + DOMAINS)
def test_strata_import_only_upwards(stratum):
    paths = list((PACKAGE / stratum).rglob("*.py"))
    assert paths, f"titanmem/{stratum} holds no module"
    for path in paths:
        bad = _imported_strata(path) - ALLOWED[stratum]
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}; {stratum} may import {sorted(ALLOWED[stratum])}"


def test_ops_do_not_import_transformers():
    for path in (PACKAGE / "ops").rglob("*.py"):
        assert "transformers" not in path.read_text(), path


def test_only_models_and_the_lm_eval_adapter_import_transformers():
    # docs/design.md: titanmem/models is the stratum that imports transformers; the lm-eval adapter
    # (titanmem/eval/lm_eval) also needs it, to save a tokenizer that AutoTokenizer loads.
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if "models" in parts or parts[:2] == ("eval", "lm_eval"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not any(n.split(".")[0] == "transformers" for n in names), f"{path} imports transformers"


# Every module file of the package, as a dotted name. ``__main__.py`` files would run a command when
# imported, so they are left out (the package has none today).
MODULES = sorted(
    ".".join(("titanmem",) + path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
    if path.name != "__main__.py"
)

# What ``import titanmem`` promises (docs/design.md, README): the op, the layers, the blocks, the models.
TOP_LEVEL = {
    "titanmem.ops": ["neural_memory_chunk", "neural_memory_naive", "MemoryState"],
    "titanmem.layers": ["NeuralMemory", "Attention"],
    "titanmem.blocks": ["BlockSpec", "build_block", "VARIANTS"],
    "titanmem.models": ["TitansConfig", "TitansForCausalLM", "TitansModel", "TitansCache"],
}


def test_every_module_file_is_listed():
    # The parametrisation below is only as good as this discovery: a glob that missed subpackages
    # would let their modules go unchecked.
    assert {"titanmem", "titanmem.ops.neural_memory.chunk", "titanmem.eval.lm_eval.model", "titanmem.timeseries.train"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_its_public_names(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    public = list(module.__all__)
    assert all(isinstance(n, str) for n in public), f"{name}.__all__ holds non-strings: {public}"
    assert len(public) == len(set(public)), f"{name}.__all__ lists a name twice: {public}"
    # getattr, not a look into the module's namespace: a lazily loaded name (titanmem.eval.lm_eval)
    # must load, and one that raises AttributeError is a broken promise.
    missing = [n for n in public if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names {missing}, which the module does not define"


def test_top_level_exports_the_main_classes_and_functions():
    for where, names in TOP_LEVEL.items():
        source = importlib.import_module(where)
        for n in names:
            assert n in titanmem.__all__, f"titanmem.__all__ lacks {n}"
            # The same object as in its stratum, not a copy or a wrapper.
            assert getattr(titanmem, n) is getattr(source, n), f"titanmem.{n} is not {where}.{n}"
    assert isinstance(titanmem.__version__, str) and "__version__" in titanmem.__all__

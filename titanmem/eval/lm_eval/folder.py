"""A model folder that lm-eval's ``hf`` model loads: weights, config, an AutoTokenizer tokenizer, and
(for the plain ``lm_eval`` command, which never imports titanmem) a two-line remote-code module.

``lm_eval --model hf --model_args pretrained=<folder>,trust_remote_code=True`` then loads it offline:
the ``auto_map`` in ``config.json`` names ``titanmem_remote.py``, which only imports the installed
``titanmem`` classes. In a process that has imported ``titanmem`` (``titanmem eval lm-eval``, or
Python after ``import titanmem``) ``trust_remote_code`` is not needed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..loading import resolve_source, tokenizer_for

__all__ = ["REMOTE_MODULE", "prepare_lm_eval_folder"]

REMOTE_MODULE = "titanmem_remote"
_REMOTE_CODE = '''"""Remote code for ``trust_remote_code=True`` loaders: the installed titanmem package's classes."""

from titanmem.models.configuration_titans import TitansConfig
from titanmem.models.modeling_titans import TitansForCausalLM, TitansModel

__all__ = ["TitansConfig", "TitansForCausalLM", "TitansModel"]
'''
_AUTO_MAP = {"AutoConfig": f"{REMOTE_MODULE}.TitansConfig", "AutoModel": f"{REMOTE_MODULE}.TitansModel",
             "AutoModelForCausalLM": f"{REMOTE_MODULE}.TitansForCausalLM"}


def prepare_lm_eval_folder(path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                           model_max_length: int | None = None, remote_code: bool = True) -> Path:
    """Make ``out_dir`` (default: ``path`` itself, when it is a Hugging Face folder) loadable by lm-eval's ``hf``.

    Args:
        path: a model folder, training checkpoint or run folder.
        out_dir: where to write; required for a checkpoint (it is exported there).
        model_max_length: the window of lm-eval's ``hf`` model (default: the training ``seq_len``).
        remote_code: also write ``titanmem_remote.py`` and ``auto_map`` (for ``trust_remote_code=True``).
    Returns:
        the folder.
    """
    source = resolve_source(path)
    if source.kind == "checkpoint":
        if out_dir is None:
            raise ValueError(f"out_dir must be given to export checkpoint {str(source.path)!r}, got None")
        from ...train.export import export_pretrained

        folder = export_pretrained(source.path, out_dir)
    else:
        folder = source.path if out_dir is None else Path(out_dir)
        if folder.resolve() != source.path.resolve():
            shutil.copytree(source.path, folder, dirs_exist_ok=True)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    spec = tokenizer_for(source, int(config.get("vocab_size", 256))).name
    if model_max_length is None:
        model_max_length = ((source.job or {}).get("data") or {}).get("seq_len")
    from .tokenizer import save_tokenizer_for_hf

    save_tokenizer_for_hf(spec, folder, model_max_length=model_max_length)
    if remote_code:
        (folder / f"{REMOTE_MODULE}.py").write_text(_REMOTE_CODE, encoding="utf-8")
        config["auto_map"] = dict(_AUTO_MAP)
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder

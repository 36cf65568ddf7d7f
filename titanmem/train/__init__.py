"""Training: job configuration, optimizer, loop, checkpoints, distributed wrapping."""

from .checkpoint import CheckpointError, find_resumable, load_checkpoint, save_checkpoint, verify_checkpoint
from .config import JobConfig, config_from_dict, load_config
from .export import export_pretrained
from .trainer import TrainResult, build_model_config, train

__all__ = [
    "CheckpointError", "JobConfig", "TrainResult", "build_model_config", "config_from_dict", "export_pretrained",
    "find_resumable", "load_checkpoint", "load_config", "save_checkpoint", "train", "verify_checkpoint",
]

"""Single-task dense vision transformers and the checkpoint format they share."""

from mtshare_ros.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mtshare_ros.models.vit import TASK_CHANNELS, DenseViT, ModelConfig, build_task_models

__all__ = [
    "TASK_CHANNELS",
    "CheckpointError",
    "DenseViT",
    "ModelConfig",
    "build_task_models",
    "load_checkpoint",
    "save_checkpoint",
]

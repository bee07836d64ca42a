"""Single-task dense vision transformers and the checkpoint format they share."""

from mtshare_ros.models.checkpoint import (
    CheckpointError,
    checkpoint_shares_encoder,
    load_checkpoint,
    save_checkpoint,
)
from mtshare_ros.models.vit import (
    DenseViT,
    ModelConfig,
    build_task_models,
    run_tasks,
    shared_encoder_of,
)

__all__ = [
    "CheckpointError",
    "DenseViT",
    "ModelConfig",
    "build_task_models",
    "checkpoint_shares_encoder",
    "load_checkpoint",
    "run_tasks",
    "save_checkpoint",
    "shared_encoder_of",
]

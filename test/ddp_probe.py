"""Run by ``torchrun`` in the data-parallel tests: trains like ``mtshare train`` and also saves the gradients of
the first step (after DistributedDataParallel's all-reduce, before the optimizer), which are what a data-parallel
run must reproduce exactly up to float32 rounding: the weights after several Adam steps are not (see
``ddp_compare.py``).

    python -m torch.distributed.run ... test/ddp_probe.py CONFIG OUT_DIR [KEY=VALUE ...]
"""

import sys
from pathlib import Path

import torch

from mtshare_ros.training.config import load_config
from mtshare_ros.training.distributed import shutdown
from mtshare_ros.training.trainer import Trainer


def main() -> None:
    config, out_dir, *overrides = sys.argv[1:]
    cfg = load_config(config, [*overrides, f"train.out_dir={out_dir}"])
    trainer = Trainer(cfg)
    try:
        for m in trainer.models.values():
            m.train()
        trainer.train_step(next(trainer._batches()))
        if trainer.info.is_main:  # named_parameters() names a shared encoder once, under its first task
            grads = {name: p.grad.detach().clone() for name, p in trainer.models.named_parameters()}
            torch.save(grads, Path(out_dir) / "first_step_grads.pt")
        trainer.run()  # continues from step 1
    finally:
        shutdown(trainer.info)


if __name__ == "__main__":
    main()

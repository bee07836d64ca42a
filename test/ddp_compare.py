"""What a data-parallel run must reproduce of a one-process run with the same global batch, and to what tolerance.

Two processes sum the gradients in another order than one process (gloo's all-reduce of two halves of the batch
against one backward pass over all of it), and CPUs of another capability (AVX2, AVX-512) or another torch
release order float32 reductions differently again. So nothing is bit-exact, and what can be compared is what
these rounding differences cannot move far:

- **The first step's gradients**, per tensor, within ``GRAD_TOL`` of the tensor's largest gradient: float32
  rounding leaves about 1e-7 of it (a few hundred terms summed in another order), a wrong average (a sum, half
  of it, a rank's own gradient without the all-reduce) at least 0.5 of it somewhere.
- **The losses of every later step**, within ``LOSS_RTOL``: they follow from the weights of each step.
- **The trained models' outputs** on a fixed input, within ``OUTPUT_TOL`` of each output's range.

What is *not* compared is the raw weights after several AdamW steps: Adam divides each gradient by its own
running magnitude, so where a gradient is at the level of rounding noise its update is still ``lr`` per step, in
a direction the rounding picks. Attention keys' biases are such parameters: softmax is invariant to a constant
added to every score, so their gradient is exactly zero in exact arithmetic and pure rounding noise in float32;
after 5 steps at lr 2e-3 they differ by up to 1e-2 between machines (issue 27: ``qkv.bias differs`` on
AVX-512), with no effect on any output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from mtshare_ros.models import load_checkpoint, run_tasks

REPO = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).with_name("ddp_probe.py")
GRAD_TOL = 1e-3  # of the tensor's largest |gradient|; float32 rounding leaves ~1e-7, a wrong average >= 0.5
LOSS_RTOL = 1e-3
OUTPUT_TOL = 1e-3  # of each output's range (max - min over the batch)


def run_probe(out_dir: Path, nproc: int, args: list[str], env: dict[str, str] | None = None) -> Path:
    """``torchrun`` of ``ddp_probe.py`` (training as ``mtshare train`` does, plus the first step's gradients)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = out_dir / "toy.yaml"
    config.write_text("data:\n  dataset: toy\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(PROBE),
           str(config), str(out_dir), *args, "train.grad_clip=0", "train.log_every=1"]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out_dir


def gradient_errors(one: Path, two: Path) -> dict[str, float]:
    """Per parameter, the largest difference of the first step's gradients over the tensor's largest gradient."""
    a = torch.load(one / "first_step_grads.pt")
    b = torch.load(two / "first_step_grads.pt")
    assert a.keys() == b.keys()
    return {k: float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-30)) for k in a}


def losses(run: Path) -> list[dict[str, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith("loss/")} for r in records if "val" not in r]


def output_errors(one: Path, two: Path, shared: bool = False) -> dict[str, float]:
    """Per task, the largest difference of the two trained models' outputs on a fixed input, over its range."""
    m1, meta = load_checkpoint(one / "model.pt", shared_encoder=shared)
    m2, _ = load_checkpoint(two / "model.pt", shared_encoder=shared)
    h, w = meta["model_config"].img_size
    x = torch.randn(4, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        o1 = run_tasks({t: m.eval() for t, m in m1.items()}, x)
        o2 = run_tasks({t: m.eval() for t, m in m2.items()}, x)
    return {t: float((o1[t] - o2[t]).abs().max() / (o1[t].max() - o1[t].min()).clamp_min(1e-30)) for t in o1}


def assert_data_parallel_matches(one: Path, two: Path, shared: bool = False) -> None:
    """The three comparisons of this module's docstring, each naming what differs."""
    bad = {k: e for k, e in gradient_errors(one, two).items() if e > GRAD_TOL}
    assert not bad, f"first-step gradients differ (fraction of each tensor's largest): {bad}"
    l1, l2 = losses(one), losses(two)
    assert len(l1) == len(l2) > 1
    for step, (a, b) in enumerate(zip(l1, l2, strict=True)):
        for k, v in a.items():
            assert abs(v - b[k]) <= LOSS_RTOL * abs(v), f"logged record {step}: {k} {v} vs {b[k]}"
    bad = {t: e for t, e in output_errors(one, two, shared).items() if e > OUTPUT_TOL}
    assert not bad, f"trained models' outputs differ (fraction of each output's range): {bad}"

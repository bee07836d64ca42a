"""The machine and software a benchmark ran on, recorded with every benchmark result.

Absolute times in these benchmarks differ about 2x between machines: the CPU's vector width (torch's
kernels dispatch on AVX2 vs AVX-512), the cores and torch threads, the torch build. A time without this
record cannot be compared with another run's, so every bench script stores ``environment_record()`` under
the key ``environment`` of its JSON and shows ``environment_line()`` in its Markdown header.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch


def _cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo on Linux, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment_record() -> dict[str, Any]:
    """What every benchmark result carries about where it ran. Call it after setting torch's thread count."""
    cuda = torch.cuda.is_available()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch dispatches to
        "cpu_model": _cpu_model(),
        "arch": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def environment_line(env: dict[str, Any] | None) -> str:
    """The record in one line, for a report's header."""
    if not env:
        return "not recorded"
    cpus = f"{env['cpu_count']} cores" + (
        f" ({env['cpu_usable']} usable)" if env.get("cpu_usable") not in (None, env["cpu_count"]) else ""
    )
    return (
        f"torch {env['torch']}, CPU capability {env['cpu_capability']}, {env['cpu_model']} ({env['arch']}), "
        f"{cpus}, {env['torch_threads']} torch threads, CUDA: {env['cuda_device'] or 'none'}, "
        f"Python {env['python']}, {env['platform']}"
    )


def write_result(name: str, result: dict[str, Any], markdown: str, out_dir: Path | None = None) -> None:
    """``<out_dir>/<name>.json`` and ``.md`` (default bench/results/), and the Markdown on stdout."""
    out = out_dir or Path(__file__).resolve().parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown)
    print(markdown)

"""Memory for a frame's outputs, reused frame after frame: where each output is computed and its host copy.

The node publishes every frame at the same size, so the output arrays (a 240x320 frame: 1.5 MB of points,
0.9 MB of normals, 230 kB per colour image) can be allocated once instead of per frame. On CUDA each output
is computed in its own device buffer and copied once into its own pinned host buffer (pinned memory copies
asynchronously and faster than pageable memory); every copy of a frame is queued, then waited for once. On the
CPU the output is computed straight into its host buffer: computing it is its copy.

The arrays handed out stay valid until the same output of the next frame is made: the caller turns them into
messages (which copy) before that. A caller that keeps arrays across frames uses a fresh ``OutputBuffers``.

Only the outputs of the last frame keep their buffers (``end_frame``): an output nobody subscribes to any more, or
of a task no longer run, would otherwise hold memory of a size the stream may never have again.
"""

from __future__ import annotations

import numpy as np
import torch


class OutputBuffers:
    """Per-output device and host buffers, keyed by output name, reallocated only when shape, dtype or device
    change (another camera resolution, another device)."""

    def __init__(self) -> None:
        self._device: dict[str, torch.Tensor] = {}
        self._host: dict[str, torch.Tensor] = {}
        self._pending: torch.device | None = None
        self._used: set[str] = set()  # outputs made since the last end_frame

    def _fit(self, store: dict[str, torch.Tensor], name: str, shape: tuple[int, ...], dtype: torch.dtype,
             device: torch.device, pin: bool = False) -> torch.Tensor:
        """``store[name]`` when it still fits, else a new one in its place (the old one is freed with it)."""
        self._used.add(name)
        buf = store.get(name)
        if (buf is None or tuple(buf.shape) != tuple(shape) or buf.dtype != dtype or buf.device != device
                or (pin and not buf.is_pinned())):  # a CPU run's host buffer, now a GPU's copy target
            buf = store[name] = torch.empty(shape, dtype=dtype, device=device, pin_memory=pin)
        return buf

    def device(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The buffer output ``name`` is computed into on ``device``; on the CPU it is its host buffer."""
        if device.type == "cpu":
            return self._fit(self._host, name, shape, dtype, device)
        return self._fit(self._device, name, shape, dtype, device)

    def to_host(self, name: str, tensor: torch.Tensor) -> np.ndarray:
        """``tensor`` as a host array: a view when it is on the CPU already, else one copy into the pinned host
        buffer of ``name``, queued behind the work that makes ``tensor`` (valid after ``wait``)."""
        if tensor.device.type == "cpu":
            return tensor.numpy()
        host = self._fit(self._host, name, tuple(tensor.shape), tensor.dtype, torch.device("cpu"),
                         pin=tensor.device.type == "cuda")
        host.copy_(tensor, non_blocking=True)
        self._pending = tensor.device
        return host.numpy()

    def wait(self) -> None:
        """Finish every copy queued by ``to_host`` since the last wait: one synchronisation per frame."""
        if self._pending is not None and self._pending.type == "cuda":
            torch.cuda.current_stream(self._pending).synchronize()
        self._pending = None

    def end_frame(self) -> None:
        """The frame's outputs are made: wait for their copies, and drop the buffers of outputs it did not make."""
        self.wait()
        for store in (self._device, self._host):
            for name in [n for n in store if n not in self._used]:
                del store[name]
        self._used = set()

    def release(self) -> None:
        """Drop every buffer (lifecycle deactivate frees device memory; the next frame allocates again)."""
        self.wait()
        self._device.clear()
        self._host.clear()
        self._used = set()

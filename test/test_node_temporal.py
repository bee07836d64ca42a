"""Temporal sharing in a real node process: a rendered camera sequence streamed over topics, the savings and
keyframes reported in /diagnostics, and the stream breaks that force a keyframe (~/reset, a stamp going back)."""

from __future__ import annotations

import time

import pytest
from std_srvs.srv import Trigger
from test_node_e2e import Rig

from mtshare_ros.data.motion import render_motion
from mtshare_ros.ros.harness import spin_until

FPS = 30.0


@pytest.fixture(scope="module")
def frames():
    return [f.rgb for f in render_motion(3_000_009, "slow_pan", 12, FPS)]


@pytest.fixture(scope="module")
def rig(ros_session, tmp_path_factory):
    with Rig("/mtshare_temporal", tmp_path_factory.mktemp("node"),
             ["-p", "temporal.enabled:=true", "-p", "temporal.keyframe_interval:=1000"]) as r:
        yield r


def _send(rig: Rig, rgb, stamp: float, timeout: float = 30.0) -> None:
    """Publish one frame at ``stamp`` and wait until its segmentation comes back (frames go one by one, so none
    is dropped and the stream's time line is the stamps', not the wall clock's)."""
    end = time.monotonic() + timeout
    sec, nsec = int(stamp), round((stamp - int(stamp)) * 1e9)
    while time.monotonic() < end:
        rig.cam.publish(rgb, frame_id="cam", stamp=stamp)
        if spin_until(rig.ex, lambda: any((r.msg.header.stamp.sec, r.msg.header.stamp.nanosec) == (sec, nsec)
                                          for r in rig.rec.messages["segmentation"]), 2.0):
            return
    raise AssertionError(f"no output for stamp {stamp}:\n{rig.log.read_text()[-3000:]}")


def _diagnostics(rig: Rig, frames: int) -> dict[str, str]:
    assert spin_until(rig.ex, lambda: int(rig.rec.latest_diagnostics().get("temporal_frames", 0)) >= frames, 10)
    return rig.rec.latest_diagnostics()


def test_a_rendered_stream_reports_temporal_savings_and_breaks_force_keyframes(rig, frames):
    t0 = 1000.0
    for k, rgb in enumerate(frames):
        _send(rig, rgb, t0 + k / FPS)
    d = _diagnostics(rig, len(frames))
    assert int(d["temporal_keyframes"]) == 1, d  # one keyframe, then the slow pan reuses earlier frames
    assert d["keyframe_reasons"] == "start=1" and d["last_keyframe_reason"] == "start", d
    assert float(d["keyframe_rate"]) < 0.5
    assert float(d["recomputed_segmentation"]) < 0.9  # the last frame: the base task skipped tokens
    assert float(d["gmacs_executed"]) < float(d["gmacs_independent"])
    # the motion estimate: the camera pans (to the left in the image: content moves right), estimated in ms
    assert float(d["motion_dx_px"]) > 0.3 and abs(float(d["motion_dy_px"])) < 1.0, d
    assert 0.0 < float(d["motion_ms"]) < 1000.0 and 0.0 <= float(d["temporal_drift"]) < 1.0, d

    reset = rig.call(Trigger, "reset", Trigger.Request())
    assert reset.success
    _send(rig, frames[-1], t0 + len(frames) / FPS)
    d = _diagnostics(rig, len(frames) + 1)
    assert int(d["temporal_keyframes"]) == 2, d

    _send(rig, frames[0], t0)  # the stamp goes back: a bag that loops
    d = _diagnostics(rig, len(frames) + 2)
    assert int(d["temporal_keyframes"]) == 3, d
    log = rig.log.read_text()
    assert "new stream (~/reset)" in log and "stamp went back" in log

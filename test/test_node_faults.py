"""The node under bad input and faults, each against a real node process and each followed by a good frame that
must still come back right: settings changed while frames stream, bad camera_info, values that make no sense,
frames of extreme shape, and stopping while streaming."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
from lifecycle_msgs.srv import GetState
from std_msgs.msg import Header
from test_node_e2e import Rig, scene

from mtshare_ros.ros.conversions import image_to_array
from mtshare_ros.ros.harness import camera_info_for, spin_until, stop_process


@pytest.fixture(scope="module")
def rig(ros_session, tmp_path_factory):
    with Rig("/mtshare_faults", tmp_path_factory.mktemp("node")) as r:
        yield r


def test_changing_tasks_while_frames_stream_fails_no_frame(rig):
    """Task sets switched every ~30 ms while a 30 Hz camera streams: every frame runs with one whole setting."""
    timer = rig.node.create_timer(1 / 30, lambda: rig.cam.publish(scene(11), frame_id="race"))
    sets = (["segmentation"], ["segmentation", "depth", "normals"], ["depth"], ["normals", "segmentation"])
    end = time.monotonic() + 6.0
    i = 0
    while time.monotonic() < end:
        ok, reason = rig.set_param("tasks", sets[i % len(sets)])
        assert ok, reason
        i += 1
        rig.spin(0.03)
    rig.node.destroy_timer(timer)
    ok, _ = rig.set_param("tasks", ["segmentation", "depth", "normals"])
    rig.send_until(lambda h: rig.cam.publish(scene(12), frame_id=h.frame_id), "after_race", outputs=("depth",))
    d = rig.rec.latest_diagnostics()
    assert int(d["frames_processed"]) >= 20 and d["frames_failed"] == "0", d
    assert "frame failed" not in rig.log.read_text()


def _publish_with_info(rig: Rig, rgb: np.ndarray, frame_id: str, info) -> None:
    header = Header(frame_id=frame_id, stamp=rig.node.get_clock().now().to_msg())
    info.header = header
    rig.cam.info_pub.publish(info)
    rig.spin(0.05)
    from mtshare_ros.ros.conversions import array_to_image

    rig.cam.image_pub.publish(array_to_image(rgb, header))


def test_bad_camera_info_is_refused_and_another_size_is_rescaled(rig):
    h, w = 480, 640
    for field, value, frame_id in (("fx", 0.0, "fx0"), ("cx", float("nan"), "cxnan"), ("fx", -3.0, "fxneg")):
        info = camera_info_for(h, w, 525.0, Header())
        k = list(info.k)
        k[{"fx": 0, "cx": 2}[field]] = value
        info.k = k
        rig.send_until(lambda hd, info=info, fid=frame_id: _publish_with_info(rig, scene(13), fid, info), frame_id)
        rig.spin(0.5)
        assert not rig.frames_with("points", frame_id) and not rig.frames_with("scaled_camera_info", frame_id)
    log = rig.log.read_text()
    assert "K[0] (fx) is 0, not a positive focal length" in log and "K[2] (cx) is nan" in log
    assert log.count("K[0] (fx)") == 1, "warned once per cause"
    # camera_info of 1280x720 for 640x480 frames: the outputs' intrinsics come from its own size
    info = camera_info_for(720, 1280, 1050.0, Header())
    rig.send_until(lambda hd: _publish_with_info(rig, scene(14), "other_size", info), "other_size",
                   outputs=("scaled_camera_info", "segmentation"))
    scaled = rig.frames_with("scaled_camera_info", "other_size")[-1].msg
    assert np.allclose([scaled.k[0], scaled.k[2], scaled.k[5]], [262.5, 159.5, 119.5])
    assert "camera_info describes 1280x720 images but frames" in rig.log.read_text()
    # and a good camera_info again gives points
    good = camera_info_for(h, w, 525.0, Header())
    rig.send_until(lambda hd: _publish_with_info(rig, scene(15), "good_again", good), "good_again",
                   outputs=("scaled_camera_info",))


def test_values_that_mean_nothing_are_refused_with_a_reason(rig):
    for name, value, words in (
        ("sharing.threshold", 1.5, "sharing.threshold"),
        ("sharing.depth_threshold", -0.5, "-1"),
        ("tasks", ["depth", "depth"], "twice"),
        ("sharing.treshold", 0.1, "did you mean 'sharing.threshold'"),
    ):
        ok, reason = rig.set_param(name, value)
        assert not ok and words in reason, (name, reason)
    ok, reason = rig.set_param("sharing.depth_threshold", -1.0)
    assert ok, reason
    rig.send_until(lambda h: rig.cam.publish(scene(16), frame_id=h.frame_id), "after_refusals")


def test_a_very_wide_strip_is_capped(rig):
    strip = np.ascontiguousarray(np.tile(scene(17)[:30], (1, 2, 1))[:, :1000])  # 1000x30
    rig.send_until(lambda h: rig.cam.publish(strip, frame_id=h.frame_id), "strip", outputs=("depth",))
    depth = image_to_array(rig.frames_with("depth", "strip")[0].msg)
    assert depth.shape[1] <= 640 and depth.shape[0] >= 16
    rig.send_until(lambda h: rig.cam.publish(scene(18), frame_id=h.frame_id), "after_strip", outputs=("depth",))
    assert image_to_array(rig.frames_with("depth", "after_strip")[0].msg).shape == (240, 320)


def _own_segments(pid: int, since: float) -> set[str]:
    """The Fast DDS shared-memory segments a process created: mapped by it and made after ``since`` (it also maps
    the segments of every other participant it reads from, and the port files all processes share)."""
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = Path(line.split()[-1]) if "/dev/shm/" in line else None
        if path and path.name.startswith("fastdds_") and "port" not in path.name and path.stat().st_ctime >= since:
            names.add(path.name)
    return names


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stopping_while_streaming_is_clean(ros_session, tmp_path, sig):
    rclpy.create_node("shm_probe").destroy_node()  # this process's DDS participant exists before ``since``
    since = time.time() - 0.01  # every other participant on the machine is older than this test's node
    r = Rig(f"/mtshare_stop_{int(sig)}", tmp_path)
    try:
        r.wait_ready()
        own = _own_segments(r.proc.pid, since)
        assert own, "the node process mapped no shared-memory segment: nothing to check"
        timer = r.node.create_timer(1 / 30, lambda: r.cam.publish(scene(19), frame_id="stream"))
        assert spin_until(r.ex, lambda: len(r.frames_with("segmentation", "stream")) >= 3, 60)
        r.proc.send_signal(sig)
        r.spin(0.2)
        code = r.proc.wait(30)
        r.node.destroy_timer(timer)
    finally:
        stop_process(r.proc)
        r.node.destroy_node()
    log = r.log.read_text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and "RCLError" not in log, log[-3000:]
    time.sleep(0.5)
    left = {name for name in own if (Path("/dev/shm") / name).exists()}
    assert not left, f"shared-memory segments left behind: {sorted(left)}"


def test_outputs_at_the_camera_resolution(rig):
    """``output_size: input``: the outputs overlay the 640x480 image and its own camera_info."""
    ok, reason = rig.set_param("output_size", "input")
    assert ok, reason
    try:
        rig.send_until(lambda h: rig.cam.publish(scene(20), frame_id=h.frame_id), "full_res",
                       outputs=("depth", "segmentation", "normals", "scaled_camera_info"))
        for name in ("depth", "segmentation", "normals"):
            assert image_to_array(rig.frames_with(name, "full_res")[0].msg).shape[:2] == (480, 640), name
        info = rig.frames_with("scaled_camera_info", "full_res")[0].msg
        assert (info.height, info.width) == (480, 640) and np.isclose(info.k[0], 525.0)
    finally:
        ok, reason = rig.set_param("output_size", "inference")
        assert ok, reason


def test_a_4096x3072_frame_reaches_the_node(rig):
    """The shipped Fast DDS profile carries a 36 MiB rgb8 frame between processes (the default one does not)."""
    big = np.ascontiguousarray(np.repeat(np.repeat(scene(21), 8, axis=0), 8, axis=1)[:3072, :4096])
    rig.send_until(lambda h: rig.cam.publish(big, frame_id=h.frame_id), "big", outputs=("depth",), timeout=90)
    depth = image_to_array(rig.frames_with("depth", "big")[0].msg)
    assert depth.shape == (240, 320)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def assert_configure_failed(r: Rig, reason: str) -> None:
    """Configure failed with ``reason`` logged at ERROR; the process runs on, unconfigured."""
    assert spin_until(r.ex, lambda: "configure failed" in r.log.read_text(), 120), r.log.read_text()[-2000:]
    log = r.log.read_text()
    assert "[ERROR]" in log and reason in log, log[-2000:]
    state = r.call(GetState, "get_state", GetState.Request())
    assert state.current_state.label == "unconfigured"
    assert r.proc.poll() is None


def test_cuda_asked_for_without_cuda_fails_clearly_and_the_node_stays_up(ros_session, tmp_path):
    """``device: cuda`` is strict (a robot set up for a GPU must not quietly run on the CPU): configure fails
    with the reason through the node's logger, the process keeps running, unconfigured, and serves nothing;
    ``device: auto`` (the shipped default, tested everywhere else) runs on the CPU."""
    r = Rig("/mtshare_cuda", tmp_path, extra_args=["-p", "device:=cuda"])
    try:
        assert_configure_failed(r, "device 'cuda' requested but CUDA is not available")
        r.cam.publish(scene(20), frame_id="nocuda")
        r.spin(1.0)
        assert not r.frames_with("segmentation", "nocuda")
    finally:
        r.close()


# Made the node process's sitecustomize (on its PYTHONPATH): the step of a frame that the flag file names runs out of
# device memory once, at its next call; the node's code is the shipped one.
OOM_INJECTION = '''
import os
from pathlib import Path

import torch

from mtshare_ros.runtime import outputs, predictor
from mtshare_ros.tasks import depth as depth_task

FLAG = Path(os.environ["MTSHARE_TEST_OOM_FLAG"])


def once(step, real):
    def wrapped(*args, **kwargs):
        if FLAG.exists() and FLAG.read_text() == step:
            FLAG.unlink()
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected in {step})")
        return real(*args, **kwargs)
    return wrapped


predictor.Predictor._run = once("inference", predictor.Predictor._run)
depth_task.in_range = once("postprocess", depth_task.in_range)
outputs.depth_to_points = once("points", outputs.depth_to_points)
'''


def test_a_frame_out_of_device_memory_is_skipped_and_the_node_serves_the_next(ros_session, tmp_path, monkeypatch):
    """Out of device memory in inference, in its postprocessing or while the outputs are made on the device: that
    frame is skipped with a warning and counted as rejected (not failed), caches are released, and the next frame
    comes back as before."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(OOM_INJECTION)
    flag = tmp_path / "oom"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MTSHARE_TEST_OOM_FLAG", str(flag))
    with Rig("/mtshare_oom", tmp_path) as r:
        outputs = ("segmentation", "depth", "points")
        r.send_until(lambda h: r.cam.publish(scene(30), frame_id=h.frame_id), "before", outputs=outputs)
        steps = ("inference", "postprocess", "points")
        for step in steps:
            flag.write_text(step)
            sent = 0
            while flag.exists() and sent < 20:  # until the node took it (a best-effort frame may be lost)
                r.cam.publish(scene(31), frame_id=f"oom_{step}")
                sent += 1
                spin_until(r.ex, lambda: not flag.exists(), 3.0)
            assert not flag.exists(), f"no frame reached the {step} step:\n{r.log.read_text()[-3000:]}"
            r.send_until(lambda h: r.cam.publish(scene(30), frame_id=h.frame_id), f"after_{step}", outputs=outputs)
            assert len(r.frames_with("segmentation", f"oom_{step}")) < sent, f"the frame out of memory in {step}"
            assert (image_to_array(r.frames_with("depth", f"after_{step}")[0].msg).tobytes()
                    == image_to_array(r.frames_with("depth", "before")[0].msg).tobytes())
        r.spin(1.5)  # a diagnostics message after the last frame
        d = r.rec.latest_diagnostics()
        assert d["frames_rejected"] == str(len(steps)) and d["frames_failed"] == "0", d
        log = r.log.read_text()
        assert "frame skipped, caches released" in log and "injected in inference" in log, log[-3000:]
        assert "frame failed" not in log and r.proc.poll() is None


def test_backend_onnxruntime_without_onnxruntime_fails_configure_clearly_and_the_node_stays_up(ros_session, tmp_path,
                                                                                            monkeypatch):
    """``backend: onnxruntime`` on a machine whose Python has no onnxruntime (an ``onnxruntime`` that fails to
    import shadows the installed one on the node's PYTHONPATH): configure fails naming the missing package, the
    process keeps running, unconfigured."""
    site = tmp_path / "site" / "onnxruntime"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("raise ImportError('No module named onnxruntime')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site.parent), os.environ.get("PYTHONPATH")])))
    r = Rig("/mtshare_noort", tmp_path, extra_args=["-p", "backend:=onnxruntime"])
    try:
        assert_configure_failed(r, "the onnxruntime package is not installed")
    finally:
        r.close()

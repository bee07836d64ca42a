"""The latency budget in a real node process: a slow frame (the worker really sleeps: ``MTSHARE_TEST_DELAY_FILE``,
the node's documented test hook) pushes the camera's p95 above ``latency_budget_ms``; the node lowers its token
caps and says so in /diagnostics; once frames are fast again it restores them. Also: the CPU-sharing report."""

from __future__ import annotations

import os
import time

from test_node_e2e import Rig

from mtshare_ros.ros.harness import pattern_frame

BUDGET_MS = 2000.0
SLOW_MS = 3000.0


def _diag(rig) -> dict:
    return rig.rec.latest_diagnostics()


def test_budget_lowers_caps_under_a_slow_frame_and_restores_them(tmp_path, ros_session, monkeypatch):
    delay = tmp_path / "delay_ms"
    delay.write_text("0")
    monkeypatch.setenv("MTSHARE_TEST_DELAY_FILE", str(delay))
    rig = Rig("/budget", tmp_path, extra_args=["-p", f"latency_budget_ms:={BUDGET_MS}"])
    frame = pattern_frame(0, 240, 320)
    with rig:
        def run_until(cond, timeout):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                rig.cam.publish(frame)
                rig.spin(0.3)
                if cond(_diag(rig)):
                    return True
            return False

        assert run_until(lambda d: int(d.get("frames_processed", "0")) >= 3, 60), rig.log.read_text()[-2000:]
        nominal = _diag(rig)
        assert nominal["budget_level"] == "0" and nominal["budget_sharing_max_token_fraction"] == "0.100"
        assert nominal["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
        assert nominal["threads"].isdigit() and "threads: auto" in nominal["threads_choice"]
        delay.write_text(str(SLOW_MS))
        assert run_until(lambda d: int(d.get("budget_level", "0")) >= 1, 120), rig.log.read_text()[-2000:]
        lowered = _diag(rig)
        assert float(lowered["budget_sharing_max_token_fraction"]) < 0.1
        assert "> budget" in lowered["budget_last_change"], lowered
        delay.write_text("0")
        assert run_until(lambda d: d.get("budget_level") == "0", 180), rig.log.read_text()[-2000:]
        restored = _diag(rig)
        assert restored["budget_sharing_max_token_fraction"] == "0.100" and "back to" in restored["budget_last_change"]
        assert rig.proc.poll() is None
    rig.close()

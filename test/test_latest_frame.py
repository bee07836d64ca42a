"""The latest-frame worker: no backlog, newest frame wins, drops counted, errors survived."""

import threading
import time

from mtshare_ros.runtime.latest_frame import LatestFramesWorker


def test_slow_worker_processes_newest_and_counts_drops():
    seen = []
    gate = threading.Event()

    def process(batch):
        gate.wait(5)
        seen.extend(batch.values())
        return ()

    w = LatestFramesWorker(process, on_error=lambda key, exc: None)
    w.start()
    w.submit("cam", 0)
    time.sleep(0.1)  # 0 is in progress, blocked on the gate
    for i in range(1, 10):
        w.submit("cam", i)
    gate.set()
    deadline = time.monotonic() + 5
    while w.count("cam").processed < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    c = w.count("cam")
    assert seen == [0, 9]
    assert c.dropped == 8 and c.submitted == 10


def test_exceptions_do_not_stop_the_worker():
    out = []

    def process(batch):
        if "bad" in batch.values():
            raise ValueError("boom")
        out.extend(batch.values())
        return ()

    errors = []
    w = LatestFramesWorker(process, on_error=lambda key, exc: errors.append(exc))
    w.start()
    w.submit("cam", "bad")
    time.sleep(0.2)
    w.submit("cam", "good")
    deadline = time.monotonic() + 5
    while not out and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert out == ["good"] and w.count("cam").failed == 1
    assert [str(e) for e in errors] == ["boom"]  # the cause reaches the owner (the node's logger)

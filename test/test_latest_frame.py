"""The latest-frame worker: no backlog, newest frame wins, drops counted, errors survived."""

import threading
import time

from mtshare_ros.runtime.latest_frame import LatestFrameWorker


def test_slow_worker_processes_newest_and_counts_drops():
    seen = []
    gate = threading.Event()

    def process(item):
        gate.wait(5)
        seen.append(item)

    w = LatestFrameWorker(process, on_error=lambda exc: None)
    w.start()
    w.submit(0)
    time.sleep(0.1)  # 0 is in progress, blocked on the gate
    for i in range(1, 10):
        w.submit(i)
    gate.set()
    deadline = time.monotonic() + 5
    while w.processed < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert seen == [0, 9]
    assert w.dropped == 8 and w.submitted == 10


def test_exceptions_do_not_stop_the_worker():
    out = []

    def process(item):
        if item == "bad":
            raise ValueError("boom")
        out.append(item)

    errors = []
    w = LatestFrameWorker(process, on_error=errors.append)
    w.start()
    w.submit("bad")
    time.sleep(0.2)
    w.submit("good")
    deadline = time.monotonic() + 5
    while not out and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert out == ["good"] and w.failed == 1
    assert [str(e) for e in errors] == ["boom"]  # the cause reaches the owner (the node's logger)

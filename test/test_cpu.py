"""CPU sharing: the thread choice and the starvation watch, with real work and real waiting."""

import time

from mtshare_ros.runtime.cpu import StarvationWatch, choose_threads, usable_cores


def test_thread_choice():
    assert choose_threads("3")[0] == 3
    n, why = choose_threads("auto", sample_s=0.1)
    assert 1 <= n <= usable_cores() and why.startswith("threads: auto")


def test_a_worker_that_waits_for_the_cpu_is_starved_and_one_that_computes_is_not():
    waiting, working = StarvationWatch(threads=1), StarvationWatch(threads=1)
    for _ in range(6):
        waiting.begin()
        time.sleep(0.02)  # wall time without CPU time: what a frame looks like when the cores are taken
        waiting.end()
        working.begin()
        end = time.process_time() + 0.02
        while time.process_time() < end:  # CPU time all along
            pass
        working.end()
    assert waiting.starved() and waiting.share() < 0.2
    # the computing one gets the CPU it asks for, less what other processes take from it on a shared machine
    assert working.share() > max(0.3, 2 * waiting.share())

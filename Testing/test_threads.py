"""Work shared between threads (threads.map_in_threads): the results in the items' order, the
first error raised in the caller, nothing started after an error, the thread cap obeyed."""

import threading
import time

import pytest

from TAREDosimetryLib.threads import THREADS_ENV, map_in_threads


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_results_keep_the_order_of_the_items(threads):
    def slow_square(x):
        time.sleep(0.001 * (x % 3))  # uneven work: the items finish out of order
        return x * x

    assert map_in_threads(slow_square, range(17), threads) == [x * x for x in range(17)]
    assert map_in_threads(slow_square, [], threads) == []


def test_the_callers_thread_works_and_no_more_threads_than_asked_run(monkeypatch):
    seen, lock = set(), threading.Lock()

    def record(x):
        with lock:
            seen.add(threading.current_thread().name)
        time.sleep(0.002)
        return x

    monkeypatch.setenv(THREADS_ENV, "2")
    assert map_in_threads(record, range(10)) == list(range(10))
    assert threading.current_thread().name in seen and len(seen) <= 2
    seen.clear()
    monkeypatch.setenv(THREADS_ENV, "1")
    map_in_threads(record, range(5))
    assert seen == {threading.current_thread().name}


def test_the_first_error_is_raised_and_no_item_starts_after_it():
    started = []

    def fail_on_3(x):
        started.append(x)
        if x == 3:
            raise ValueError("item 3")
        if x == 5:
            raise KeyError("item 5")
        time.sleep(0.005)
        return x

    with pytest.raises(ValueError, match="item 3"):
        map_in_threads(fail_on_3, range(40), 2)
    assert len(started) < 40
    assert not [t for t in threading.enumerate() if t.name.startswith("map-")]  # every helper has ended

"""The login throttle's arithmetic, on a clock the test moves (the real route: tests/e2e/test_untrusted_clients.py)."""

from __future__ import annotations

from ui.login_throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_after_five_failures_each_guess_waits_twice_as_long_up_to_the_cap():
    clock = Clock()
    throttle = LoginThrottle(free=5, base_s=1.0, max_wait_s=8.0, clock=clock)
    keys = ["address:203.0.113.1", "user:admin"]
    assert [throttle.attempt(keys) for _ in range(5)] == [0.0] * 5
    waits = []
    for _ in range(6):
        waits.append(throttle.attempt(keys))
        clock.now += waits[-1]
        assert throttle.attempt(keys) == 0.0  # the wait is over: one more guess, counted
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_key_counts_on_its_own_and_success_or_silence_clears_it():
    clock = Clock()
    throttle = LoginThrottle(free=2, base_s=10.0, forget_s=60.0, clock=clock)
    for _ in range(2):
        throttle.attempt(["address:a", "user:admin"])
    assert throttle.attempt(["address:b", "user:admin"]) == 10.0  # another address, the same user name
    assert throttle.attempt(["address:a", "user:bob"]) == 10.0  # the same address, another user name
    assert throttle.attempt(["address:c", "user:bob"]) == 0.0
    throttle.succeeded(["address:c", "user:bob"])
    clock.now += 61
    assert throttle.attempt(["address:a", "user:admin"]) == 0.0  # an hour's silence forgets


def test_an_attempt_that_checked_no_password_does_not_count_and_memory_is_bounded():
    throttle = LoginThrottle(free=1, keep=10, clock=Clock())
    throttle.attempt(["user:x"])
    throttle.void(["user:x"])
    assert throttle.attempt(["user:x"]) == 0.0
    for i in range(100):
        throttle.attempt([f"user:{i}"])
    assert len(throttle._failures) == 10

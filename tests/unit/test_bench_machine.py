"""The P1 bench's machine-wide CPU line: what a phase's groups could not use, and the host's steal."""

from __future__ import annotations

from bench.cpu import MachineTimes, describe_machine


def test_machine_times_since_is_each_state_difference() -> None:
    start = MachineTimes(busy=100.0, idle=50.0, iowait=2.0, steal=1.0)
    later = MachineTimes(busy=190.0, idle=70.0, iowait=2.5, steal=13.0)
    assert later.since(start) == MachineTimes(busy=90.0, idle=20.0, iowait=0.5, steal=12.0)


def test_describe_machine_gives_shares_of_the_whole() -> None:
    text = describe_machine(MachineTimes(busy=90.0, idle=18.0, iowait=0.0, steal=12.0))
    assert text.startswith("120.0 CPU-s in all: busy 90.0 s (75 %), idle 18.0 s (15 %)")
    assert "stolen by the host 12.0 s (10 %)" in text


def test_stolen_share_is_steal_over_all_the_machine_s_time() -> None:
    assert MachineTimes(busy=90.0, idle=18.0, iowait=0.0, steal=12.0).stolen_share == 0.1
    assert MachineTimes(busy=0.0, idle=0.0, iowait=0.0, steal=0.0).stolen_share == 0.0


def test_machine_times_read_from_this_machine_grow() -> None:
    first = MachineTimes.read()
    sum(range(200_000))
    spent = MachineTimes.read().since(first)
    assert min(spent.busy, spent.idle, spent.iowait, spent.steal) >= 0

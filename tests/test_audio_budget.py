"""Input audio may run ahead of real time by a burst (a whole recording), not indefinitely."""

from __future__ import annotations

from transports.audio_budget import AudioBudget


def test_a_recording_at_once_is_fine_a_flood_is_not():
    now = [0.0]
    budget = AudioBudget(burst_secs=120, clock=lambda: now[0])
    assert budget.allow(90.0)  # a 90 s recording sent in one message
    assert not budget.allow(40.0)  # 130 s of audio after 0 s: refused
    now[0] = 30.0
    assert budget.allow(40.0)  # 130 s of audio after 30 s: within the burst
    for second in range(31, 100):  # then real time is always fine
        now[0] = float(second)
        assert budget.allow(1.0)

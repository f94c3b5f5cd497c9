"""The playout buffer and the outbound pacer, driven tick by tick (no clock, no network): bursts
are smoothed into continuous audio, losses concealed and counted, the backlog capped; marks
follow their audio, ``clear`` drops what is queued."""

from __future__ import annotations

import numpy as np

from stream.testing import tone
from stream.transport.telephony.playout import OutboundPacer, PlayoutBuffer

RATE = 8000
F = 160  # 20 ms


def chunks(seconds: float, freq: float = 440.0) -> list[np.ndarray]:
    x = tone(freq, seconds, RATE, amplitude=0.5)[0]
    return [x[i : i + F] for i in range(0, x.shape[0], F)]


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


def run(
    feed: dict[int, list[int]], parts: list[np.ndarray], ticks: int
) -> tuple[PlayoutBuffer, list[np.ndarray]]:
    """``feed[t]``: the chunk indices arriving just before tick ``t``; one pull per tick once
    the first chunk came."""
    buf = PlayoutBuffer(RATE, 20.0)
    out: list[np.ndarray] = []
    for t in range(ticks):
        for i in feed.get(t, []):
            buf.put(parts[i], i * 20, now=t * 0.02)
        if buf.started:
            out.append(buf.pull(now=t * 0.02))
    return buf, out


def test_bursts_become_continuous_audio() -> None:
    parts = chunks(6.0)
    feed = {t: [t] for t in range(50)}  # a second in real time, then 200 ms at a time
    feed.update({t: list(range(t - 10, t)) for t in range(60, 301, 10)})
    buf, out = run(feed, parts, 310)
    y = np.concatenate(out)
    # after the delay settled (the first second), no frame is concealed: the audio is the input,
    # continuous, delayed by a whole number of frames
    s = buf.stats
    assert s["lost"] == 0 and s["late"] == 0, s
    settled = np.concatenate(out[70:250])  # after the cross-fade into real audio
    x = np.concatenate(parts)
    lag = next(
        k
        for k in range(0, x.shape[0] - settled.shape[0], F)
        if np.array_equal(x[k : k + F], settled[:F])
    )
    assert np.array_equal(settled, x[lag : lag + settled.shape[0]])
    assert 0 < s["stretched"] <= 12, s  # the delay grew to the burst length, once
    assert s["concealed"] == s["stretched"]
    # the underrun while the delay grew is concealment fading into comfort noise, never zeros
    assert min(rms_db(f) for f in out) > -75
    assert min(rms_db(f) for f in out[70:]) > rms_db(parts[0]) - 1
    assert y.shape[0] == len(out) * F


def test_loss_is_concealed_and_counted() -> None:
    parts = chunks(5.0)
    rng = np.random.default_rng(1)
    lost = {i for i in range(len(parts)) if rng.random() < 0.1 and i > 0}
    feed = {i: [i] for i in range(len(parts)) if i not in lost}
    buf, out = run(feed, parts, len(parts) + 5)
    s = buf.stats
    # each lost chunk is a concealed frame: passed over when later audio is there (lost), or
    # waited for when none is yet (stretched)
    assert s["lost"] + s["stretched"] >= len(lost) and s["lost"] > 0
    assert s["concealed"] == s["lost"] + s["stretched"]
    level = rms_db(parts[0])
    for i, frame in enumerate(out[1 : len(parts) - 1], start=1):
        assert rms_db(frame) > level - 10, f"a gap at frame {i}"


def test_late_audio_is_dropped_and_counted() -> None:
    parts = chunks(1.0)
    feed = {i: [i] for i in range(len(parts)) if i != 10}
    feed[14] = [14, 10]  # chunk 10 after its time was played
    buf, _ = run(feed, parts, len(parts))
    assert buf.stats["late"] == 1 and buf.stats["lost"] == 1


def test_backlog_cap_drops_the_oldest() -> None:
    buf = PlayoutBuffer(RATE, 20.0, max_delay_ms=200.0)
    parts = chunks(1.0)
    for i, p in enumerate(parts):
        buf.put(p, i * 20, now=0.0)
    assert buf.level <= 200 * RATE // 1000
    assert buf.stats["overflow_ms"] >= 1000 - 200
    pos = buf.play_pos
    assert pos is not None and pos % F == 0
    assert np.array_equal(buf.pull(now=0.0), parts[pos // F])


def test_pacer_marks_follow_their_audio_and_clear_drops_the_queue() -> None:
    p = OutboundPacer(RATE, 20.0, max_backlog_ms=1000.0)
    parts = chunks(0.1)
    p.put(np.concatenate(parts[:3]))
    p.mark("a")
    p.put(np.concatenate(parts[3:]))
    p.mark("b")
    got = [p.take() for _ in range(3)]
    assert [m for _, m in got] == [[], [], ["a"]]
    assert all(c is not None and c.shape == (F,) for c, _ in got)
    chunk, marks = p.take()
    assert chunk is not None and marks == []
    assert p.clear() == ["b"]
    assert p.take() == (None, []) and p.stats["cleared_ms"] == 20.0
    # the cap: a second and a half queued at once keeps the newest second
    p.put(tone(440, 1.5, RATE)[0])
    assert p.queued_ms == 1000.0 and p.stats["dropped_ms"] == 500.0


def test_shift_counts_what_the_frames_gained_over_the_media() -> None:
    """``shift``: +1 frame per stretch, -1 per skip, minus what the cap dropped; so the media
    position of the frame handed out at tick ``t`` is ``t * F - shift`` from the first."""
    parts = chunks(6.0)
    feed = {t: [t] for t in range(50)}  # real time, bursts of 200 ms, real time again
    feed.update({t: list(range(t - 10, t)) for t in range(60, 151, 10)})
    feed.update({t: [t - 1] for t in range(151, 301)})
    buf = PlayoutBuffer(RATE, 20.0)
    x = np.concatenate(parts)
    handed = 0
    for t in range(310):
        for i in feed.get(t, []):
            buf.put(parts[i], i * 20, now=t * 0.02)
        if not buf.started:
            continue
        stretched = buf.stretched
        frame = buf.pull(now=t * 0.02)
        media = handed - buf.shift  # where this frame's media starts
        if buf.stretched == stretched and t > 70:  # real audio (past the cross-fade)
            assert np.array_equal(frame, x[media : media + F]), t
        handed += F
    s = buf.stats
    assert s["stretched"] > 0 and s["skipped"] > 0, s
    assert buf.shift == (s["stretched"] - s["skipped"]) * F
    assert s["shift_ms"] == buf.shift * 1000 / RATE
    capped = PlayoutBuffer(RATE, 20.0, max_delay_ms=200.0)
    for i, p in enumerate(parts[:50]):
        capped.put(p, i * 20, now=0.0)
    assert capped.shift == -round(capped.overflow_ms * RATE / 1000) < 0

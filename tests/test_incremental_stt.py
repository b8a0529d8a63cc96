"""Incremental offline STT: pieces cut at pauses while the user speaks, joined at the end of speech,
give the transcript that transcribing the whole utterance at once gives (real speech, real model)."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import (
    InputAudioRawFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.tests.utils import run_test

from processors.incremental_transcript import PauseCutter, join_pieces
from processors.moonshine_stt import (
    LEADING_SILENCE_SECS,
    TRAILING_SILENCE_SECS,
    MoonshineSTTService,
    MoonshineTranscriber,
    frame_speech,
)
from tests.support.speech import silence_pcm16, speech_pcm16, word_error_rate

RATE = 16000
FRAME_BYTES = 640  # 20 ms
TWO_PHRASES = "How far is it from the station to the hotel, and is there a bus that goes there?"
ONE_PHRASE = "What time does the museum open tomorrow morning?"


class CountingTranscriber(MoonshineTranscriber):
    """The real model; remembers how much audio each call was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def submit(self, pcm16: bytes):
        self.calls.append(len(pcm16))
        return super().submit(pcm16)


@pytest.fixture(scope="module")
def transcriber():
    transcriber = CountingTranscriber()
    yield transcriber
    transcriber.close()


def frames(pcm16: bytes) -> list[InputAudioRawFrame]:
    return [
        InputAudioRawFrame(pcm16[i : i + FRAME_BYTES], RATE, 1) for i in range(0, len(pcm16), FRAME_BYTES)
    ]


def utterance_frames(speech: bytes) -> list:
    """As the VAD delivers an utterance: the start 0.2 s into speech, the stop 0.3 s after it."""
    onset = int(0.2 * RATE) * 2
    return [
        *frames(silence_pcm16(1.5)),
        *frames(speech[:onset]),
        VADUserStartedSpeakingFrame(),
        *frames(speech[onset:]),
        *frames(silence_pcm16(0.3)),
        VADUserStoppedSpeakingFrame(),
    ]


def whole_segment(speech: bytes) -> bytes:
    """What Pipecat hands the service for that utterance: the second before the VAD start, the
    rest of the speech, the stop window and its own 0.5 s of trailing silence."""
    return silence_pcm16(0.8) + speech + silence_pcm16(0.3) + silence_pcm16(0.5)


async def transcribe_incrementally(transcriber, speech: bytes) -> str:
    down, _ = await run_test(
        MoonshineSTTService(transcriber=transcriber), frames_to_send=utterance_frames(speech)
    )
    return " ".join(f.text for f in down if isinstance(f, TranscriptionFrame))


@pytest.mark.parametrize("text", [TWO_PHRASES, ONE_PHRASE])
async def test_incremental_transcript_equals_the_whole_utterance_transcript(transcriber, text):
    speech = speech_pcm16(text, pad_secs=0.0)
    whole = await transcriber.transcribe(whole_segment(speech))
    transcriber.calls.clear()
    incremental = await transcribe_incrementally(transcriber, speech)
    assert word_error_rate(whole, incremental) == 0, (whole, incremental)
    assert word_error_rate(text, incremental) <= 0.1, incremental
    # It really was incremental: pieces went out while speaking, and the tail left at the end
    # of speech is short (the last pause was the end of speech itself).
    *pieces, tail = transcriber.calls
    assert pieces, transcriber.calls
    assert tail < len(whole_segment(speech)) / 2, transcriber.calls


def pause_events(cutter: PauseCutter, pcm16: bytes) -> list[str]:
    return [event.kind for frame in frames(pcm16) for event in cutter.feed(frame.audio)]


def test_a_phrase_ends_at_a_confirmed_pause_and_short_gaps_inside_it_are_withdrawn():
    speech = speech_pcm16(TWO_PHRASES, pad_secs=0.0)
    events = pause_events(PauseCutter(RATE, silence_pcm16(1.0)), speech + silence_pcm16(0.3))
    assert events.count("confirmed") >= 2, events  # after "hotel," and at the end
    assert events[-2:] == ["pause", "confirmed"], events


def test_no_cut_before_enough_speech():
    events = pause_events(PauseCutter(RATE, silence_pcm16(1.0)), speech_pcm16("Hi.", pad_secs=0.3))
    assert events == []


def test_a_noisy_line_raises_the_pause_threshold():
    """On a line whose noise floor is above the silent-line threshold, noise is not speech."""
    noise = bytes([0x40, 0x00, 0xC0, 0xFF]) * (RATE // 2)  # +/-64: RMS 64
    speech = speech_pcm16(TWO_PHRASES, pad_secs=0.0)
    assert "confirmed" in pause_events(PauseCutter(RATE, noise), speech + noise)
    assert pause_events(PauseCutter(RATE, b""), noise + noise) == []


def test_join_pieces():
    assert join_pieces(["How far is it from the station.", "To the hotel?", ""]) == (
        "How far is it from the station to the hotel?"
    )
    assert join_pieces(["Is it far?", "I think so."]) == "Is it far? I think so."
    assert join_pieces(["Wait,", "I'm here."]) == "Wait I'm here."
    assert join_pieces(["", ""]) == ""


def test_the_model_hears_speech_framed_by_the_same_silence_whatever_surrounded_it():
    speech = speech_pcm16(ONE_PHRASE, pad_secs=0.0)
    framed = frame_speech(silence_pcm16(2.0) + speech + silence_pcm16(0.03))
    assert framed == frame_speech(speech + silence_pcm16(1.0))
    around = len(silence_pcm16(LEADING_SILENCE_SECS)) + len(silence_pcm16(TRAILING_SILENCE_SECS))
    assert len(speech) - len(silence_pcm16(0.2)) < len(framed) - around <= len(speech)
    assert frame_speech(silence_pcm16(1.0)) == b""

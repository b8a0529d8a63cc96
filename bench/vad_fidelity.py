"""How closely our VAD (Silero with digital silence unscored) finds speech where Pipecat's does.

    python -m bench.vad_fidelity

Runs Pipecat's own `SileroVADAnalyzer` and our `SharedSileroVADAnalyzer` over the same audio, 20 ms
frame by frame, and compares where each starts and stops hearing speech. For scale, it also
compares Pipecat's VAD with itself when the same audio merely arrives `--lead` seconds later.
"""

from __future__ import annotations

import argparse
import asyncio

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams

from processors.shared_models import SharedSileroVADAnalyzer
from tests.support.speech import levels_pcm16, silence_pcm16, speech_pcm16
from tests.support.vad import FRAME_SECS, run_alone, speech_turns

SENTENCES = [
    "What is the capital of France?",
    "Hello there, how are you today?",
    "And what about Spain?",
    "I would like to book a table for two at seven tonight, please.",
    "Yes.",
    "No, thank you. That is all.",
]


def audios(sample_rate: int) -> dict[str, bytes]:
    """Each sentence, then the next after a short or a long pause; and speech at several levels."""
    clips = {"levels": levels_pcm16(sample_rate)}
    for i, text in enumerate(SENTENCES):
        following = SENTENCES[(i + 1) % len(SENTENCES)]
        for pause in (0.5, 1.5):
            clips[f"{i}+{pause}s"] = (
                silence_pcm16(pause, sample_rate)
                + speech_pcm16(text, sample_rate)
                + silence_pcm16(pause, sample_rate)
                + speech_pcm16(following, sample_rate)
                + silence_pcm16(1.0, sample_rate)
            )
    return clips


async def speech_turns_of(analyzer, pcm16: bytes, sample_rate: int, skip_frames: int = 0):
    """Where the analyzer starts and stops hearing speech, frames counted from `skip_frames`."""
    analyzer.set_sample_rate(sample_rate)
    return speech_turns((await run_alone(analyzer, pcm16, sample_rate))[skip_frames:])


def pipecat() -> SileroVADAnalyzer:
    return SileroVADAnalyzer(params=VADParams(stop_secs=0.2))


async def main(lead_secs: float) -> None:
    for sample_rate in (16000, 8000):
        clips = audios(sample_rate)
        ours_differ = pipecat_differs = 0
        for name, pcm16 in clips.items():
            theirs = await speech_turns_of(pipecat(), pcm16, sample_rate)
            ours = await speech_turns_of(
                SharedSileroVADAnalyzer(params=VADParams(stop_secs=0.2)), pcm16, sample_rate
            )
            lead = silence_pcm16(lead_secs, sample_rate)
            later = await speech_turns_of(pipecat(), lead + pcm16, sample_rate, round(lead_secs / FRAME_SECS))
            ours_differ += ours != theirs
            pipecat_differs += later != theirs
            if ours != theirs:
                print(f"{sample_rate} Hz {name}:\n  ours      {ours}\n  Pipecat's {theirs}")
        print(
            f"{sample_rate} Hz: {len(clips)} audios; ours differs from Pipecat's on {ours_differ}; "
            f"Pipecat's with the audio {lead_secs:g} s later differs from itself on {pipecat_differs}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lead", type=float, default=1.0, help="seconds of silence before the same audio")
    asyncio.run(main(parser.parse_args().lead))

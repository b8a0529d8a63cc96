"""`voicebot local`: the same pipeline on the local microphone and speakers, for demos."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

from loguru import logger

from pipeline.profiles import Bot
from pipeline.resources import SharedResources
from pipeline.services import resolve_providers
from pipeline.session import VoiceSession
from pipeline.settings import Settings
from processors.frames import EndReason

INPUT_SAMPLE_RATE = 16000
OUTPUT_SAMPLE_RATE = 24000


class AudioDeviceError(RuntimeError):
    """No usable microphone or speaker; the message is one line for the user."""


@contextlib.contextmanager
def quiet_native_stderr():
    """PortAudio probes every ALSA/JACK backend at start-up and prints dozens of lines from C;
    keep the one line that matters (ours) readable."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _pyaudio():
    try:
        import pyaudio
    except ImportError as e:
        raise AudioDeviceError(
            "the local bot needs PyAudio: run `make local` (it installs portaudio19-dev and the extra)"
        ) from e
    return pyaudio


def list_devices() -> str:
    """One line per audio device: index, direction, name."""
    pyaudio = _pyaudio()
    with quiet_native_stderr():
        audio = pyaudio.PyAudio()
    try:
        lines = []
        for index in range(audio.get_device_count()):
            info = audio.get_device_info_by_index(index)
            kinds = [
                k for k, n in (("in", info["maxInputChannels"]), ("out", info["maxOutputChannels"])) if n > 0
            ]
            lines.append(f"{index:3d}  {'/'.join(kinds):6s}  {info['name']}")
        return "\n".join(lines) if lines else "no audio devices found"
    finally:
        audio.terminate()


def check_devices(input_device: int | None, output_device: int | None) -> None:
    """Open and close both streams once, so a missing or broken device fails now, clearly."""
    pyaudio = _pyaudio()
    with quiet_native_stderr():
        audio = pyaudio.PyAudio()
    try:
        for direction, index, rate in (
            ("input", input_device, INPUT_SAMPLE_RATE),
            ("output", output_device, OUTPUT_SAMPLE_RATE),
        ):
            device = {f"{direction}_device_index": index}
            try:
                with quiet_native_stderr():
                    stream = audio.open(
                        format=pyaudio.paInt16,
                        channels=1,
                        rate=rate,
                        frames_per_buffer=320,
                        input=direction == "input",
                        output=direction == "output",
                        **device,
                    )
                    stream.close()
            except (OSError, ValueError) as e:
                which = f"device {index}" if index is not None else "the default device"
                raise AudioDeviceError(
                    f"cannot open {which} for audio {direction} ({e}); see `voicebot local --list-devices`"
                ) from e
    finally:
        audio.terminate()


async def run_local(
    settings: Settings, *, input_device: int | None, output_device: int | None, bot: Bot | None = None
) -> int:
    """Run one conversation on the local devices; returns the process exit code."""
    from pipecat.transports.local.audio import LocalAudioTransport, LocalAudioTransportParams

    from bots.console_view import ConsoleView

    providers = resolve_providers(settings)
    resources = await SharedResources.load(providers, settings)
    try:
        with quiet_native_stderr():
            transport = LocalAudioTransport(
                LocalAudioTransportParams(
                    audio_in_enabled=True,
                    audio_out_enabled=True,
                    audio_in_sample_rate=INPUT_SAMPLE_RATE,
                    audio_out_sample_rate=OUTPUT_SAMPLE_RATE,
                    input_device_index=input_device,
                    output_device_index=output_device,
                )
            )
        session = VoiceSession.build(
            transport,
            settings=settings,
            providers=providers,
            resources=resources,
            output_sample_rate=OUTPUT_SAMPLE_RATE,
            observers=[ConsoleView()],
            bot=bot,
        )
        _end_on_ctrl_c(session)
        print(f"voicebot local: {providers.describe()}. Talk to me; Ctrl-C to say goodbye.", flush=True)
        await session.run()
    finally:
        await resources.close()
    reason = session.end_reason or EndReason.ERROR
    print(f"Session ended: {reason}", flush=True)
    return 1 if reason == EndReason.ERROR else 0


def _end_on_ctrl_c(session: VoiceSession) -> None:
    """First Ctrl-C: goodbye, then end. A second one: stop now."""
    loop = asyncio.get_running_loop()
    pressed = 0
    tasks: set[asyncio.Task] = set()

    def on_interrupt() -> None:
        nonlocal pressed
        pressed += 1
        if pressed == 1:
            print("\nSaying goodbye... (Ctrl-C again to quit at once)", flush=True)
            task = loop.create_task(session.end(EndReason.CONSOLE_STOP))
        else:
            task = loop.create_task(session.worker.cancel(reason="interrupted twice"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    loop.add_signal_handler(signal.SIGTERM, on_interrupt)


def main_local(
    settings: Settings, *, input_device: int | None, output_device: int | None, bot: Bot | None = None
) -> int:
    try:
        check_devices(input_device, output_device)
    except AudioDeviceError as e:
        print(f"voicebot local: {e}", file=sys.stderr)
        return 2
    logger.info("Audio devices OK")
    return asyncio.run(run_local(settings, input_device=input_device, output_device=output_device, bot=bot))

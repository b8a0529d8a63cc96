"""Offline speech-to-text: Moonshine base-en (bundled in `moonshine-cpp`) as a Pipecat STT service.

Pipecat's own `MoonshineSTTService` uses `moonshine-voice`, which downloads its models at run
time; `moonshine-cpp` ships the English model in its wheel, so it works with no network.
We run that model with ONNX Runtime from Python rather than through the wheel's C library:
`libmoonshine.so` is built for AVX-512 and dies with SIGILL on CPUs without it (AMD EPYC
before Zen 4, many laptops). The model is loaded once per process (`MoonshineTranscriber`)
and shared by every session.

The service transcribes incrementally: pieces of the utterance that end at the speaker's pauses
are transcribed while the user is still speaking (`processors/incremental_transcript.py`), so
at the end of speech only the tail is left.
"""

from __future__ import annotations

import asyncio
import importlib.util
import tempfile
from collections import deque
from collections.abc import AsyncGenerator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from loguru import logger
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from processors.incremental_transcript import PauseCutter, join_pieces, window_rms

MOONSHINE_SAMPLE_RATE = 16000
# Segment end to transcript, p99, measured on 2 cores for a 3 s utterance (the turn strategies
# use it as a safety net while waiting for the transcript).
MOONSHINE_TTFS_P99_SECS = 1.5
START_TOKEN, END_TOKEN = 1, 2
TOKENS_PER_SECOND = 6.5  # Moonshine's own cap on output length: no runaway decoding on noise
WORD_START = "\u2581"  # SentencePiece's marker for a space before a token
# The silence the model hears around the speech, whatever surrounded it: Moonshine returns
# nothing at all for speech after a second of digital silence (Pipecat's pre-roll when the client
# sends zeros), every second of silence costs encoder time, and half a second after the speech
# lets it finish the last word. The same frame for every piece keeps pieces and whole utterances
# transcribed alike.
LEADING_SILENCE_SECS = 0.1
TRAILING_SILENCE_SECS = 0.5
SILENCE_RMS = 30.0  # 16-bit RMS of a 10 ms window below which it is silence


def bundled_model_dir() -> Path:
    """`models/base-en` inside the moonshine-cpp wheel (found without loading its C library)."""
    spec = importlib.util.find_spec("moonshine_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the offline STT needs the moonshine-cpp package: pip install 'voicebot[offline]'")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "base-en"


def read_tokenizer(path: Path) -> list[bytes]:
    """Moonshine's `tokenizer.bin`: each token's bytes, prefixed by their length (a 1-2 byte
    varint); a token's id is its position."""
    data, tokens, at = path.read_bytes(), [], 0
    while at < len(data):
        length = data[at]
        at += 1
        if length >= 0x80:
            length = (length & 0x7F) | (data[at] << 7)
            at += 1
        tokens.append(data[at : at + length])
        at += length
    return tokens


def frame_speech(pcm16: bytes, sample_rate: int = MOONSHINE_SAMPLE_RATE) -> bytes:
    """The sound in `pcm16` with exactly the set lengths of what surrounds it (quiet audio as
    recorded, so soft onsets such as the "h" of "hello" stay; zeros where there is not enough);
    empty if there is no sound."""
    window = int(sample_rate * 0.01) * 2
    loud = np.flatnonzero(window_rms(pcm16, window) >= SILENCE_RMS)
    if not loud.size:
        return b""
    lead, trail = (int(secs * sample_rate) * 2 for secs in (LEADING_SILENCE_SECS, TRAILING_SILENCE_SECS))
    first, end = loud[0] * window, (loud[-1] + 1) * window
    start, stop = max(0, first - lead), min(len(pcm16), end + trail)
    return bytes(lead - (first - start)) + pcm16[start:stop] + bytes(trail - (stop - end))


def _named_subgraphs(graph, prefix: str) -> None:
    """ONNX requires every graph to be named; the decoder's `If` branches come out unnamed."""
    import onnx

    graph.name = graph.name or prefix
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                _named_subgraphs(attribute.g, f"{prefix}_{node.name}_{attribute.name}")


def load_optimised(path: Path, threads: int):
    """An ONNX Runtime session for a bundled `.ort` model, with its graph optimised.

    The `.ort` files keep their weights as int8 and dequantise them (Cast, Mul, Transpose) on
    every run: for the decoder that is the 32768x416 output projection at every token, six
    times the cost of the step itself. ORT will not optimise an `.ort` file, so we export it
    as plain ONNX and load that, which constant-folds the dequantisation once, at start-up.
    """
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="voicebot-moonshine-") as scratch:
        exported = ort.SessionOptions()
        exported.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        exported.optimized_model_filepath = str(Path(scratch) / "model.onnx")
        ort.InferenceSession(str(path), exported, providers=["CPUExecutionProvider"])
        model = onnx.load(exported.optimized_model_filepath)
    _named_subgraphs(model.graph, path.stem)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


class MoonshineModel:
    """Moonshine's encoder and cached decoder, greedy decoding. Not thread-safe: one caller."""

    def __init__(self, model_dir: Path, threads: int = 1):
        self._encoder = load_optimised(model_dir / "encoder_model.ort", threads)
        self._decoder = load_optimised(model_dir / "decoder_model_merged.ort", threads)
        self._tokens = read_tokenizer(model_dir / "tokenizer.bin")
        inputs = self._decoder.get_inputs()
        self._cache_inputs = [i.name for i in inputs if i.name.startswith("past_key_values")]
        self._cache_outputs = [o.name for o in self._decoder.get_outputs()][1:]
        heads, _, head_size = inputs[2].shape[1:]
        self._empty_cache = np.zeros((1, heads, 0, head_size), dtype=np.float32)

    def transcribe(self, samples: np.ndarray) -> str:
        """Float samples in [-1, 1] at 16 kHz → text."""
        if samples.size < MOONSHINE_SAMPLE_RATE // 10:
            return ""  # shorter than the encoder's receptive field: no words in it
        hidden = self._encoder.run(None, {"input_values": samples[None, :]})[0]
        cache = dict.fromkeys(self._cache_inputs, self._empty_cache)
        token, text = START_TOKEN, []
        for step in range(int(samples.size / MOONSHINE_SAMPLE_RATE * TOKENS_PER_SECOND) + 1):
            outputs = self._decoder.run(
                None,
                {
                    "input_ids": np.array([[token]], dtype=np.int64),
                    "encoder_hidden_states": hidden,
                    "use_cache_branch": np.array([step > 0]),
                    **cache,
                },
            )
            token = int(outputs[0][0, -1].argmax())
            if token == END_TOKEN:
                break
            text.append(token)
            for name, value in zip(self._cache_outputs, outputs[1:], strict=True):
                if step == 0 or ".decoder." in name:  # the encoder's keys/values are fixed after step 0
                    cache[name.replace("present", "past_key_values")] = value
        pieces = b"".join(self._tokens[t] for t in text if t < len(self._tokens))
        return pieces.decode("utf-8", errors="replace").replace(WORD_START, " ").strip()


class MoonshineTranscriber:
    """One Moonshine model per process, used by all sessions one segment at a time.

    Calls run on one dedicated thread: ONNX Runtime releases the GIL while it computes, and a
    single thread keeps the shared model free of concurrent use.
    """

    def __init__(self) -> None:
        self._model = MoonshineModel(bundled_model_dir())
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moonshine")

    def _transcribe_blocking(self, pcm16: bytes) -> str:
        samples = np.frombuffer(frame_speech(pcm16), dtype=np.int16).astype(np.float32) / 32768.0
        return self._model.transcribe(samples)

    def submit(self, pcm16: bytes) -> Future[str]:
        """Queue 16 kHz mono 16-bit PCM for transcription; calls run one at a time, in order."""
        return self._executor.submit(self._transcribe_blocking, pcm16)

    async def transcribe(self, pcm16: bytes) -> str:
        """Transcribe 16 kHz mono 16-bit PCM."""
        return await asyncio.wrap_future(self.submit(pcm16))

    def warm_up(self) -> None:
        """The first call is slower; pay it at start-up instead of on a caller's first turn."""
        self._model.transcribe(np.zeros(MOONSHINE_SAMPLE_RATE, dtype=np.float32))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class _SpokenPieces:
    """The pieces of one utterance sent for transcription while it was spoken."""

    audio: bytes = b""  # what the kept pieces cover, from the start of the segment
    transcripts: list[Future[str]] = field(default_factory=list)
    pending: tuple[bytes, Future[str]] | None = None  # a piece ending at an unconfirmed pause

    def keep_pending(self) -> None:
        if self.pending is not None:
            audio, transcript = self.pending
            self.audio += audio
            self.transcripts.append(transcript)
            self.pending = None

    def drop_pending(self) -> None:
        if self.pending is not None:
            self.pending[1].cancel()  # not started yet: never runs
            self.pending = None


class MoonshineSTTService(SegmentedSTTService):
    """Transcribes each VAD-delimited speech segment with the shared Moonshine model, incrementally.

    Pushes a `TranscriptionFrame` per segment that holds speech (empty results are dropped).
    Needs 16 kHz input, the pipeline's input rate.

    While the user speaks, the segment is cut at pauses (`PauseCutter`) and each finished piece
    is transcribed at once; when Pipecat hands over the whole segment at the end of speech, the
    pieces it starts with are already done and only the rest is transcribed. The segment is
    tracked alongside Pipecat's own buffer (same rule: the last second before speech, then
    everything until the VAD stops) and a piece is used only if the segment really starts with
    it, so anything unexpected falls back to transcribing the whole segment.

    Example::

        transcriber = MoonshineTranscriber()     # once per process
        stt = MoonshineSTTService(transcriber=transcriber)
    """

    def __init__(self, *, transcriber: MoonshineTranscriber, **kwargs):
        super().__init__(
            sample_rate=MOONSHINE_SAMPLE_RATE,
            settings=STTSettings(model="moonshine-base-en", language=Language.EN),
            ttfs_p99_latency=MOONSHINE_TTFS_P99_SECS,
            **kwargs,
        )
        self._transcriber = transcriber
        self._segment = bytearray()  # mirrors Pipecat's segment buffer
        self._cutter: PauseCutter | None = None  # while the user speaks
        self._pieces = _SpokenPieces()
        self._ended: deque[_SpokenPieces] = deque()  # utterances waiting for run_stt, in order

    @property
    def wants_wav_segments(self) -> bool:
        """Moonshine reads raw PCM, so take the segment without a WAV header."""
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        # Before Pipecat's own handling, which queues the segment for run_stt on a stop.
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._cutter = PauseCutter(self.sample_rate, bytes(self._segment))
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            if self._cutter is not None:
                self._pieces.keep_pending()  # no speech followed its pause
                self._ended.append(self._pieces)
            self._pieces, self._cutter = _SpokenPieces(), None
            self._segment.clear()
        await super().process_frame(frame, direction)

    async def process_audio_frame(self, frame: InputAudioRawFrame, direction: FrameDirection):
        await super().process_audio_frame(frame, direction)
        self._segment += frame.audio
        if self._cutter is None:
            del self._segment[: max(0, len(self._segment) - self.sample_rate * 2)]  # the last second
            return
        for event in self._cutter.feed(frame.audio):
            if event.kind == "pause":
                piece = bytes(self._segment[len(self._pieces.audio) : event.offset])
                self._pieces.pending = (piece, self._transcriber.submit(piece))
            elif event.kind == "confirmed":
                self._pieces.keep_pending()
            else:
                self._pieces.drop_pending()

    def _spoken_pieces(self, audio: bytes) -> _SpokenPieces:
        """The pieces already sent for this segment (none if it does not start with them)."""
        while self._ended:
            pieces = self._ended.popleft()
            if audio.startswith(pieces.audio):
                return pieces
        return _SpokenPieces()

    async def _transcribe(self, audio: bytes) -> str:
        pieces = self._spoken_pieces(audio)
        tail = self._transcriber.submit(audio[len(pieces.audio) :])
        texts = [await asyncio.wrap_future(f) for f in [*pieces.transcripts, tail]]
        return join_pieces(texts)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        await self.start_processing_metrics()
        try:
            text = await self._transcribe(audio)
        except RuntimeError as exc:
            yield ErrorFrame(f"offline STT failed: {exc}")
            return
        finally:
            await self.stop_processing_metrics()
        if not text:
            return
        logger.debug(f"{self}: transcribed [{text}]")
        yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN)

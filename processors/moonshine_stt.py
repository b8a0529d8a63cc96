"""Offline speech-to-text: Moonshine base-en (bundled in `moonshine-cpp`) as a Pipecat STT service.

Pipecat's own `MoonshineSTTService` uses `moonshine-voice`, which downloads its models at run
time; `moonshine-cpp` ships the English model in its wheel, so it works with no network.
We run that model with ONNX Runtime from Python rather than through the wheel's C library:
`libmoonshine.so` is built for AVX-512 and dies with SIGILL on CPUs without it (AMD EPYC
before Zen 4, many laptops). The model is loaded once per process (`MoonshineTranscriber`)
and shared by every session.
"""

from __future__ import annotations

import asyncio
import importlib.util
import tempfile
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from loguru import logger
from pipecat.frames.frames import ErrorFrame, Frame, TranscriptionFrame
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

MOONSHINE_SAMPLE_RATE = 16000
# Segment end to transcript, p99, measured on 2 cores for a 3 s utterance (the turn strategies
# use it as a safety net while waiting for the transcript).
MOONSHINE_TTFS_P99_SECS = 1.5
START_TOKEN, END_TOKEN = 1, 2
TOKENS_PER_SECOND = 6.5  # Moonshine's own cap on output length: no runaway decoding on noise
WORD_START = "\u2581"  # SentencePiece's marker for a space before a token


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

    def _transcribe_blocking(self, samples: np.ndarray) -> str:
        return self._model.transcribe(np.ascontiguousarray(samples, dtype=np.float32))

    async def transcribe(self, pcm16: bytes) -> str:
        """Transcribe 16 kHz mono 16-bit PCM."""
        samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transcribe_blocking, samples)

    def warm_up(self) -> None:
        """The first call is slower; pay it at start-up instead of on a caller's first turn."""
        self._transcribe_blocking(np.zeros(MOONSHINE_SAMPLE_RATE, dtype=np.float32))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class MoonshineSTTService(SegmentedSTTService):
    """Transcribes each VAD-delimited speech segment with the shared Moonshine model.

    Pushes a `TranscriptionFrame` per segment that holds speech (empty results are dropped).
    Needs 16 kHz input, the pipeline's input rate.

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

    @property
    def wants_wav_segments(self) -> bool:
        """Moonshine reads raw PCM, so take the segment without a WAV header."""
        return False

    def can_generate_metrics(self) -> bool:
        return True

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        await self.start_processing_metrics()
        try:
            text = await self._transcriber.transcribe(audio)
        except RuntimeError as exc:
            yield ErrorFrame(f"offline STT failed: {exc}")
            return
        finally:
            await self.stop_processing_metrics()
        if not text:
            return
        logger.debug(f"{self}: transcribed [{text}]")
        yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN)

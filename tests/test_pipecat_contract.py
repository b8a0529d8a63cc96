"""The private insides of Pipecat and uvicorn that our code relies on, checked against what is installed.

Each row of `MEMBERS` is one private member (or one member we override with a given kind) that a
file of ours reads, writes, overrides or swaps. When an upgrade removes one or changes its kind
(a method that became a property, an instance attribute that is gone, ...), the test names the
member and our file that relies on it. `COPIED` fingerprints the Pipecat code we re-implement or
skip (a forked method, a parent `__init__` we do not call), and `CALLED_BY_PIPECAT` the calls in
Pipecat that make our overrides take effect. Upgrading Pipecat or uvicorn means re-reading each
listed file against the new code and then updating these tables, not just the fingerprints.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import re
import textwrap
from typing import NamedTuple

import pytest

PIPECAT_VERSION = "1.14.0"
UVICORN_MINOR = "0.55"

# Kinds of member.
METHOD = "a method"
ASYNC_METHOD = "an async method"
PROPERTY = "a property"
INSTANCE_ATTR = "an instance attribute (assigned on self)"
CLASS = "a class"
MODULE_FLOAT = "a module-level float"
MODULE_INT = "a module-level int"


# Where the members live.
SILERO = "pipecat.audio.vad.silero"
SILERO_MODEL = "pipecat.audio.vad.silero:SileroOnnxModel"
SILERO_VAD = "pipecat.audio.vad.silero:SileroVADAnalyzer"
VAD = "pipecat.audio.vad.vad_analyzer:VADAnalyzer"
AUDIO_UTILS = "pipecat.audio.utils"
WORKER = "pipecat.pipeline.worker:PipelineWorker"
WORKER_OBSERVER = "pipecat.pipeline.worker_observer:WorkerObserver"
BASE_OBSERVER = "pipecat.observers.base_observer:BaseObserver"
RTVI_OBSERVER = "pipecat.processors.frameworks.rtvi.observer:RTVIObserver"
VOLUME_TRACKER = "pipecat.audio.volume:AudioVolumeTracker"
SMART_TURN = "pipecat.audio.turn.smart_turn.local_smart_turn_v3:LocalSmartTurnAnalyzerV3"
BASE_SMART_TURN = "pipecat.audio.turn.smart_turn.base_smart_turn:BaseSmartTurn"
PIPER = "pipecat.services.piper.tts:PiperTTSService"
DEEPGRAM = "pipecat.services.deepgram.stt:DeepgramSTTService"
DEEPGRAM_TTS_SERVICE = "pipecat.services.deepgram.tts:DeepgramTTSService"
OPENAI = "pipecat.services.openai.llm:OpenAILLMService"
SEGMENTED_STT = "pipecat.services.stt_service:SegmentedSTTService"
OBSERVER = "pipecat.observers.base_observer:BaseObserver"
PROCESSOR = "pipecat.processors.frame_processor:FrameProcessor"
FASTAPI_TRANSPORT = "pipecat.transports.websocket.fastapi:FastAPIWebsocketTransport"
FASTAPI_CLIENT = "pipecat.transports.websocket.fastapi:FastAPIWebsocketClient"
FASTAPI_INPUT = "pipecat.transports.websocket.fastapi:FastAPIWebsocketInputTransport"
BASE_INPUT = "pipecat.transports.base_input:BaseInputTransport"
UVICORN_SERVER = "uvicorn.server:Server"
UVICORN_MULTIPROCESS = "uvicorn.supervisors.multiprocess"
UVICORN_PROCESS = "uvicorn.supervisors.multiprocess:Process"
UVICORN_SUPERVISOR = "uvicorn.supervisors.multiprocess:Multiprocess"

# Our files that rely on them.
SILERO_BATCHER = "processors/silero_batcher.py"
SHARED_MODELS = "processors/shared_models.py"
VAD_VOLUME = "processors/vad_volume.py"
LEAN_OBSERVER = "pipeline/worker_observer.py"
PIPER_TTS = "processors/piper_tts.py"
DEEPGRAM_STT = "processors/deepgram_stt.py"
DEEPGRAM_TTS = "processors/deepgram_tts.py"
RESILIENT_LLM = "processors/resilient_llm.py"
MOONSHINE_STT = "processors/moonshine_stt.py"
TURN_METRICS = "processors/turn_metrics.py"
SESSION_END = "processors/session_end.py"
WEBSOCKET_SESSION = "transports/websocket_session.py"
WEBSOCKET_AUDIO_INPUT = "transports/websocket_audio_input.py"
DRAINING_SERVER = "bots/draining_server.py"


class Member(NamedTuple):
    owner: str  # "module:Class", or "module" for a module attribute
    member: str
    kind: str
    our_file: str


MEMBERS = [
    # SharedSileroVADAnalyzer runs VADAnalyzer's state machine on the event loop: the public
    # analyze_audio runs it in a per-call thread, a hop per 20 ms frame that cost 30 % more CPU.
    Member(VAD, "_run_analyzer", METHOD, SHARED_MODELS),
    # ... and applies Silero's periodic model reset with Pipecat's own constants.
    Member(SILERO, "_MODEL_RESET_INTERVAL_SECS", MODULE_FLOAT, SHARED_MODELS),
    Member(SILERO, "_MODEL_RESET_MAX_CONFIDENCE", MODULE_FLOAT, SHARED_MODELS),
    Member(SILERO, "_MODEL_RESET_LOW_CONFIDENCE_WINDOWS", MODULE_INT, SHARED_MODELS),
    # ... and swaps the state machine's volume tracker for a RollingVolumeTracker (same volume,
    # half the CPU): no public member measures the volume.
    Member(VAD, "_volume_tracker", INSTANCE_ATTR, SHARED_MODELS),
    # ... and, to leave silence unscored, measures each window's smoothed volume before the state
    # machine reads it (which `_get_smoothed_volume`, overridden, then returns).
    Member(VAD, "_prev_volume", INSTANCE_ATTR, SHARED_MODELS),
    Member(VAD, "_smoothing_factor", INSTANCE_ATTR, SHARED_MODELS),
    # SharedSmartTurnAnalyzer skips LocalSmartTurnAnalyzerV3.__init__ (it always opens a session of
    # its own), sets _log_data, and replaces the session and the executor with shared ones.
    Member(SMART_TURN, "_log_data", INSTANCE_ATTR, SHARED_MODELS),
    Member(SMART_TURN, "_session", INSTANCE_ATTR, SHARED_MODELS),
    Member(BASE_SMART_TURN, "_model_executor", PROPERTY, SHARED_MODELS),
    # ResilientDeepgramSTTService forks the connection handler (no public hook replays audio or
    # reconnects at once) and reads the service's connection, client and settled event.
    Member(DEEPGRAM, "_connection", INSTANCE_ATTR, DEEPGRAM_STT),
    Member(DEEPGRAM, "_client", INSTANCE_ATTR, DEEPGRAM_STT),
    Member(DEEPGRAM, "_connection_settled", INSTANCE_ATTR, DEEPGRAM_STT),
    Member(DEEPGRAM, "_connection_handler", ASYNC_METHOD, DEEPGRAM_STT),
    Member(DEEPGRAM, "_on_message", ASYNC_METHOD, DEEPGRAM_STT),
    # ... and sends its batched audio before Pipecat's close (CloseStream) on stop, cancel, cleanup
    # and settings reconnects, which all go through _disconnect.
    Member(DEEPGRAM, "_disconnect", ASYNC_METHOD, DEEPGRAM_STT),
    Member(DEEPGRAM, "_build_connect_kwargs", METHOD, DEEPGRAM_STT),
    # SentenceFlushingDeepgramTTSService owes an acknowledgement only for a Flush Pipecat really
    # sends, which it does only with a connection.
    Member(DEEPGRAM_TTS_SERVICE, "_websocket", INSTANCE_ATTR, DEEPGRAM_TTS),
    # MoonshineSTTService labels its transcripts with the speaking user.
    Member(SEGMENTED_STT, "_user_id", INSTANCE_ATTR, MOONSHINE_STT),
    # Our observer and processor declare and fire events of their own.
    Member(OBSERVER, "_register_event_handler", METHOD, TURN_METRICS),
    Member(OBSERVER, "_call_event_handler", ASYNC_METHOD, TURN_METRICS),
    Member(PROCESSOR, "_register_event_handler", METHOD, SESSION_END),
    Member(PROCESSOR, "_call_event_handler", ASYNC_METHOD, SESSION_END),
    # use_lean_observer swaps the worker's observer proxy for a LeanWorkerObserver with the same
    # observers, which reads the proxies to skip events an observer ignores (no public hook
    # filters what observers are sent); reads_input_audio reads RTVI's params (audio levels).
    Member(WORKER, "_observer", INSTANCE_ATTR, LEAN_OBSERVER),
    Member(WORKER_OBSERVER, "_observers", INSTANCE_ATTR, LEAN_OBSERVER),
    Member(WORKER_OBSERVER, "_proxies", INSTANCE_ATTR, LEAN_OBSERVER),
    Member(RTVI_OBSERVER, "_params", INSTANCE_ATTR, LEAN_OBSERVER),
    # SessionWebsocketTransport cleans up the serializer it finds in the transport's params.
    Member(FASTAPI_TRANSPORT, "_params", INSTANCE_ATTR, WEBSOCKET_SESSION),
    # ... and builds its input itself, as Pipecat's __init__ does (with its client and input name).
    Member(FASTAPI_TRANSPORT, "_input", INSTANCE_ATTR, WEBSOCKET_SESSION),
    Member(FASTAPI_TRANSPORT, "_client", INSTANCE_ATTR, WEBSOCKET_SESSION),
    Member(FASTAPI_TRANSPORT, "_input_name", INSTANCE_ATTR, WEBSOCKET_SESSION),
    # WebsocketAudioInput overrides the input's audio task and reads its queue and params.
    Member(FASTAPI_INPUT, "_audio_task_handler", ASYNC_METHOD, WEBSOCKET_AUDIO_INPUT),
    Member(FASTAPI_INPUT, "_audio_in_queue", INSTANCE_ATTR, WEBSOCKET_AUDIO_INPUT),
    Member(FASTAPI_INPUT, "_params", INSTANCE_ATTR, WEBSOCKET_AUDIO_INPUT),
    # run_draining_workers swaps the module attribute uvicorn's supervisor builds workers from;
    # DrainingWorkerProcess overrides the (public) `server` property and fills its private cache.
    Member(UVICORN_MULTIPROCESS, "Process", CLASS, DRAINING_SERVER),
    Member(UVICORN_PROCESS, "_server", INSTANCE_ATTR, DRAINING_SERVER),
    Member(UVICORN_PROCESS, "server", PROPERTY, DRAINING_SERVER),
    # DrainingServer overrides or reads these (public) members of uvicorn.Server.
    Member(UVICORN_SERVER, "startup", ASYNC_METHOD, DRAINING_SERVER),
    Member(UVICORN_SERVER, "handle_exit", METHOD, DRAINING_SERVER),
    Member(UVICORN_SERVER, "started", INSTANCE_ATTR, DRAINING_SERVER),
    Member(UVICORN_SERVER, "should_exit", INSTANCE_ATTR, DRAINING_SERVER),
]


class Copied(NamedTuple):
    owner: str
    member: str
    fingerprint: str  # of the code, docstring and comments aside (see `_fingerprint`)
    our_file: str


# Code we re-implement, or skip and replace: a change to it must be carried over by hand.
COPIED = [
    # SileroBatcher runs the model as SileroOnnxModel.__call__ does (context + window, state, rate),
    # on a batch; vad_model_session opens the session as its __init__ does, once per process.
    Copied(SILERO_MODEL, "__call__", "127165a558d0", SILERO_BATCHER),
    Copied(SILERO_MODEL, "__init__", "feaa7792ec84", SHARED_MODELS),
    # SharedSileroVADAnalyzer stands in for SileroVADAnalyzer: its window, its rates, its scoring
    # and its model reset; it mirrors how _run_analyzer cuts the audio into windows.
    Copied(SILERO_VAD, "num_frames_required", "1654c476da69", SHARED_MODELS),
    Copied(SILERO_VAD, "set_sample_rate", "b41c39cab7a7", SHARED_MODELS),
    Copied(SILERO_VAD, "voice_confidence", "78bbfcdec23e", SHARED_MODELS),
    Copied(SILERO_VAD, "_maybe_reset_model", "e167791dd149", SHARED_MODELS),
    Copied(VAD, "_run_analyzer", "463482cab131", SHARED_MODELS),
    # RollingVolumeTracker measures what AudioVolumeTracker does (the last 400 ms, 0 until full)
    # with calculate_audio_volume's BS.1770 loudness, computed incrementally.
    Copied(VOLUME_TRACKER, "update", "228b587e19e3", VAD_VOLUME),
    Copied(AUDIO_UTILS, "calculate_audio_volume", "fdc03623ffb0", VAD_VOLUME),
    Copied(SMART_TURN, "__init__", "c68ca10d804a", SHARED_MODELS),
    # LeanWorkerObserver queues FrameProcessed as WorkerObserver does, only to observers that
    # implement on_process_frame (BaseObserver's does nothing), and spares observers the input
    # audio pushes they return from at once (RTVI's, unless it reports audio levels).
    Copied(WORKER_OBSERVER, "on_process_frame", "527653c0d7e2", LEAN_OBSERVER),
    Copied(WORKER_OBSERVER, "_send_to_proxy", "51f44fcac9ce", LEAN_OBSERVER),
    Copied(BASE_OBSERVER, "on_process_frame", "86f77e28572c", LEAN_OBSERVER),
    Copied(RTVI_OBSERVER, "on_push_frame", "2c8f705ec323", LEAN_OBSERVER),
    # SharedPiperTTSService speaks as PiperTTSService.run_tts does, with a voice shared per process.
    Copied(PIPER, "run_tts", "84d36ea778c7", PIPER_TTS),
    Copied(DEEPGRAM, "_connection_handler", "0ee66e7da4d7", DEEPGRAM_STT),
    # WebsocketAudioInput's audio task is Pipecat's without the wait_for whose timeout does nothing.
    Copied(FASTAPI_INPUT, "_audio_task_handler", "b7f51d8b4c0c", WEBSOCKET_AUDIO_INPUT),
    # SessionWebsocketTransport builds its input as FastAPIWebsocketTransport.__init__ does.
    Copied(FASTAPI_TRANSPORT, "__init__", "f75c3207b2da", WEBSOCKET_SESSION),
]


class Skipped(NamedTuple):
    owner: str
    base: str  # the class whose __init__ we call directly instead
    our_file: str


# Parents whose __init__ we skip by calling their base's: that must still be the only base.
SKIPPED_INITS = [
    Skipped(SMART_TURN, BASE_SMART_TURN, SHARED_MODELS),
]


class Call(NamedTuple):
    owner: str
    member: str
    code: str  # appears in the member's source; "a ... b": a, then later b
    our_file: str


NEW_WORKER = "Process(self.config, self.sockets)"

# Pipecat/uvicorn code that must still call what we override or replace, or our change does nothing.
CALLED_BY_PIPECAT = [
    Call(VAD, "_run_analyzer", "self.voice_confidence(", SHARED_MODELS),
    Call(VAD, "set_params", "self._vad_state: VADState = VADState.QUIET", SHARED_MODELS),
    Call(
        VAD,
        "_run_analyzer",
        "self._get_smoothed_volume(audio_frames) ... self._prev_volume = volume",
        SHARED_MODELS,
    ),
    Call(
        VAD,
        "_get_smoothed_volume",
        "exp_smoothing(self._volume_tracker.volume, self._prev_volume, self._smoothing_factor)",
        SHARED_MODELS,
    ),
    Call(
        VAD,
        "_get_smoothed_volume",
        "self._volume_tracker.update(audio, self.sample_rate) ... self._volume_tracker.volume",
        SHARED_MODELS,
    ),
    Call(BASE_SMART_TURN, "analyze_end_of_turn", "self._model_executor", SHARED_MODELS),
    Call(SMART_TURN, "_predict_endpoint", "self._session.run(", SHARED_MODELS),
    Call(DEEPGRAM, "_connect", "self._connection_handler()", DEEPGRAM_STT),
    # Each `Flushed` becomes a stop frame, then a removal, of the active context: the two calls
    # SentenceFlushingDeepgramTTSService skips for an early flush's acknowledgement.
    Call(
        DEEPGRAM_TTS_SERVICE,
        "_receive_messages",
        "Flushed ... self.append_to_audio_context( ... TTSStoppedFrame ... self.remove_audio_context(ctx_id)",
        DEEPGRAM_TTS,
    ),
    Call(WORKER, "_setup", "observer=self._observer", LEAN_OBSERVER),
    Call(DEEPGRAM, "stop", "self._disconnect()", DEEPGRAM_STT),
    Call(DEEPGRAM, "cancel", "self._disconnect()", DEEPGRAM_STT),
    Call(DEEPGRAM, "cleanup", "self._disconnect()", DEEPGRAM_STT),
    Call(DEEPGRAM, "_do_reconnect", "self._disconnect()", DEEPGRAM_STT),
    Call(DEEPGRAM, "_disconnect", "self._connection = None ... send_close_stream(", DEEPGRAM_STT),
    # The Finalize goes out after the parent's handling of the VAD stop, i.e. after our batch.
    Call(DEEPGRAM, "process_frame", "await super().process_frame( ... send_finalize(", DEEPGRAM_STT),
    # The apology reaches the pipeline as a chunk of the stream get_chat_completions returns.
    Call(OPENAI, "_process_context", "self.get_chat_completions(context) ... delta.content)", RESILIENT_LLM),
    # Pipecat closes the socket only through its close(), which HeldWebSocket turns into a note
    # so the route can finish the connection after the pipeline.
    Call(FASTAPI_CLIENT, "disconnect", "self._websocket.close()", WEBSOCKET_SESSION),
    Call(BASE_INPUT, "_create_audio_task", "self._audio_task_handler()", WEBSOCKET_AUDIO_INPUT),
    Call(FASTAPI_TRANSPORT, "input", "return self._input", WEBSOCKET_SESSION),
    Call(UVICORN_PROCESS, "target", "self.server.run(sockets)", DRAINING_SERVER),
    Call(UVICORN_SUPERVISOR, "init_processes", NEW_WORKER, DRAINING_SERVER),
    Call(UVICORN_SUPERVISOR, "restart_all", NEW_WORKER, DRAINING_SERVER),
    Call(UVICORN_SUPERVISOR, "keep_subprocess_alive", NEW_WORKER, DRAINING_SERVER),
    Call(UVICORN_SUPERVISOR, "handle_ttin", NEW_WORKER, DRAINING_SERVER),
]

RECHECK = "re-read that file against the new code, then update tests/test_pipecat_contract.py"


def _dotted(owner: str) -> str:
    return owner.replace(":", ".")


def _resolve(owner: str):
    module_name, _, class_name = owner.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name) if class_name else module


@functools.cache
def _class_source(klass: type) -> str:
    try:
        return inspect.getsource(klass)
    except (OSError, TypeError):  # builtins
        return ""


def _assigned_on_self(cls: type, name: str) -> bool:
    """Whether some class of `cls`'s MRO assigns `self.<name>` (plain or annotated) in its code."""
    assignment = re.compile(rf"^\s*self\.{re.escape(name)}\s*(:[^=\n]+)?=(?!=)", re.MULTILINE)
    return any(assignment.search(_class_source(klass)) for klass in cls.__mro__ if klass is not object)


def _kind_of(owner_obj, name: str) -> str:
    """What `name` is on the class (or module), in the words of the kinds above."""
    try:
        value = inspect.getattr_static(owner_obj, name)
    except AttributeError:
        if inspect.isclass(owner_obj) and _assigned_on_self(owner_obj, name):
            return INSTANCE_ATTR
        return "missing"
    if isinstance(value, property):
        return PROPERTY
    if inspect.isclass(value):
        return CLASS
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    if inspect.iscoroutinefunction(value):
        return ASYNC_METHOD
    if inspect.isfunction(value):
        return METHOD
    where = "class" if inspect.isclass(owner_obj) else "module"
    return f"a {where}-level {type(value).__name__}"


def _fingerprint(function) -> str:
    """A short hash of a function's code, blind to its docstring, comments and formatting
    (`ast.unparse`, not `ast.dump`, whose output changes with the Python version)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    node = tree.body[0]
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.unparse(node).encode()).hexdigest()[:12]


def test_pinned_versions():
    pipecat_version = importlib.metadata.version("pipecat-ai")
    uvicorn_version = importlib.metadata.version("uvicorn")
    assert pipecat_version == PIPECAT_VERSION, (
        f"pipecat-ai is {pipecat_version}, the private members listed in tests/test_pipecat_contract.py "
        f"were checked against {PIPECAT_VERSION}: re-check each listed file and the list itself on upgrade"
    )
    assert uvicorn_version.rsplit(".", 1)[0] == UVICORN_MINOR, (
        f"uvicorn is {uvicorn_version}, the members listed in tests/test_pipecat_contract.py were checked "
        f"against {UVICORN_MINOR}.x: re-check bots/draining_server.py and the list on upgrade"
    )


def test_loudness_is_the_version_rolling_volume_tracker_reproduces():
    """processors/vad_volume.py re-implements libloudness's integrated loudness as `loudness`
    0.2.0 builds it (K-weighting, -70 LUFS gate, 0.1 LU histogram); tests/test_vad_volume.py
    compares the two, window for window."""
    version = importlib.metadata.version("loudness")
    assert version == "0.2.0", (
        f"loudness is {version}: re-run tests/test_vad_volume.py and re-read processors/vad_volume.py "
        f"against its libloudness, then update this test"
    )


def _id(entry) -> str:
    return f"{entry.owner.rpartition(':')[2] or entry.owner}.{entry.member}"


@pytest.mark.parametrize("entry", MEMBERS, ids=_id)
def test_member_is_there_as_we_use_it(entry: Member):
    owner = _resolve(entry.owner)
    found = _kind_of(owner, entry.member)
    assert found == entry.kind, (
        f"{entry.our_file} relies on {_dotted(entry.owner)}.{entry.member} being {entry.kind}, "
        f"but it is {found}; {RECHECK}"
    )


@pytest.mark.parametrize("entry", COPIED, ids=_id)
def test_copied_code_is_unchanged(entry: Copied):
    function = getattr(_resolve(entry.owner), entry.member)
    found = _fingerprint(function)
    assert found == entry.fingerprint, (
        f"{_dotted(entry.owner)}.{entry.member} changed (fingerprint {found}, was {entry.fingerprint}); "
        f"{entry.our_file} re-implements or skips it: carry the change over, {RECHECK}"
    )


@pytest.mark.parametrize("entry", SKIPPED_INITS, ids=lambda s: s.owner.rpartition(":")[2])
def test_skipped_init_skips_only_its_own_class(entry: Skipped):
    owner, base = _resolve(entry.owner), _resolve(entry.base)
    assert owner.__bases__ == (base,), (
        f"{entry.our_file} skips {_dotted(entry.owner)}.__init__ by calling {_dotted(entry.base)}.__init__, "
        f"but its bases are now {owner.__bases__}: an __init__ in between would be skipped too; {RECHECK}"
    )


@pytest.mark.parametrize("entry", CALLED_BY_PIPECAT, ids=_id)
def test_pipecat_still_calls_what_we_override(entry: Call):
    source = inspect.getsource(getattr(_resolve(entry.owner), entry.member))
    position = 0
    for part in entry.code.split(" ... "):
        position = source.find(part, position)
        if position < 0:
            break
    assert position >= 0, (
        f"{entry.our_file} relies on {_dotted(entry.owner)}.{entry.member} calling `{entry.code}`, "
        f"which it no longer does; {RECHECK}"
    )


def test_the_bundled_silero_model_takes_what_silero_batcher_feeds_it():
    """SileroBatcher stacks each call's state as float32 [2, N, 128] and feeds ONNX by input name."""
    from processors.shared_models import vad_model_session
    from processors.silero_batcher import STATE_SHAPE

    inputs = {i.name: (i.shape, i.type) for i in vad_model_session().get_inputs()}
    expected = {
        "input": ([None, None], "tensor(float)"),
        "state": ([STATE_SHAPE[0], None, STATE_SHAPE[2]], "tensor(float)"),
        "sr": ([], "tensor(int64)"),
    }
    assert inputs == expected, (
        f"processors/silero_batcher.py feeds the bundled Silero model {expected}; "
        f"it takes {inputs}; {RECHECK}"
    )

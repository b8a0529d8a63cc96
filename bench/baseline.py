"""The baseline: a plain Pipecat 1.14 bot, as Pipecat's own examples build it.

FastAPIWebsocketTransport + ProtobufFrameSerializer → DeepgramSTTService → LLMContextAggregatorPair
user aggregator (SileroVADAnalyzer, default turn strategy: smart-turn v3) → OpenAILLMService →
DeepgramTTSService → output → assistant aggregator; one PipelineWorker per connection.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, WebSocket
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.deepgram.tts import DeepgramTTSService
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner


def create_baseline_app() -> FastAPI:
    deepgram_url, openai_url = os.environ["DEEPGRAM_BASE_URL"], os.environ["OPENAI_BASE_URL"]
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def session(websocket: WebSocket) -> None:
        await websocket.accept()
        transport = FastAPIWebsocketTransport(
            websocket,
            FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                audio_out_sample_rate=24000,
                serializer=ProtobufFrameSerializer(),
            ),
        )
        stt = DeepgramSTTService(api_key="test-key", base_url=deepgram_url)
        llm = OpenAILLMService(
            api_key="sk-test", base_url=openai_url, settings=OpenAILLMService.Settings(model="gpt-4.1-mini")
        )
        tts = DeepgramTTSService(api_key="test-key", base_url=deepgram_url)
        user, assistant = LLMContextAggregatorPair(
            LLMContext([{"role": "system", "content": "You are a helpful voice assistant."}]),
            user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()),
        )
        pipeline = Pipeline([transport.input(), stt, user, llm, tts, transport.output(), assistant])
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=24000),
            idle_timeout_secs=None,
        )

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(transport, client):
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()

    return app

"""How the user ends a conversation by saying goodbye: the LLM's `end_conversation` tool, or,
for an LLM without tool calling (the embedded one), the phrase detector.

The tool follows LiveKit's `EndCallTool`: the LLM decides, from the whole conversation, that the
user is done, and calls the function; the handler ends the session after the LLM's reply, if it
gave one, through the same `EndSessionFrame` path as every other ending.
"""

from __future__ import annotations

import re

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import FunctionCallResultProperties
from pipecat.services.llm_service import FunctionCallParams, LLMService

from pipeline.providers import Providers
from pipeline.settings import Settings
from processors.frames import UserGoodbyeFrame
from processors.goodbye_detector import GoodbyeDetector

END_CONVERSATION = "end_conversation"
# A reply that already says farewell makes the profile's goodbye a second one.
_FAREWELL_WORDS = re.compile(
    r"\b(?:bye|goodbye|good-bye|farewell|take care|have a (?:good|nice|great) \w+)\b", re.I
)
INSTRUCTION = (
    f"When the user clearly ends the conversation (they say goodbye, say that is all they need, or "
    f"ask you to hang up), call the {END_CONVERSATION} function and say nothing: the goodbye is "
    "spoken for you. Do not call it when a farewell is only mentioned, as in 'say bye to my sister'."
)


def uses_tool(settings: Settings, providers: Providers) -> bool:
    """The tool needs an LLM that calls functions; the embedded llama.cpp model does not."""
    return settings.end_on_goodbye and providers.llm != "local"


def uses_detector(settings: Settings, providers: Providers) -> bool:
    return settings.end_on_goodbye and providers.llm == "local"


def with_instruction(settings: Settings) -> Settings:
    """The settings with the system prompt telling the LLM when to call the tool."""
    return settings.model_copy(update={"bot_system_prompt": f"{settings.bot_system_prompt}\n\n{INSTRUCTION}"})


def end_conversation_tools() -> ToolsSchema:
    schema = FunctionSchema(
        name=END_CONVERSATION,
        description="End the call, after the user has clearly said goodbye or that they are done.",
        properties={},
        required=[],
    )
    return ToolsSchema(standard_tools=[schema])


def register_end_conversation(llm: LLMService, *, goodbye: str) -> None:
    """Handle the tool call: end the session once the reply before it (if any) is spoken.

    The profile's goodbye is said unless the LLM's reply in the same response already said
    farewell, so a caller never hears two ("Bye, take care!" and then "Thanks for calling.
    Goodbye!").
    """

    async def end_conversation(params: FunctionCallParams) -> None:
        reply = str(getattr(params.llm, "reply_text", ""))
        said_farewell = _FAREWELL_WORDS.search(reply) is not None
        await params.result_callback({"ended": True}, properties=FunctionCallResultProperties(run_llm=False))
        # Pushed after the reply's text, so it is spoken first; the session end frame then
        # queues behind that audio like every goodbye.
        await params.llm.push_frame(
            UserGoodbyeFrame(goodbye="" if said_farewell else goodbye, detail="you said goodbye")
        )

    llm.register_function(END_CONVERSATION, end_conversation)


def goodbye_detector(settings: Settings, providers: Providers) -> list[GoodbyeDetector]:
    """The phrase detector for the pipeline (after the user aggregator), when it is the way."""
    return [GoodbyeDetector(goodbye=settings.goodbye)] if uses_detector(settings, providers) else []

"""The `voicebot` command: `voicebot serve [--host H] [--port P]`."""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from loguru import logger

from bots.logging_setup import configure_logging
from pipeline.settings import Settings, SettingsError, deprecated_names, load_settings


def load_bots(settings: Settings):
    """The validated bot profiles; ProfilesError (one line) when the file is unusable."""
    from pipeline.profiles import load_profiles
    from pipeline.services import resolve_providers

    return load_profiles(settings, resolve_providers(settings))


def share_with_workers(settings: Settings, host: str, port: int) -> None:
    """Export what worker processes must agree on with this one into their environment."""
    os.environ["VOICEBOT_HOST"] = host
    os.environ["VOICEBOT_PORT"] = str(port)
    if settings.session_secret is None:
        os.environ["VOICEBOT_SESSION_SECRET"] = secrets.token_hex(32)


def _configured(*, log_format: bool = True):
    """The validated settings and bots with logging set up and one warning per old setting name
    in use; None, after one line on stderr, when they are invalid."""
    from pipeline.profiles import ProfilesError

    try:
        settings = load_settings()
        bots = load_bots(settings)
    except (SettingsError, ProfilesError) as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return None
    configure_logging(settings.log_level, settings.log_format if log_format else "text")
    for line in deprecated_names(dict(os.environ)):
        logger.warning(line)
    return settings, bots


def _serve(args: argparse.Namespace) -> int:
    configured = _configured()
    if configured is None:
        return 2
    settings, bots = configured
    host = args.host or settings.host
    port = args.port or settings.port

    import uvicorn

    from bots.draining_server import DrainingServer, run_draining_workers
    from bots.server import create_app, drain

    logger.info(f"Serving on http://{host}:{port} with {args.workers} worker process(es)")
    # Compressing every 20 ms audio frame costs ~5 % CPU for no gain on PCM.
    options = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "ws_per_message_deflate": False,
        "ws_max_size": settings.max_message_bytes,  # a larger message closes that socket (1009)
    }
    if args.workers > 1:
        # Each worker is a process with its own models and event loop; the kernel spreads
        # new connections across them. A session lives in one worker for its whole life.
        # Workers read their settings from the environment: give them the bind we serve on
        # (it decides whether credentials are required) and one token secret for all of them.
        share_with_workers(settings, host, port)
        factory = "bots.server:app_from_environment"
        run_draining_workers(uvicorn.Config(factory, factory=True, workers=args.workers, **options))
    else:
        app = create_app(settings, bind_host=host, bots=bots)
        DrainingServer(uvicorn.Config(app, **options), drain=lambda: drain(app)).run()
    return 0


def _call(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from bots.call import call

    audio = Path(args.audio)
    if not audio.is_file():
        print(f"voicebot call: no such file: {audio}", file=sys.stderr)
        return 2
    return asyncio.run(call(args.url, audio, ptt=args.ptt, out=Path(args.out), reply_timeout=args.timeout))


def _local(args: argparse.Namespace) -> int:
    if args.list_devices:
        from bots.local_bot import AudioDeviceError, list_devices

        try:
            print(list_devices())
        except AudioDeviceError as e:
            print(f"voicebot local: {e}", file=sys.stderr)
            return 2
        return 0
    configured = _configured(log_format=False)
    if configured is None:
        return 2
    _, bots = configured
    bot = bots.get(args.bot)
    if bot is None:
        print(f"voicebot local: unknown bot {args.bot!r} (bots: {', '.join(bots.names)})", file=sys.stderr)
        return 2
    from bots.local_bot import main_local  # imports Pipecat, which logs its banner: after the checks

    return main_local(bot.settings, input_device=args.input_device, output_device=args.output_device, bot=bot)


def main(argv: list[str] | None = None) -> int:
    # onnxruntime (Silero, smart-turn, Moonshine, Piper) otherwise writes a device id under HOME
    # and queues usage events for upload; a voice server has no business phoning home.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    parser = argparse.ArgumentParser(prog="voicebot", description="Real-time voice bot server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the bot over HTTP/WebSocket")
    serve.add_argument("--host", help="interface to bind (default: VOICEBOT_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: VOICEBOT_PORT or 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (one per core uses the whole machine; default 1)",
    )
    serve.set_defaults(handler=_serve)
    caller = commands.add_parser("call", help="send a recording to /ws/simple and print what comes back")
    caller.add_argument("url", help="e.g. ws://127.0.0.1:8000/ws/simple")
    caller.add_argument(
        "--audio", required=True, help="a recording: WAV, MP3, Ogg/Opus, WebM, FLAC, M4A or raw PCM"
    )
    caller.add_argument("--ptt", action="store_true", help="send it as one push-to-talk turn")
    caller.add_argument("--out", default="bot.wav", help="where to save the bot's audio (default: bot.wav)")
    caller.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the reply")
    caller.set_defaults(handler=_call)
    local = commands.add_parser("local", help="talk to the bot with this machine's microphone and speakers")
    local.add_argument(
        "--input-device", type=int, help="microphone device index (default: the system default)"
    )
    local.add_argument("--output-device", type=int, help="speaker device index (default: the system default)")
    local.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    local.add_argument("--bot", help="the bot profile to talk to (default: the profiles file's default)")
    local.set_defaults(handler=_local)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

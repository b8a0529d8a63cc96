"""Runs a built image's root filesystem the way deploy/k8s/deployment.yaml runs the container.

Called by scripts/image-check.sh inside fresh network, mount and PID namespaces (root), with the
image mounted at --rootfs. From the manifest it takes the user and group, the read-only root,
the emptyDir mounts (the only writable paths), the environment (secrets filled with random
values, optional ones left out) and the grace period. Then it checks, over loopback only (the
namespace has no other network, so nothing can be downloaded at run time):

1. /healthz and /readyz answer 200; prints the time from start to each.
2. A spoken question over /ws/simple (with a token from POST /session and an API key) is
   transcribed and answered by the offline stack baked into the image.
3. SIGTERM during that session: /readyz says draining, the caller gets the goodbye and the
   `server_shutdown` end, and the process exits 0 within the grace period less the preStop.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bots.call import SimpleClient  # noqa: E402
from tests.fakes.deepgram_server import FakeDeepgramServer  # noqa: E402
from tests.support.server import UNCLEAN_LOG  # noqa: E402
from tests.support.speech import speech_pcm16, word_error_rate  # noqa: E402

QUESTION = "What is the capital of France?"
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
PR_SET_NO_NEW_PRIVS = 38


@dataclass
class PodPlan:
    """What the Deployment's pod spec asks of the container runtime."""

    uid: int
    gid: int
    groups: list[int]
    read_only_root: bool
    no_new_privs: bool
    writable: dict[str, str]  # mount path -> tmpfs size
    env: dict[str, str]
    api_key: str
    port: int
    probes: dict[str, str]
    drain_budget: float  # terminationGracePeriodSeconds less the preStop sleep
    unset_optional: list[str] = field(default_factory=list)


def pod_plan(manifest: Path) -> PodPlan:
    deployment = yaml.safe_load(manifest.read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pod_security, security = pod.get("securityContext", {}), container.get("securityContext", {})

    def setting(name: str, default=None):
        return security.get(name, pod_security.get(name, default))

    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    writable = {}
    for mount in container.get("volumeMounts", []):
        empty_dir = volumes[mount["name"]].get("emptyDir")
        if empty_dir is None:
            raise SystemExit(f"image_check: volume {mount['name']} is not an emptyDir; add it here")
        writable[mount["mountPath"]] = str(empty_dir.get("sizeLimit", "64Mi")).replace("Mi", "m")

    api_key = secrets.token_urlsafe(24)
    env, unset = {}, []
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        if ref.get("key") == "api-keys":
            env[item["name"]] = api_key  # the operator's key: the check calls with it
        elif not ref.get("optional", False):
            env[item["name"]] = secrets.token_hex(32)
        else:
            unset.append(item["name"])  # a cloud key the operator did not give: the offline stack

    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_secs = float(pre_stop[-1]) if pre_stop[:1] == ["sleep"] else 0.0
    gid = setting("runAsGroup", setting("runAsUser"))
    return PodPlan(
        uid=setting("runAsUser"),
        gid=gid,
        groups=sorted({gid, pod_security.get("fsGroup", gid)}),
        read_only_root=bool(setting("readOnlyRootFilesystem", False)),
        no_new_privs=setting("allowPrivilegeEscalation", True) is False,
        writable=writable,
        env=env,
        api_key=api_key,
        port=container["ports"][0]["containerPort"],
        probes={p: container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")},
        drain_budget=pod.get("terminationGracePeriodSeconds", 30) - pre_stop_secs,
        unset_optional=unset,
    )


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def prepare_root(rootfs: Path, plan: PodPlan) -> Path:
    """The container's view: the image read-only, tmpfs where the pod has emptyDirs, a small /dev."""
    sh("ip", "link", "set", "lo", "up")
    root = Path(tempfile.mkdtemp(prefix="voicebot-root-"))
    sh("mount", "--bind", str(rootfs), str(root))
    if plan.read_only_root:
        sh("mount", "-o", "remount,bind,ro", str(root))
    sh("mount", "-t", "proc", "proc", str(root / "proc"))
    sh("mount", "-t", "sysfs", "-o", "ro", "sysfs", str(root / "sys"))
    sh("mount", "-t", "tmpfs", "-o", "mode=755,size=1m", "tmpfs", str(root / "dev"))
    for device in DEVICES:
        (root / "dev" / device).touch()
        sh("mount", "--bind", f"/dev/{device}", str(root / "dev" / device))
    (root / "dev" / "shm").mkdir()
    sh("mount", "-t", "tmpfs", "-o", "mode=1777,size=64m", "tmpfs", str(root / "dev" / "shm"))
    for path, size in plan.writable.items():
        sh("mount", "-t", "tmpfs", "-o", f"mode=1777,size={size}", "tmpfs", str(root / path.lstrip("/")))
    # What the kubelet mounts over the image's /etc/hosts.
    hosts = Path(tempfile.mkdtemp(prefix="voicebot-etc-")) / "hosts"
    hosts.write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    sh("mount", "--bind", "-o", "ro", str(hosts), str(root / "etc" / "hosts"))
    return root


def start(
    root: Path, config: dict, plan: PodPlan, log: Path, command: list[str] | None = None, **extra_env: str
) -> subprocess.Popen:
    """The image's CMD in its WORKDIR with its ENV plus the manifest's, as the pod's user."""
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    env.update(plan.env, **extra_env)
    workdir = config.get("WorkingDir") or "/"

    def enter() -> None:
        os.chroot(root)
        os.chdir(workdir)
        os.setgroups(plan.groups)
        os.setgid(plan.gid)
        os.setuid(plan.uid)  # a non-root uid: the permitted capability set is emptied
        if plan.no_new_privs:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)

    command = command or (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
    with log.open("w") as out:
        return subprocess.Popen(
            command, env=env, preexec_fn=enter, stdout=out, stderr=subprocess.STDOUT, close_fds=True
        )


class CannedTranscriber:
    """Stands in for Moonshine in the fake Deepgram: hears the question in any speech."""

    async def transcribe(self, pcm16: bytes) -> str:
        return QUESTION


def embedded_stt_runs(root: Path, config: dict, plan: PodPlan, log: Path) -> bool:
    """Whether the image's offline STT loads here, as the server loads it (moonshine-cpp 0.1.4's
    libmoonshine.so is built with AVX-512 instructions: on a CPU without them it dies with SIGILL)."""
    probe = "from processors.moonshine_stt import MoonshineTranscriber; MoonshineTranscriber()"
    code = start(root, config, plan, log, ["python", "-c", probe]).wait(timeout=120)
    if code not in (0, -signal.SIGILL):
        raise AssertionError(f"loading the embedded STT failed with status {code}: {log.read_text()[-2000:]}")
    return code == 0


def log_problems(log: Path) -> tuple[list[str], list[str]]:
    """The server log's errors (and tracebacks), and its warnings, as messages."""
    errors, warnings = [], []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)["record"]
            level, message = record["level"]["name"], record["message"]
        except (ValueError, KeyError, TypeError):
            level, message = ("ERROR" if UNCLEAN_LOG.search(line) else "OTHER"), line
        if level in ("ERROR", "CRITICAL") or UNCLEAN_LOG.search(message):
            errors.append(message)
        elif level == "WARNING" or "[W:" in message:
            warnings.append(message)
    return errors, warnings


def get(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_200(url: str, process: subprocess.Popen, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with status {process.returncode} at start-up")
        try:
            if get(url)[0] == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout:.0f}s")


async def session_then_sigterm(base: str, plan: PodPlan, process: subprocess.Popen) -> dict:
    status, body = get(f"{base}/session", data=b"", headers={"X-API-Key": plan.api_key})
    assert status == 200, f"POST /session answered {status}: {body}"
    url = base.replace("http://", "ws://") + f"/ws/simple?token={body['token']}"
    figures = {}
    async with SimpleClient(url) as client:
        await client.wait_for(lambda c: c.of_type("ready"), 10, "ready")
        sent = time.monotonic()
        await client.send_bytes(speech_pcm16(QUESTION))
        await client.wait_for(lambda c: c.of_type("bot_text"), 90, "the reply")
        await client.wait_for(
            lambda c: c.times("bot_stopped_speaking")[-1:] > c.times("bot_text")[-1:], 60, "reply audio"
        )
        figures["reply_secs"] = client.times("bot_text")[0] - sent
        heard = " ".join(e["text"] for e in client.of_type("transcript") if e["final"])
        reply = " ".join(e["text"] for e in client.of_type("bot_text"))
        print(f"image-check: heard {heard!r}; replied {reply!r}")
        assert word_error_rate(QUESTION, heard) <= 0.25, f"transcript {heard!r}"
        assert client.bot_audio(), "no reply audio"

        process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        await asyncio.sleep(0.5)
        readiness = get(f"{base}{plan.probes['readinessProbe']}")
        assert readiness[0] == 503 and readiness[1]["status"] == "draining", f"/readyz: {readiness}"
        await client.wait_closed(timeout=plan.drain_budget)
        end = client.of_type("end")
        assert end and end[-1]["reason"] == "server_shutdown", f"end events: {end}"
        assert (client.close_code, client.close_reason) == (1000, "server_shutdown")
    left = max(0.0, plan.drain_budget - (time.monotonic() - terminated))
    code = await asyncio.to_thread(process.wait, left)
    figures["exit_code"] = code
    figures["drain_secs"] = time.monotonic() - terminated
    assert code == 0, f"exit status {code}"
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True, help="`buildah inspect --type image` JSON")
    parser.add_argument("--manifest", type=Path, default=REPO / "deploy" / "k8s" / "deployment.yaml")
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "voicebot-image-check.log")
    args = parser.parse_args()

    plan = pod_plan(args.manifest)
    config = json.loads(args.image.read_text())["OCIv1"]["config"]
    speech_pcm16(QUESTION)  # made before the clock starts
    root = prepare_root(args.rootfs, plan)
    writable = ", ".join(plan.writable) or "nothing"
    print(
        f"image-check: uid {plan.uid}:{plan.gid}, read-only root {plan.read_only_root}, "
        f"writable {writable}, no network but loopback; env from the manifest: {sorted(plan.env)}"
        + (f"; left unset (optional secrets): {plan.unset_optional}" if plan.unset_optional else "")
    )
    stt_env, fake_deepgram = {}, None
    if not embedded_stt_runs(root, config, plan, args.log):
        # The rest of the offline stack (llama.cpp, Piper, Silero) is still the image's own.
        fake_deepgram = FakeDeepgramServer(CannedTranscriber()).start()
        stt_env = {
            "VOICEBOT_STT_PROVIDER": "deepgram", "VOICEBOT_TTS_PROVIDER": "local",
            "DEEPGRAM_API_KEY": fake_deepgram.behaviour.api_key, "DEEPGRAM_BASE_URL": fake_deepgram.base_url,
        }  # fmt: skip
        print(
            "image-check: WARNING: the image's offline STT dies with SIGILL on this CPU (moonshine-cpp's "
            "libmoonshine.so uses AVX-512); the session's speech goes to a loopback fake Deepgram instead"
        )
    base = f"http://127.0.0.1:{plan.port}"
    started = time.monotonic()
    process = start(root, config, plan, args.log, **stt_env)
    try:
        healthy = wait_200(base + plan.probes["livenessProbe"], process, timeout=120)
        ready = wait_200(base + plan.probes["readinessProbe"], process, timeout=30)
        print(f"image-check: healthy after {healthy - started:.1f}s, ready after {ready - started:.1f}s")
        figures = asyncio.run(session_then_sigterm(base, plan, process))
    except BaseException:
        print(f"image-check: FAILED; the server's log ({args.log}):", file=sys.stderr)
        print(args.log.read_text(errors="replace")[-6000:], file=sys.stderr)
        raise
    finally:
        if process.poll() is None:
            process.kill()
        if fake_deepgram is not None:
            fake_deepgram.stop()
    errors, warnings = log_problems(args.log)
    for warning in warnings:
        print(f"image-check: the server warned: {warning.strip()[:200]}")
    assert not errors, f"errors in the server log ({args.log}): {errors}"
    for path in plan.writable:
        written = sorted(str(p.relative_to(root)) for p in (root / path.lstrip("/")).rglob("*"))
        print(f"image-check: left in {path}: {written or 'nothing'}")
    print(
        f"image-check: reply {figures['reply_secs']:.1f}s after the question; SIGTERM drained the "
        f"session and exited {figures['exit_code']} in {figures['drain_secs']:.1f}s "
        f"(budget {plan.drain_budget:.0f}s)"
    )
    print("image-check: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

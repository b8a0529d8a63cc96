"""The Kubernetes manifests and the Dockerfile: valid against the schemas, hardened, and consistent
with the server and with what `make image-check` ran (no image is built here)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from bots.server import create_app
from pipeline.settings import Settings, _setting_names, load_settings

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
UID = 10001
STATUS_PATHS = ("/healthz", "/readyz", "/metrics")
# What callers reach through the public Ingress: the page and its assets, tokens, the sockets,
# and Twilio's webhook and stream.
PUBLIC_PATHS = ("/", "/static/app.js", "/session", "/ws", "/ws/simple", "/twilio/voice", "/twilio/ws")


def manifest(name: str) -> dict:
    return yaml.safe_load((ROOT / "deploy" / "k8s" / name).read_text())


def pod_spec() -> dict:
    return manifest("deployment.yaml")["spec"]["template"]["spec"]


def container() -> dict:
    return pod_spec()["containers"][0]


def final_stage() -> list[str]:
    """The Dockerfile's last stage as logical instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def image_env() -> dict[str, str]:
    """The final stage's ENV (and any other NAME=value it sets)."""
    return dict(re.findall(r"\b(\w+)=(\S+)", " ".join(final_stage())))


def routed(path: str, rules: list[dict]) -> bool:
    """Whether an Ingress path rule sends `path` to the backend (Exact, or Prefix by element)."""
    for rule in rules:
        if rule["pathType"] == "Exact" and path == rule["path"]:
            return True
        if rule["pathType"] == "Prefix":
            prefix = rule["path"].rstrip("/").split("/")
            if path.rstrip("/").split("/")[: len(prefix)] == prefix:
                return True
    return False


def test_manifests_validate_against_the_kubernetes_schemas():
    validator = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).parent / "kubernetes-validate"
    )
    result = subprocess.run(
        [validator, "--strict", "-k", "1.30.0", *map(str, MANIFESTS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(MANIFESTS)


def test_the_deployment_fits_the_drain_and_probes_real_routes(clean_env):
    deployment = manifest("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    env = {item["name"]: item.get("value") for item in container()["env"]}
    pre_stop = int(container()["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + float(env["VOICEBOT_DRAIN_SECS"])
    routes = {route.path for route in create_app(Settings()).routes}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container()[probe]["httpGet"]["path"] in routes
    assert container()["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_pod_runs_unprivileged_under_the_default_seccomp_profile():
    pod = pod_spec()
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    security = container()["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in security and security.get("runAsUser", UID) == UID


def test_the_only_writable_paths_are_emptydirs_and_tmpdir_is_one():
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container()["volumeMounts"]}
    assert all("emptyDir" in volume for volume in mounts.values()), mounts
    assert image_env()["TMPDIR"] in mounts


def test_the_image_tag_is_pinned_to_the_project_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = container()["image"]
    assert image.rsplit(":", 1)[-1] == version, image
    assert image.rsplit("/", 1)[-1] == f"voicebot:{version}"


def test_the_final_stage_has_the_openmp_runtime_no_compilers_and_a_numeric_non_root_user():
    stage = final_stage()
    assert stage[0] == "FROM ${BASE}", "both stages build on the BASE argument"
    installs = " ".join(line for line in stage if line.startswith("RUN") and "apt-get install" in line)
    assert "libgomp1" in installs.split()
    assert not {"g++", "gcc", "cmake", "build-essential"} & set(installs.split())
    users = [line.split()[1] for line in stage if line.startswith("USER ")]
    assert users and users[-1] == f"{UID}:{UID}", users


def test_the_image_turns_off_onnxruntime_telemetry():
    """onnxruntime 1.29+ uploads usage events and writes a device id under HOME unless told not to."""
    assert image_env().get("ORT_DISABLE_TELEMETRY") == "1"


def test_the_public_ingress_routes_what_callers_use_and_no_status_endpoint():
    ingress = manifest("ingress.yaml")
    rules = [path for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    for path in STATUS_PATHS:
        assert not routed(path, rules), f"{path} is reachable through the public Ingress"
    for path in PUBLIC_PATHS:
        assert routed(path, rules), f"{path} is not routed"
    app_paths = {route.path for route in create_app(Settings()).routes} - {"/static"}
    assert {path for path in app_paths if routed(path, rules)} <= set(PUBLIC_PATHS), "docs/status routed"


def test_every_variable_the_deployment_sets_is_a_valid_setting(clean_env):
    env = container()["env"]
    names = [item["name"] for item in env]
    assert set(names) <= set(_setting_names()), set(names) - set(_setting_names())
    for item in env:  # secrets: any value will do for validation
        clean_env.setenv(item["name"], item.get("value", "secret-value"))
    settings = load_settings(env_file=None)
    assert settings.public_url and settings.public_url.startswith("https://")
    host = manifest("ingress.yaml")["spec"]["rules"][0]["host"]
    assert settings.public_url == f"https://{host}"


@pytest.mark.parametrize("name", ["VOICEBOT_TRUSTED_PROXIES"])
def test_the_deployment_sets_the_proxy_settings_once_the_server_has_them(name):
    """Behind the Ingress every caller arrives from the controller's address: once the server can
    take the client address from X-Forwarded-For, the Deployment must say whom to trust."""
    if name not in _setting_names():
        pytest.skip(f"{name} is not a setting on this branch yet")
    assert name in {item["name"] for item in container()["env"]}


def test_image_check_runs_the_image_with_the_deployments_settings():
    """`make image-check` takes user, read-only root, writable paths and env from the manifest."""
    spec = importlib.util.spec_from_file_location("image_check", ROOT / "scripts" / "image_check.py")
    image_check = sys.modules.setdefault("image_check", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(image_check)
    plan = image_check.pod_plan(ROOT / "deploy" / "k8s" / "deployment.yaml")
    assert (plan.uid, plan.gid, plan.read_only_root, plan.no_new_privs) == (UID, UID, True, True)
    assert set(plan.writable) == {mount["mountPath"] for mount in container()["volumeMounts"]}
    optional = {
        item["name"]
        for item in container()["env"]
        if item.get("valueFrom", {}).get("secretKeyRef", {}).get("optional")
        and item["valueFrom"]["secretKeyRef"]["key"] != "api-keys"
    }
    assert set(plan.env) == {item["name"] for item in container()["env"]} - optional
    pre_stop = float(container()["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert plan.drain_budget == pod_spec()["terminationGracePeriodSeconds"] - pre_stop

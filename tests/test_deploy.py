"""The Kubernetes manifests: valid against the schemas, and consistent with the server's behaviour."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from bots.server import create_app
from pipeline.settings import Settings

MANIFESTS = sorted((Path(__file__).resolve().parents[1] / "deploy" / "k8s").glob("*.yaml"))


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
    deployment = yaml.safe_load((MANIFESTS[0].parent / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + float(env["VOICEBOT_DRAIN_SECS"])
    routes = {route.path for route in create_app(Settings()).routes}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in routes
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

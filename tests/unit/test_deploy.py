"""The deployment files agree with the code: no Docker or cluster here, so parse and cross-check.

A renamed setting, a moved port or a dropped console script breaks a deployment silently (the
container starts, the probe fails at 3 a.m.); these tests make the break a red build instead.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from orderwatch.cli import app
from orderwatch.console.settings import ConsoleSettings
from orderwatch.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
METRICS_PORT = Settings().metrics_port
# the console's settings extend the worker's: one set of names for every orderwatch process
SETTINGS_ENV = {f"ORDERWATCH_{name.upper()}" for name in ConsoleSettings.model_fields}


def yaml_files() -> list[Path]:
    return sorted(p for ext in ("*.yaml", "*.yml") for p in DEPLOY.rglob(ext))


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load(path: Path) -> Any:
    [doc] = load_all(path)
    return doc


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = load(DEPLOY / "compose.yaml")
    return doc


def k8s_docs() -> list[dict[str, Any]]:
    kustomization = load(K8S / "kustomization.yaml")
    return [doc for name in kustomization["resources"] for doc in load_all(K8S / name)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in k8s_docs() if doc["kind"] == kind]


def cli_commands() -> set[str]:
    group = typer.main.get_command(app)
    return set(getattr(group, "commands", {}))


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def instructions(name: str) -> list[str]:
    return [args for instr, args in dockerfile() if instr == name]


# --- every file parses -------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    assert load_all(path), f"{path} is empty"


# --- Dockerfile ----------------------------------------------------------------------------


def test_image_entrypoint_is_our_console_script_and_cmd_a_real_command() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    [entrypoint] = instructions("ENTRYPOINT")
    [cmd] = instructions("CMD")
    assert json.loads(entrypoint) == ["orderwatch"]
    assert "orderwatch" in scripts
    assert json.loads(cmd) == ["worker"]
    assert "worker" in cli_commands()


def test_image_is_multi_stage_on_a_pinned_python_311_slim() -> None:
    bases = [args.split()[0] for args in instructions("FROM")]
    assert len(bases) >= 2
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base


def test_image_installs_the_package_and_ships_the_rules() -> None:
    assert any(re.search(r"pip install \.(\s|$)", args) for args in instructions("RUN"))
    assert any(args.split()[0] == "rules" for args in instructions("COPY"))
    for args in instructions("COPY"):
        if not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_image_runs_as_non_root() -> None:
    users = instructions("USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # the last USER must come after everything that needs root
    last = max(i for i, (instr, _) in enumerate(dockerfile()) if instr == "USER")
    assert all(instr != "RUN" for instr, _ in dockerfile()[last:])


def test_image_exposes_the_metrics_port_and_binds_it_beyond_loopback() -> None:
    assert instructions("EXPOSE") == [str(METRICS_PORT)]
    env = " ".join(instructions("ENV"))
    assert "ORDERWATCH_METRICS_HOST=0.0.0.0" in env


def test_env_names_in_the_dockerfile_are_settings() -> None:
    names = set(re.findall(r"\b(ORDERWATCH_[A-Z0-9_]+)=", " ".join(instructions("ENV"))))
    assert names
    assert names <= SETTINGS_ENV


# --- compose -------------------------------------------------------------------------------


def compose_env() -> Iterator[tuple[str, str]]:
    for name, service in compose()["services"].items():
        env = service.get("environment") or {}
        pairs = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
        for key, _ in pairs:
            yield name, key


def test_compose_has_the_whole_stack() -> None:
    services = compose()["services"]
    expected = {"kafka", "worker", "prometheus", "alertmanager", "grafana", "alertmanager-bridge"}
    assert expected <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name, service in services.items():
        if "image" in service:
            assert not service["image"].endswith(":latest"), f"{name}: pin the image tag"


def test_compose_orderwatch_services_run_real_commands() -> None:
    services = compose()["services"]
    for name in ("worker", "alertmanager-bridge"):
        [command] = services[name]["command"]
        assert command in cli_commands(), name
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_env_vars_are_settings() -> None:
    used = {(svc, key) for svc, key in compose_env() if key.startswith("ORDERWATCH_")}
    assert used
    unknown = {(svc, key) for svc, key in used if key not in SETTINGS_ENV}
    assert not unknown, f"not Settings fields: {sorted(unknown)}"


def test_compose_publishes_and_scrapes_the_metrics_port() -> None:
    worker = compose()["services"]["worker"]
    assert f"{METRICS_PORT}:{METRICS_PORT}" in worker["ports"]
    assert worker["environment"]["ORDERWATCH_METRICS_PORT"] == str(METRICS_PORT)
    prometheus = load(DEPLOY / "prometheus" / "prometheus.yml")
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "orderwatch"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"worker:{METRICS_PORT}"]


def test_compose_mounts_exist_or_are_the_promised_paths() -> None:
    """Bind mounts point into deploy/; the prometheus rules go where prometheus.yml reads them."""
    services = compose()["services"]
    mounts = {
        svc: {m.split(":")[0]: m.split(":")[1] for m in s.get("volumes", [])}
        for svc, s in services.items()
    }
    assert mounts["prometheus"]["./prometheus/alerts.yaml"] == "/etc/prometheus/alerts.yaml"
    prometheus = load(DEPLOY / "prometheus" / "prometheus.yml")
    assert "/etc/prometheus/alerts.yaml" in prometheus["rule_files"]
    assert "./grafana/provisioning" in mounts["grafana"]
    assert "./grafana/dashboards" in mounts["grafana"]
    for source in ("./prometheus/prometheus.yml", "./alertmanager/alertmanager.yml"):
        assert (DEPLOY / source).is_file(), source


def test_bridge_resolve_timeout_matches_alertmanager() -> None:
    config = load(DEPLOY / "alertmanager" / "alertmanager.yml")
    minutes = int(config["global"]["resolve_timeout"].removesuffix("m"))
    bridge = compose()["services"]["alertmanager-bridge"]["environment"]
    assert float(bridge["ORDERWATCH_ALERTMANAGER_RESOLVE_TIMEOUT"]) == minutes * 60


# --- kubernetes ----------------------------------------------------------------------------


def workloads() -> list[dict[str, Any]]:
    return of_kind("Deployment") + of_kind("StatefulSet")


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Containers of our image (the console's oauth2-proxy sidecar is not ours)."""
    for deployment in workloads():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith("orderwatch:"):
                yield deployment, container


def test_kustomization_resources_exist() -> None:
    kustomization = load(K8S / "kustomization.yaml")
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), name
    kinds = {doc["kind"] for doc in k8s_docs()}
    assert {"StatefulSet", "Service", "ServiceMonitor", "ScaledObject"} <= kinds


def test_worker_probes_hit_healthz_and_readyz_on_the_metrics_port() -> None:
    [worker] = [c for _, c in containers() if c["args"] == ["worker"]]
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports == {"metrics": METRICS_PORT}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = worker[probe]["httpGet"]
        assert http["path"] == path
        assert ports.get(http["port"], http["port"]) == METRICS_PORT
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["ORDERWATCH_METRICS_HOST"] == "0.0.0.0", "probes come from outside the pod"


def test_containers_run_real_commands_with_known_settings_and_limits() -> None:
    for deployment, container in containers():
        where = f"{deployment['metadata']['name']}/{container['name']}"
        [command] = container["args"]
        assert command in cli_commands(), where
        names = {e["name"] for e in container.get("env", [])}
        assert names <= SETTINGS_ENV, f"{where}: not Settings fields: {names - SETTINGS_ENV}"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), where


def test_pods_run_as_non_root() -> None:
    for deployment, container in containers():
        pod = deployment["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] != 0
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_service_monitor_scrapes_the_worker_service_port() -> None:
    [service] = [s for s in of_kind("Service") if s["metadata"]["name"] == "orderwatch"]
    [monitor] = of_kind("ServiceMonitor")
    [worker] = [d for d in workloads() if d["metadata"]["name"] == "orderwatch"]
    assert service["metadata"]["name"] == "orderwatch", "alerts.yaml expects job=orderwatch"
    pod_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    [port] = service["spec"]["ports"]
    assert port["port"] == METRICS_PORT
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_scaled_object_scales_the_worker_on_its_consumer_group_lag() -> None:
    [scaled] = of_kind("ScaledObject")
    names = {(d["kind"], d["metadata"]["name"]) for d in workloads()}
    target = scaled["spec"]["scaleTargetRef"]
    assert (target.get("kind", "Deployment"), target["name"]) in names
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == Settings().app_id
    assert scaled["spec"]["minReplicaCount"] >= 1, "timeouts need a running clock"


def test_the_worker_keeps_its_state_directory_on_a_volume() -> None:
    """RocksDB state on a claim per pod (k8s) and a named volume (compose) at the data dir."""
    [worker] = [d for d in of_kind("StatefulSet") if d["metadata"]["name"] == "orderwatch"]
    [container] = worker["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {c["metadata"]["name"] for c in worker["spec"]["volumeClaimTemplates"]}
    assert env["ORDERWATCH_STORE"] == "rocksdb"
    assert mounts["data"] == env["ORDERWATCH_DATA_DIR"] and "data" in claims
    service = compose()["services"]["worker"]
    volumes = dict(m.split(":")[:2] for m in service["volumes"])
    assert volumes["orderwatch-data"] == "/app/data", "the image's ORDERWATCH_DATA_DIR"
    assert "orderwatch-data" in compose()["volumes"]


def test_grafana_finds_its_dashboards_and_prometheus_in_compose() -> None:
    services = compose()["services"]
    mounts = dict(m.split(":")[:2] for m in services["grafana"]["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    if not provisioning.is_dir():
        pytest.skip("deploy/grafana/provisioning not written yet")
    for provider in load(provisioning / "dashboards" / "orderwatch.yaml")["providers"]:
        assert provider["options"]["path"] == mounts["./grafana/dashboards"]
    for source in load(provisioning / "datasources" / "prometheus.yaml")["datasources"]:
        host, _, port = source["url"].removeprefix("http://").partition(":")
        assert host in services
        assert f"{port}:{port}" in services[host]["ports"]

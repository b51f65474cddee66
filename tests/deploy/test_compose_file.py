"""docker-compose.yml and .env.example: the stack a team starts with `docker compose up`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ktsweep.service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
LOCAL_OVERRIDE = ROOT / "deploy" / "compose.local.yml"
ENV_EXAMPLE = ROOT / ".env.example"


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value
    return pairs


def docker_compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    clean = {key: value for key, value in os.environ.items() if not key.startswith("KTSWEEP_")}
    return subprocess.run(
        ["docker-compose", "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_validates_in_every_profile():
    for profile in ([], ["--profile", "gpu"], ["--profile", "wandb"]):
        result = docker_compose(*profile, "config", "-q", env=env_example())
        assert result.returncode == 0, result.stderr


def test_local_override_only_swaps_image_names():
    override = yaml.safe_load(LOCAL_OVERRIDE.read_text())
    assert set(override) == {"services"}
    for name, service in override["services"].items():
        assert name in compose()["services"]
        assert set(service) == {"image"}, f"{name} overrides more than its image"
    result = docker_compose("-f", str(LOCAL_OVERRIDE), "config", "-q", env=env_example())
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_tokens():
    settings = {k: v for k, v in env_example().items() if k != "KTSWEEP_API_TOKENS"}
    result = docker_compose("config", "-q", env=settings)
    assert result.returncode != 0
    assert "set KTSWEEP_API_TOKENS in .env" in result.stderr
    settings = {k: v for k, v in env_example().items() if k != "RAY_AUTH_TOKEN"}
    result = docker_compose("config", "-q", env=settings)
    assert result.returncode != 0
    assert "set RAY_AUTH_TOKEN in .env" in result.stderr


def default_of(value: str) -> str:
    """The value a `${NAME:-default}` setting takes when .env does not set NAME."""
    match = re.fullmatch(r"\$\{[A-Z0-9_]+:-(.*)\}", value)
    return match.group(1) if match else value


API_REPLICAS = ("api", "api-2")
RAY_NODES = ("ray-head", "ray-worker", "ray-worker-gpu")


def test_compose_has_the_services_profiles_and_volumes():
    services = compose()["services"]
    assert set(services) == {
        "postgres",
        "ray-head",
        "ray-worker",
        "ray-worker-gpu",
        "api",
        "api-2",
        "scheduler",
        "wandb",
    }
    assert services["ray-worker-gpu"]["profiles"] == ["gpu"]
    assert services["wandb"]["profiles"] == ["wandb"]
    devices = services["ray-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert service["restart"] == "unless-stopped", f"{name} has no restart policy"
    for name in ("ray-worker", "scheduler"):
        assert "container_name" not in services[name], f"{name} must stay scalable"
        assert "ports" not in services[name], f"{name} must stay scalable"
    assert services["postgres"]["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    for name in (*RAY_NODES, *API_REPLICAS, "scheduler"):
        assert "artifacts:/data/artifacts" in services[name]["volumes"], name
    assert {"postgres-data", "artifacts"} <= set(compose()["volumes"])
    for name in API_REPLICAS:
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"]), name


def test_api_runs_as_stateless_replicas_behind_the_name_workers_report_to():
    services = compose()["services"]
    replicas = [services[name] for name in API_REPLICAS]
    for replica in replicas:
        command = replica["command"]
        # API only, several processes through the stock server, and no Ray node of its own.
        assert command[:3] == ["ktsweep", "serve", "--no-scheduler"], command
        assert int(default_of(replica["environment"]["KTSWEEP_API_WORKERS"])) >= 2
        assert command[command.index("--port") + 1] == "8000", command
        assert set(replica["depends_on"]) == {"postgres"}
    assert replicas[0]["command"] == replicas[1]["command"]
    assert replicas[0]["environment"] == replicas[1]["environment"]
    # Workers report to `api`: both replicas answer to that name.
    assert services["api-2"]["networks"]["default"]["aliases"] == ["api"]
    assert replicas[0]["environment"]["KTSWEEP_API_URL"] == "http://api:8000"
    assert services["api"]["ports"] == ["${KTSWEEP_PORT:-8000}:8000"]


def test_two_schedulers_run_as_the_ray_driver():
    scheduler = compose()["services"]["scheduler"]
    assert scheduler["deploy"] == {"mode": "replicated", "replicas": 2}
    assert scheduler["command"] == ["ray-node", "driver", "ktsweep", "scheduler"]
    assert scheduler["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "ray-head" in scheduler["depends_on"]


def test_every_ray_node_and_the_scheduler_share_settings_and_ray_token():
    services = compose()["services"]
    nodes = [services[name]["environment"] for name in RAY_NODES]
    assert all(environment == nodes[0] for environment in nodes)
    scheduler = services["scheduler"]["environment"]
    assert {name: scheduler[name] for name in nodes[0]} == nodes[0]
    assert nodes[0]["RAY_AUTH_MODE"] == "token"
    assert nodes[0]["KTSWEEP_RAY_ADDRESS"] == "ray-head:6379"
    assert nodes[0]["KTSWEEP_API_URL"] == "http://api:8000"
    assert scheduler["KTSWEEP_DATABASE_URL"].startswith("postgresql://")
    # The API replicas read the same settings, without the Ray token and the W&B key.
    for name in API_REPLICAS:
        api = services[name]["environment"]
        shared = set(nodes[0]) - {"RAY_AUTH_TOKEN", "WANDB_API_KEY"}
        assert {key: api[key] for key in shared} == {key: nodes[0][key] for key in shared}
        assert api["KTSWEEP_DATABASE_URL"] == scheduler["KTSWEEP_DATABASE_URL"]


def test_each_service_gets_only_the_secrets_it_needs():
    services = compose()["services"]
    operator = ("KTSWEEP_API_TOKENS", "KTSWEEP_DATABASE_URL", "KTSWEEP_SECRET")
    # Ray nodes run trial code: no operator secret at all.
    for name in RAY_NODES:
        environment = services[name]["environment"]
        for secret in operator:
            assert secret not in environment, f"{name} gets {secret}"
    # The schedulers drive Ray and write the database; they serve no request.
    scheduler = services["scheduler"]["environment"]
    assert "KTSWEEP_API_TOKENS" not in scheduler and "KTSWEEP_SECRET" not in scheduler
    assert {"KTSWEEP_DATABASE_URL", "RAY_AUTH_TOKEN"} <= set(scheduler)
    # The API replicas never join Ray.
    for name in API_REPLICAS:
        environment = services[name]["environment"]
        assert {"KTSWEEP_API_TOKENS", "KTSWEEP_DATABASE_URL"} <= set(environment), name
        assert "RAY_AUTH_TOKEN" not in environment, f"{name} gets the Ray token"
        assert "KTSWEEP_SECRET" not in environment, name


def test_env_example_names_every_setting_the_compose_file_reads():
    text = COMPOSE_FILE.read_text()
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert read <= set(env_example()), f"missing from .env.example: {read - set(env_example())}"


def test_compose_sets_every_controller_setting():
    services = compose()["services"]
    wanted = {f"KTSWEEP_{name.upper()}" for name in Settings.model_fields} - {"KTSWEEP_SECRET"}
    for name in API_REPLICAS:
        environment = services[name]["environment"]
        assert wanted <= set(environment), f"not set for {name}: {wanted - set(environment)}"
        assert {"WANDB_MODE", "WANDB_BASE_URL"} <= set(environment)
    environment = services["scheduler"]["environment"]
    missing = wanted - {"KTSWEEP_API_TOKENS"} - set(environment)
    assert not missing, f"not set for the scheduler: {missing}"
    assert {"WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"} <= set(environment)

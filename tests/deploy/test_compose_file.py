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


def test_compose_has_the_services_profiles_and_volumes():
    services = compose()["services"]
    assert set(services) == {"postgres", "ray-head", "ray-worker", "ray-worker-gpu", "api", "wandb"}
    assert services["ray-worker-gpu"]["profiles"] == ["gpu"]
    assert services["wandb"]["profiles"] == ["wandb"]
    devices = services["ray-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert service["restart"] == "unless-stopped", f"{name} has no restart policy"
    assert "container_name" not in services["ray-worker"], "ray-worker must stay scalable"
    assert "ports" not in services["ray-worker"], "ray-worker must stay scalable"
    assert services["postgres"]["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    for name in ("ray-head", "ray-worker", "ray-worker-gpu", "api"):
        assert "artifacts:/data/artifacts" in services[name]["volumes"], name
    assert {"postgres-data", "artifacts"} <= set(compose()["volumes"])
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])


def test_every_ray_node_and_the_api_share_settings_and_ray_token():
    services = compose()["services"]
    nodes = [services[name]["environment"] for name in ("ray-head", "ray-worker", "ray-worker-gpu")]
    assert all(environment == nodes[0] for environment in nodes)
    api = services["api"]["environment"]
    assert {name: api[name] for name in nodes[0]} == nodes[0]
    assert nodes[0]["RAY_AUTH_MODE"] == "token"
    assert nodes[0]["KTSWEEP_RAY_ADDRESS"] == "ray-head:6379"
    assert nodes[0]["KTSWEEP_API_URL"] == "http://api:8000"
    assert api["KTSWEEP_DATABASE_URL"].startswith("postgresql://")


def test_ray_nodes_which_run_trial_code_get_no_operator_secret():
    services = compose()["services"]
    for name in ("ray-head", "ray-worker", "ray-worker-gpu"):
        environment = services[name]["environment"]
        for secret in ("KTSWEEP_API_TOKENS", "KTSWEEP_DATABASE_URL", "KTSWEEP_SECRET"):
            assert secret not in environment, f"{name} gets {secret}"


def test_env_example_names_every_setting_the_compose_file_reads():
    text = COMPOSE_FILE.read_text()
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert read <= set(env_example()), f"missing from .env.example: {read - set(env_example())}"


def test_compose_sets_every_controller_setting():
    environment = compose()["services"]["api"]["environment"]
    wanted = {f"KTSWEEP_{name.upper()}" for name in Settings.model_fields} - {"KTSWEEP_SECRET"}
    assert wanted <= set(environment), f"not set for the API: {wanted - set(environment)}"
    assert {"WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"} <= set(environment)

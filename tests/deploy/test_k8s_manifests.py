"""deploy/k8s: schema checks (bundled Kubernetes schemas, no network) and the cross-references."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ktsweep.service.config import Settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def find(kind: str, name: str | None = None) -> list[dict]:
    return [
        doc
        for doc in documents()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def ray_pod_templates() -> dict[str, dict]:
    spec = find("RayCluster")[0]["spec"]
    templates = {"head": spec["headGroupSpec"]["template"]}
    for group in spec["workerGroupSpecs"]:
        templates[group["groupName"]] = group["template"]
    return templates


def pod_templates() -> dict[str, dict]:
    templates = {f"ray-{name}": template for name, template in ray_pod_templates().items()}
    for doc in find("Deployment") + find("StatefulSet"):
        templates[doc["metadata"]["name"]] = doc["spec"]["template"]
    return templates


def test_manifests_match_the_kubernetes_schemas():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in documents():
        if doc["kind"] in ("RayCluster", "Kustomization"):
            continue  # custom resources: not in the bundled schemas, checked below
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    # The RayCluster's pod templates are ordinary pod templates.
    for name, template in ray_pod_templates().items():
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"ray-{name}", "namespace": "ktsweep"},
            "template": template,
        }
        kubernetes_validate.validate(pod_template, kubernetes_validate.latest_version(), True)


def test_every_resource_is_named_and_namespaced():
    for doc in documents():
        if doc["kind"] == "Kustomization":
            continue
        assert doc["apiVersion"] and doc["metadata"]["name"], doc
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "ktsweep", doc["metadata"]["name"]


def test_kustomization_lists_every_manifest():
    kustomization = find("Kustomization")[0]
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_raycluster_has_a_head_and_cpu_and_gpu_worker_groups():
    cluster = find("RayCluster")[0]
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {group["groupName"]: group for group in cluster["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(gpu_limits["nvidia.com/gpu"]) >= 1
    assert groups["gpu"]["template"]["spec"]["containers"][0]["image"].endswith("-gpu")


def test_ray_address_points_at_the_kuberay_head_service():
    cluster = find("RayCluster")[0]["metadata"]["name"]
    config = find("ConfigMap", "ktsweep-config")[0]["data"]
    assert config["KTSWEEP_RAY_ADDRESS"] == f"{cluster}-head-svc:6379"
    api_service = find("Service", "ktsweep-api")[0]
    assert (
        config["KTSWEEP_API_URL"] == f"http://ktsweep-api:{api_service['spec']['ports'][0]['port']}"
    )


def test_selectors_match_their_pod_labels():
    for doc in find("Deployment") + find("StatefulSet"):
        selector = doc["spec"]["selector"]["matchLabels"]
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), doc["metadata"]["name"]
    all_labels = [t["metadata"]["labels"] for t in pod_templates().values()]
    for service in find("Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in all_labels), service


def test_secret_config_and_volume_references_resolve():
    secret_keys = set(find("Secret", "ktsweep-secrets")[0]["stringData"])
    config_keys = set(find("ConfigMap", "ktsweep-config")[0]["data"])
    claims = {doc["metadata"]["name"] for doc in find("PersistentVolumeClaim")}
    for name, template in pod_templates().items():
        spec = template["spec"]
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] == "ktsweep-config", name
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "ktsweep-secrets" and ref["key"] in secret_keys, name
        for volume in spec.get("volumes", []):
            claim = volume.get("persistentVolumeClaim")
            if claim:
                assert claim["claimName"] in claims, name
    assert config_keys.isdisjoint(secret_keys)


def test_artifact_volume_is_shared_by_the_api_and_every_ray_node():
    claim = find("PersistentVolumeClaim", "ktsweep-artifacts")[0]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    config = find("ConfigMap", "ktsweep-config")[0]["data"]
    for name, template in pod_templates().items():
        if name == "postgres":
            continue
        mounts = {
            m["name"]: m["mountPath"] for m in template["spec"]["containers"][0]["volumeMounts"]
        }
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert mounts["artifacts"] == config["KTSWEEP_ARTIFACT_DIR"], name
        assert volumes["artifacts"]["persistentVolumeClaim"]["claimName"] == "ktsweep-artifacts"


def container_env(kind: str, name: str) -> set[str]:
    """The names of the environment variables a Deployment's container gets, ConfigMap included."""
    config = find("ConfigMap", "ktsweep-config")[0]["data"]
    container = find(kind, name)[0]["spec"]["template"]["spec"]["containers"][0]
    return set(config) | {variable["name"] for variable in container.get("env", [])}


def test_api_and_ray_nodes_get_the_settings_the_app_reads():
    config = find("ConfigMap", "ktsweep-config")[0]["data"]
    secrets = find("Secret", "ktsweep-secrets")[0]["stringData"]
    known = {f"KTSWEEP_{name.upper()}" for name in Settings.model_fields}
    for name in set(config) | set(secrets):
        prefix = name.split("_")[0]
        assert prefix in ("KTSWEEP", "WANDB", "RAY", "POSTGRES"), name
        if prefix == "KTSWEEP":
            assert name in known, f"{name} is not a setting the app reads"
    api_env = container_env("Deployment", "ktsweep-api")
    assert known - {"KTSWEEP_SECRET"} <= api_env, known - api_env
    scheduler_env = container_env("Deployment", "ktsweep-scheduler")
    assert known - {"KTSWEEP_SECRET", "KTSWEEP_API_TOKENS"} <= scheduler_env
    assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} <= scheduler_env
    for name, template in ray_pod_templates().items():
        env = {variable["name"] for variable in template["spec"]["containers"][0]["env"]}
        assert "RAY_AUTH_TOKEN" in env, name


def test_each_pod_gets_only_the_secrets_it_needs():
    operator = {"KTSWEEP_API_TOKENS", "KTSWEEP_DATABASE_URL", "KTSWEEP_SECRET"}
    # Ray nodes run trial code: no operator secret at all.
    for name, template in ray_pod_templates().items():
        env = {variable["name"] for variable in template["spec"]["containers"][0]["env"]}
        assert not env & operator, f"ray-{name} gets {env & operator}"
    # The schedulers drive Ray and write the database; they serve no request.
    scheduler_env = container_env("Deployment", "ktsweep-scheduler")
    assert "KTSWEEP_DATABASE_URL" in scheduler_env
    assert not scheduler_env & {"KTSWEEP_API_TOKENS", "KTSWEEP_SECRET"}
    # The API never joins Ray.
    api_env = container_env("Deployment", "ktsweep-api")
    assert {"KTSWEEP_API_TOKENS", "KTSWEEP_DATABASE_URL"} <= api_env
    assert "RAY_AUTH_TOKEN" not in api_env


def test_api_runs_as_stateless_replicas():
    api = find("Deployment", "ktsweep-api")[0]
    assert api["spec"]["replicas"] >= 2
    assert api["spec"]["strategy"]["type"] == "RollingUpdate"
    command = api["spec"]["template"]["spec"]["containers"][0]["command"]
    # API only, several processes through the stock server, and no Ray node of its own.
    assert command[:3] == ["ktsweep", "serve", "--no-scheduler"], command
    config = find("ConfigMap", "ktsweep-config")[0]["data"]
    assert int(config["KTSWEEP_API_WORKERS"]) >= 2
    port = int(command[command.index("--port") + 1])
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    budget = find("PodDisruptionBudget", "ktsweep-api")[0]["spec"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] < api["spec"]["replicas"]


def test_two_schedulers_run_as_the_ray_driver():
    scheduler = find("Deployment", "ktsweep-scheduler")[0]
    assert scheduler["spec"]["replicas"] == 2
    container = scheduler["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["ray-node", "driver", "ktsweep", "scheduler"]
    assert "ports" not in container  # it serves nothing: the API reads its state from PostgreSQL
    assert not find("Service", "ktsweep-scheduler")

"""Every shipped config under ``cluster/`` and ``sweeps/configs/`` loads and has what it must have.

The files are found by glob, so a new file is covered the moment it exists: a file that no entry of
``CHECKERS`` claims fails (give it a checker), and so does a glob that finds nothing. The checks use
the real validators where the projects ship one (``omnimer.config``, Ray's cluster-launcher schema,
``ray.runtime_env.RuntimeEnv``, DeepSpeed's ``DeepSpeedConfig``); the KubeRay manifests are checked
field by field against KubeRay's ``ray.io/v1`` API. Runs in a few seconds on CPU:

    python -m pytest tests/test_configs.py -q
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from launchcommands import (  # noqa: E402
    SHARED_MOUNT,
    InterfaceError,
    check_cluster_sweep_command,
    is_shared,
    parse_launch,
)

from omnimer.config import load_train_config  # noqa: E402
from omnimer.sweep import request as sweep  # noqa: E402

CONFIG_DIRS = ("cluster", "sweeps/configs")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
# Where every node of the shipped clusters mounts the shared file system (EFS / an RWX PVC).
DOCKERFILE = REPO / "cluster" / "Dockerfile"
RUNTIME_ENV_FILE = REPO / "cluster" / "runtime_env.yaml"
RAYCLUSTER_FILE = REPO / "cluster" / "kuberay" / "raycluster.yaml"
LAUNCHER_FILE = REPO / "cluster" / "ray-cluster.yaml"
# Keys that omnimer.training.engine.deepspeed_config() sets from the run's config (batch sizes, clipping,
# precision, optimizer): a value in the JSON would be overwritten, so the JSON leaves them out or "auto".
DEEPSPEED_KEYS_FROM_TRAIN = (
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "train_batch_size",
    "gradient_clipping",
    "bf16",
    "zero_force_ds_cpu_optimizer",
)


def config_files() -> list[str]:
    """Repo-relative paths of every YAML/JSON file under CONFIG_DIRS."""
    found = {
        path.relative_to(REPO).as_posix()
        for folder in CONFIG_DIRS
        for path in (REPO / folder).rglob("*")
        if path.is_file() and path.suffix in CONFIG_SUFFIXES
    }
    return sorted(found)


def pinned_version(package: str) -> str:
    """The ``==`` pin of ``package`` in pyproject.toml (extras ignored)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for requirement in project["dependencies"]:
        name, _, version = requirement.partition("==")
        if name.split("[")[0] == package:
            return version
    raise AssertionError(f"pyproject.toml pins no {package}")


def load_yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def launch_command(path: Path) -> str:
    """The command a YAML file opens with: its first comment paragraph, continuation lines joined."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#") or line.strip() == "#":
            break
        lines.append(line[1:].strip().removesuffix("\\").strip())
    return " ".join(lines)


def test_launch_command_parser_refuses_what_the_interface_does_not_allow():
    good = "python sweeps/aux_ablation.py --mode ablation --config sweeps/configs/smoke.yaml --name n"
    assert parse_launch(good + " --storage-path runs/x --seeds 0,1")[1].seeds == [0, 1]
    no_storage, bad_mode = good, good.replace("--mode ablation", "--mode grid") + " --storage-path d"
    no_config = good.replace("--config sweeps/configs/smoke.yaml", "--smoke-test") + " --storage-path d"
    for bad in (no_storage, bad_mode, no_config, "omnimer train train.epochs=1"):
        with pytest.raises(InterfaceError):
            parse_launch(bad)
    with pytest.raises(sweep.SweepError, match="is empty"):
        parse_launch(good + " --storage-path d --seeds ,")
    with pytest.raises(sweep.SweepError, match="unknown: gaze"):
        parse_launch(good + " --storage-path d --subsets none,gaze")
    with pytest.raises(ValueError, match="did you mean 'train.epochs'"):
        parse_launch(good + " --storage-path d train.epoch=2")
    with pytest.raises(AssertionError, match="not under /mnt/shared"):
        check_cluster_sweep_command(good + " --storage-path runs/x")
    assert check_cluster_sweep_command(good + " --storage-path s3://bucket/experiments").name == "n"


# ------------------------------------------------------------------------------ sweep configs


def cluster_gpu_nodes() -> list[tuple[str, float, int, int]]:
    """(source, CPUs, GPUs, max count) of every GPU node type of the shipped cluster definitions."""
    nodes = []
    if LAUNCHER_FILE.is_file():
        launcher = yaml.safe_load(LAUNCHER_FILE.read_text(encoding="utf-8"))
        for name, node in launcher["available_node_types"].items():
            resources = node["resources"]
            if resources.get("GPU", 0) > 0:
                count = node.get("max_workers", launcher["max_workers"])
                nodes.append((f"ray-cluster.yaml {name}", resources["CPU"], resources["GPU"], count))
    if RAYCLUSTER_FILE.is_file():
        for doc in load_yaml_documents(RAYCLUSTER_FILE):
            if doc.get("kind") == "RayCluster":
                for group in doc["spec"]["workerGroupSpecs"]:
                    limits = pod_limits(group["template"])
                    if gpu_count(limits) > 0:
                        source, cpus = f"raycluster.yaml {group['groupName']}", cpu_count(limits["cpu"])
                        nodes.append((source, cpus, gpu_count(limits), group["maxReplicas"]))
    return nodes


def check_sweep_config(path: Path) -> None:
    rel = path.relative_to(REPO).as_posix()
    cfg = load_train_config(str(path))
    command = launch_command(path)
    assert command, f"{rel} must open with a comment giving the command that launches it"
    kind, args = parse_launch(command)
    assert args.config == rel, f"{rel}'s launch command runs --config {args.config}, not this file"
    ds_path = Path(cfg.train.deepspeed_config)
    assert (ds_path if ds_path.is_absolute() else REPO / ds_path).is_file(), (
        f"{rel}: train.deepspeed_config {cfg.train.deepspeed_config} does not exist"
    )
    if "ray job submit" in command:
        check_cluster_sweep_command(command)
        assert is_shared(cfg.data.path), f"{rel}: data.path {cfg.data.path} is not on shared storage"
    if cfg.train.use_gpu:
        nodes = cluster_gpu_nodes()
        assert nodes, "a GPU config needs a cluster definition with GPU nodes under cluster/"
        for source, cpus, gpus, count in nodes:
            assert cfg.train.num_workers <= gpus * count, (
                f"{rel}: train.num_workers={cfg.train.num_workers} GPUs per trial, but {source} has "
                f"{gpus * count} GPUs: the trial would never be scheduled"
            )
            per_node = min(gpus, cfg.train.num_workers)
            assert per_node * cfg.train.cpus_per_worker <= cpus, (
                f"{rel}: {per_node} workers x train.cpus_per_worker={cfg.train.cpus_per_worker} CPUs do "
                f"not fit the {cpus} CPUs of {source}: its GPUs would sit idle"
            )


# ------------------------------------------------------------------------------ DeepSpeed


def check_deepspeed_config(path: Path) -> None:
    from deepspeed.runtime.config import DeepSpeedConfig

    from omnimer.training.engine import deepspeed_config

    rel = path.relative_to(REPO).as_posix()
    raw = json.loads(path.read_text(encoding="utf-8"))
    stage = raw.get("zero_optimization", {}).get("stage")
    assert stage in (2, 3), f"{rel}: zero_optimization.stage must be 2 or 3, got {stage!r}"
    for key in DEEPSPEED_KEYS_FROM_TRAIN:
        assert raw.get(key, "auto") == "auto", (
            f"{rel}: {key} is set by omnimer.training.engine.deepspeed_config from the run's config; "
            'leave it out or "auto"'
        )
    assert "fp16" not in raw, f"{rel}: fp16 is dropped by omnimer.training.engine (bf16 on GPU, fp32 on CPU)"
    if stage == 3:
        assert raw["zero_optimization"].get("stage3_gather_16bit_weights_on_model_save") is True, (
            f"{rel}: ZeRO-3 partitions the weights; saving the adapter needs them gathered"
        )
    for use_gpu in ("false", "true"):
        cfg = load_train_config(None, [f"train.deepspeed_config={rel}", f"train.use_gpu={use_gpu}"])
        # world_size 1: DeepSpeedConfig outside a process group checks the batch arithmetic for one rank.
        completed = deepspeed_config(cfg, world_size=1)
        assert all(completed.get(key, "auto") != "auto" for key in DEEPSPEED_KEYS_FROM_TRAIN), (
            f"omnimer.training.engine.deepspeed_config no longer sets all of {DEEPSPEED_KEYS_FROM_TRAIN}: "
            "update DEEPSPEED_KEYS_FROM_TRAIN"
        )
        # DeepSpeed's own validation: unknown zero_optimization keys, types, batch sizes.
        assert DeepSpeedConfig(completed).zero_optimization_stage == stage


# ------------------------------------------------------------------------------ Ray cluster launcher


def check_cluster_launcher(path: Path) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    rel = path.relative_to(REPO).as_posix()
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    # What `ray up` does before launching anything: fill the provider's defaults, then validate
    # against ray/autoscaler/ray-schema.json plus the cross-field rules.
    validate_config(prepare_config(copy.deepcopy(raw)))
    node_types = raw["available_node_types"]
    head = node_types[raw["head_node_type"]]
    assert head["resources"].get("GPU") == 0, f"{rel}: the head node must say GPU: 0 (no GPUs)"
    workers = [name for name in node_types if name != raw["head_node_type"]]
    assert workers and all(node_types[name]["resources"].get("GPU", 0) >= 1 for name in workers), (
        f"{rel}: every worker node type must have GPUs (resources GPU >= 1)"
    )
    docker = raw.get("docker", {})
    image = docker.get("image", "")
    if image.startswith("rayproject/ray:"):
        assert image.split(":")[1].startswith(pinned_version("ray") + "-"), (
            f"{rel}: {image} is not Ray {pinned_version('ray')}, the version pinned for the client"
        )
    run_options = " ".join(docker.get("run_options", []))
    for command in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command + run_options, f"{rel}: `{command}` without token auth"
    assert any(target.endswith(".ray/auth_token") for target in raw["file_mounts"]), (
        f"{rel}: token auth needs the same ~/.ray/auth_token on every node (file_mounts)"
    )
    if docker:
        assert f"{SHARED_MOUNT}:{SHARED_MOUNT}" in run_options, f"{rel}: {SHARED_MOUNT} is not mounted"
    for source in raw["file_mounts"].values():
        if not source.startswith("~"):
            assert (REPO / source).exists(), f"{rel}: file_mounts source {source} does not exist"


# ------------------------------------------------------------------------------ runtime_env


def dockerfile_workdir() -> str:
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", DOCKERFILE.read_text(encoding="utf-8"), flags=re.M)
    assert workdirs, f"{DOCKERFILE} sets no WORKDIR"
    return workdirs[-1]


def check_runtime_env(env: dict, where: str, local_working_dir: Path) -> None:
    """A runtime_env as Ray validates it, with ``working_dir`` read as ``local_working_dir`` here."""
    from ray.runtime_env import RuntimeEnv

    assert isinstance(env, dict), f"{where}: a runtime_env is a mapping, got {env!r}"
    unknown = sorted(set(env) - RuntimeEnv.known_fields)
    assert not unknown, f"{where}: keys unknown to Ray's runtime_env: {unknown}"
    assert not {"pip", "conda", "uv"} & set(env), (
        f"{where}: the pinned stack comes from the cluster's image/setup; a pip/conda/uv runtime_env "
        "would build a new environment per job and resolve torch and DeepSpeed again"
    )
    assert "working_dir" in env, f"{where}: no working_dir (the code travels with the job)"
    excludes = set(env.get("excludes", []))
    assert {".venv", ".git"} <= excludes, f"{where}: excludes must keep .venv and .git out"
    # Ray checks that a local working_dir exists, so validate against the directory it stands for.
    RuntimeEnv(**{**env, "working_dir": str(local_working_dir)})


def check_runtime_env_file(path: Path) -> None:
    rel = path.relative_to(REPO).as_posix()
    env = yaml.safe_load(path.read_text(encoding="utf-8"))
    check_runtime_env(env, rel, REPO / env.get("working_dir", "."))
    command = launch_command(path)
    assert "ray job submit" in command and f"--runtime-env {rel}" in command, (
        f"{rel} must open with the `ray job submit --runtime-env {rel} ...` command that uses it"
    )
    check_cluster_sweep_command(command)


# ------------------------------------------------------------------------------ KubeRay


def pod_containers(template: dict) -> list[dict]:
    return template["spec"]["containers"]


def pod_limits(template: dict) -> dict:
    """The first (Ray) container's resource limits."""
    return pod_containers(template)[0].get("resources", {}).get("limits", {})


def gpu_count(resources: dict) -> int:
    return int(resources.get("nvidia.com/gpu", 0))


def cpu_count(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def shared_claims() -> set[str]:
    """Names of the PersistentVolumeClaims defined under cluster/kuberay/."""
    return {
        doc["metadata"]["name"]
        for path in (REPO / "cluster" / "kuberay").glob("*.y*ml")
        for doc in load_yaml_documents(path)
        if doc.get("kind") == "PersistentVolumeClaim"
    }


def check_pod_mounts_shared_storage(template: dict, where: str) -> None:
    claims = {
        volume["name"]: volume["persistentVolumeClaim"]["claimName"]
        for volume in template["spec"].get("volumes", [])
        if "persistentVolumeClaim" in volume
    }
    mounts = {m["mountPath"]: m["name"] for m in pod_containers(template)[0].get("volumeMounts", [])}
    volume = mounts.get(SHARED_MOUNT)
    assert volume in claims, f"{where}: the Ray container does not mount a PVC at {SHARED_MOUNT}"
    assert claims[volume] in shared_claims(), (
        f"{where}: PVC {claims[volume]!r} is not defined under cluster/kuberay/ ({sorted(shared_claims())})"
    )


def check_start_params(params: dict, where: str) -> None:
    assert isinstance(params, dict), f"{where}: rayStartParams must be a mapping (may be empty)"
    bad = {k: v for k, v in params.items() if not isinstance(v, str)}
    assert not bad, f"{where}: rayStartParams values must be strings (map[string]string): {bad}"


def check_raycluster_spec(spec: dict, where: str) -> None:
    ray_version = pinned_version("ray")
    assert spec.get("rayVersion") == ray_version, f"{where}: rayVersion must be the pinned {ray_version}"
    assert spec.get("authOptions", {}).get("mode") == "token", (
        f"{where}: Ray {ray_version} expects token auth; set authOptions.mode: token"
    )
    head = spec["headGroupSpec"]
    check_start_params(head.get("rayStartParams"), f"{where} headGroupSpec")
    for container in pod_containers(head["template"]):
        resources = container.get("resources", {})
        assert not gpu_count(resources.get("limits", {})) and not gpu_count(resources.get("requests", {})), (
            f"{where}: the head pod must not take GPUs"
        )
    check_pod_mounts_shared_storage(head["template"], f"{where} head")
    images = {c["image"] for c in pod_containers(head["template"])[:1]}
    groups = spec.get("workerGroupSpecs", [])
    assert groups, f"{where}: no workerGroupSpecs"
    for group in groups:
        name = f"{where} worker group {group.get('groupName')!r}"
        assert group.get("groupName"), f"{where}: a worker group without groupName"
        check_start_params(group.get("rayStartParams"), name)
        assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"], (
            f"{name}: needs minReplicas <= replicas <= maxReplicas"
        )
        ray_container = pod_containers(group["template"])[0]
        requests = ray_container.get("resources", {}).get("requests", {})
        if "nvidia.com/gpu" in requests:
            assert gpu_count(requests) == gpu_count(pod_limits(group["template"])), (
                f"{name}: Kubernetes needs nvidia.com/gpu requests == limits"
            )
        check_pod_mounts_shared_storage(group["template"], name)
        images.add(ray_container["image"])
    assert any(gpu_count(pod_limits(g["template"])) >= 1 for g in groups), (
        f"{where}: no worker group has nvidia.com/gpu limits"
    )
    assert len(images) == 1, f"{where}: head and workers must run one image (same Ray and Python): {images}"


def only_document(path: Path, kind: str) -> dict:
    rel = path.relative_to(REPO).as_posix()
    docs = load_yaml_documents(path)
    assert [d.get("kind") for d in docs] == [kind], f"{rel}: expected one {kind} document"
    return docs[0]


def check_raycluster_file(path: Path) -> None:
    rel = path.relative_to(REPO).as_posix()
    doc = only_document(path, "RayCluster")
    assert doc["apiVersion"] == "ray.io/v1", f"{rel}: apiVersion must be ray.io/v1"
    check_raycluster_spec(doc["spec"], rel)


def check_rayjob_file(path: Path) -> None:
    rel = path.relative_to(REPO).as_posix()
    doc = only_document(path, "RayJob")
    assert doc["apiVersion"] == "ray.io/v1", f"{rel}: apiVersion must be ray.io/v1"
    spec = doc["spec"]
    check_cluster_sweep_command(spec["entrypoint"])
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert env["working_dir"] == dockerfile_workdir(), (
        f"{rel}: runtimeEnvYAML working_dir must be the image's copy of the repo ({dockerfile_workdir()})"
    )
    check_runtime_env(env, f"{rel} runtimeEnvYAML", REPO)
    if RUNTIME_ENV_FILE.is_file():
        shared = yaml.safe_load(RUNTIME_ENV_FILE.read_text(encoding="utf-8"))
        for key in ("env_vars", "excludes"):
            assert env.get(key) == shared.get(key), (
                f"{rel}: runtimeEnvYAML {key} differs from runtime_env.yaml"
            )
    assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec), (
        f"{rel}: give exactly one of rayClusterSpec (a cluster per job) and clusterSelector"
    )
    if "rayClusterSpec" in spec:
        assert spec.get("shutdownAfterJobFinishes") is True, f"{rel}: the job's own cluster must shut down"
        check_raycluster_spec(spec["rayClusterSpec"], f"{rel} rayClusterSpec")
        if RAYCLUSTER_FILE.is_file():
            assert spec["rayClusterSpec"] == only_document(RAYCLUSTER_FILE, "RayCluster")["spec"], (
                f"{rel}: rayClusterSpec differs from raycluster.yaml's spec (keep one cluster shape)"
            )


def check_pvc_file(path: Path) -> None:
    rel = path.relative_to(REPO).as_posix()
    doc = only_document(path, "PersistentVolumeClaim")
    assert doc["apiVersion"] == "v1" and doc["metadata"]["name"], f"{rel}: apiVersion v1, a name"
    assert "ReadWriteMany" in doc["spec"]["accessModes"], (
        f"{rel}: every Ray pod writes trial dirs and checkpoints there at once: ReadWriteMany"
    )
    assert doc["spec"]["resources"]["requests"]["storage"], f"{rel}: no storage request"


# ------------------------------------------------------------------------------ dispatch

# A regex over the repo-relative path (full match) → its checker. A new kind of file needs an entry.
CHECKERS = {
    r"sweeps/configs/[^/]+\.ya?ml": check_sweep_config,
    r"cluster/deepspeed/[^/]+\.json": check_deepspeed_config,
    r"cluster/ray-cluster\.yaml": check_cluster_launcher,
    r"cluster/runtime_env\.yaml": check_runtime_env_file,
    r"cluster/kuberay/raycluster\.yaml": check_raycluster_file,
    r"cluster/kuberay/rayjob\.yaml": check_rayjob_file,
    r"cluster/kuberay/shared-pvc\.yaml": check_pvc_file,
}


def checker_for(rel: str):
    matches = [check for pattern, check in CHECKERS.items() if re.fullmatch(pattern, rel)]
    assert len(matches) == 1, f"{rel}: no checker in tests/test_configs.py CHECKERS claims it; add one"
    return matches[0]


def test_the_globs_find_the_shipped_configs():
    files = config_files()
    for folder in CONFIG_DIRS:
        assert any(f.startswith(folder + "/") for f in files), f"no YAML/JSON found under {folder}/"
    for pattern in CHECKERS:
        assert any(re.fullmatch(pattern, f) for f in files), f"CHECKERS entry {pattern!r} matches no file"


@pytest.mark.parametrize("rel", config_files())
def test_config_file(rel):
    path = REPO / rel
    if path.suffix in (".yaml", ".yml"):
        # STYLE: every YAML opens with the command that uses it, and that command names the file.
        assert rel in shlex.split(launch_command(path)), f"{rel} must open with a command naming {rel}"
    checker_for(rel)(path)


def test_dockerfile_builds_on_the_pinned_ray():
    base = re.search(r"^FROM\s+rayproject/ray:(\S+)", DOCKERFILE.read_text(encoding="utf-8"), flags=re.M)
    assert base and base.group(1).startswith(pinned_version("ray") + "-"), (
        f"{DOCKERFILE}: the base image must be rayproject/ray:{pinned_version('ray')}-..."
    )

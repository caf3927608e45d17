"""The Helm chart without a helm binary: values.schema.json against values.yaml (and against
bad values), the templates' structure, the values they read, and the alerts' runbook entries."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "petpro-booking"
TEMPLATES = [*sorted((CHART / "templates").glob("*.yaml")), CHART / "templates" / "_helpers.tpl"]
REQUIRED_ALERTS = {
    "PetProHighErrorRate",
    "PetProHighLatencyP95",
    "PetProDbPoolSaturated",
    "PetProOutboxBacklogOld",
    "PetProExpiryJobLagging",
    "PetProHealthCheckFailing",
    "PetProConsistencyViolation",
    "PetProConsistencyCheckNotRunning",
}


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def errors(schema: dict, values: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(values)]


def test_values_yaml_satisfies_the_schema(schema, values):
    jsonschema.Draft7Validator.check_schema(schema)
    assert errors(schema, values) == []


def test_defaults_are_the_agreed_sizes(values):
    web, worker = values["web"], values["worker"]
    assert web["replicas"] == 3
    assert web["autoscaling"] == {
        "enabled": True,
        "minReplicas": 3,
        "maxReplicas": 5,
        "targetCPUUtilizationPercentage": 70,
        "targetMemoryUtilizationPercentage": 80,
    }
    assert web["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert worker["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert worker["autoscaling"]["enabled"]
    assert web["readinessProbe"]["path"] == "/readyz"
    assert web["livenessProbe"]["path"] == "/healthz"
    for component in (web, worker):
        assert component["autoscaling"]["minReplicas"] <= component["autoscaling"]["maxReplicas"]


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (["image", "pullPolicy"], "Sometimes"),
        (["web", "autoscaling", "minReplicas"], 0),
        (["web", "autoscaling", "targetCPUUtilizationPercentage"], 170),
        (["web", "resources", "requests", "cpu"], "lots"),
        (["ingress", "canary", "weight"], 101),
        (["config", "lower_case_name"], "x"),
        (["secrets", "values", "DATABASE_URL"], 5432),
        (["metrics", "serviceMonitor", "interval"], "often"),
        (["web", "replicaz"], 3),
        (["beat", "replicas"], 2),  # exactly one beat: not configurable
    ],
)
def test_the_schema_rejects_bad_values(schema, values, path, bad):
    broken = copy.deepcopy(values)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    assert errors(schema, broken), f"{path} = {bad!r} was accepted"


def test_template_actions_are_balanced():
    opener = re.compile(r"{{-?\s*(if|range|with|define)\b")
    closer = re.compile(r"{{-?\s*end\s*-?}}")
    for template in TEMPLATES:
        text = template.read_text()
        without_raw = re.sub(r"{{`.*?`}}", "", text)
        assert without_raw.count("{{") == without_raw.count("}}"), template.name
        assert len(opener.findall(without_raw)) == len(closer.findall(without_raw)), template.name


def test_templates_read_only_values_that_exist(values):
    missing = set()
    for template in TEMPLATES:
        for path in re.findall(r"\.Values((?:\.[A-Za-z][A-Za-z0-9_]*)+)", template.read_text()):
            node = values
            for key in path.strip(".").split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.add(f"{template.name}: .Values{path}")
                    break
                node = node[key]
    assert not missing, sorted(missing)


def test_the_chart_has_every_workload_and_object():
    names = {t.name for t in TEMPLATES}
    assert names >= {
        "deployment-web.yaml",
        "deployment-worker.yaml",
        "deployment-beat.yaml",
        "deployment-relay.yaml",
        "job-migrate.yaml",
        "hpa.yaml",
        "pdb.yaml",
        "service.yaml",
        "ingress.yaml",
        "configmap.yaml",
        "secret.yaml",
        "servicemonitor.yaml",
        "prometheusrule.yaml",
        "networkpolicy.yaml",
    }
    beat = (CHART / "templates" / "deployment-beat.yaml").read_text()
    assert "replicas: 1\n" in beat
    assert "type: Recreate" in beat
    relay = (CHART / "templates" / "deployment-relay.yaml").read_text()
    assert 'args: ["manage.py", "outbox", "listen"]' in relay
    assert "{{- if .Values.relay.enabled }}" in relay
    job = (CHART / "templates" / "job-migrate.yaml").read_text()
    assert "helm.sh/hook: pre-install,pre-upgrade" in job
    assert 'args: ["manage.py", "migrate", "--noinput"]' in job
    warm = (CHART / "templates" / "job-warm-cache.yaml").read_text()
    assert "helm.sh/hook: post-install,post-upgrade" in warm
    assert 'args: ["manage.py", "warm_search_cache", "--all"]' in warm
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert "topologyKey: kubernetes.io/hostname" in helpers
    assert "topologyKey: topology.kubernetes.io/zone" in helpers
    assert "preferredDuringSchedulingIgnoredDuringExecution" in helpers
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "petpro-booking"


def test_every_alert_has_a_runbook_entry():
    rules = (CHART / "templates" / "prometheusrule.yaml").read_text()
    alerts = set(re.findall(r"- alert: (\w+)", rules))
    assert alerts >= REQUIRED_ALERTS
    runbook = (ROOT / "docs" / "operations.md").read_text()
    headings = set(re.findall(r"^### (PetPro\w+)$", runbook, re.M))
    assert alerts <= headings
    for alert in alerts:
        assert f"runbook: docs/operations.md#{alert.lower()}" in rules


def test_the_relay_process_and_the_nudge_setting_go_together(values):
    """The relay deployment is on by default and the config map then has the processes wake it
    by NOTIFY; turned off, they send the Celery task (a NOTIFY nobody hears would leave every
    event to beat's 5 s sweep)."""
    assert values["relay"]["enabled"] is True
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'EVENT_RELAY_NUDGE: {{ ternary "notify" "celery" .Values.relay.enabled | quote }}' in (
        helpers
    )
    policy = (CHART / "templates" / "networkpolicy.yaml").read_text()
    assert '"relay"' in policy
    service = (CHART / "templates" / "service.yaml").read_text()
    assert "-relay-metrics" in service


def test_the_ingress_routes_every_prefix_browsers_load():
    """The API, the admin (and its daily tool) and their static files (STATIC_URL: the admin's
    CSS and JavaScript, Swagger UI): without the last, the admin loads unstyled behind the
    Ingress and /api/docs/ stays blank."""
    from django.conf import settings

    ingress = (CHART / "templates" / "ingress.yaml").read_text()
    paths = set(re.findall(r"- path: (\S+)", ingress))
    assert paths == {"/api", "/admin", "/" + settings.STATIC_URL.strip("/")}


def test_the_pool_alert_fires_on_waiting_requests_too():
    """The runbook's PetProDbPoolSaturated: connections in use above the share, or requests
    waiting for one."""
    rules = (CHART / "templates" / "prometheusrule.yaml").read_text()
    pool_rule = rules.split("- alert: PetProDbPoolSaturated", 1)[1].split("- alert:", 1)[0]
    assert 'state="in_use"' in pool_rule
    assert re.search(r"petpro_db_pool_requests_waiting\{.*\}\) > 0", pool_rule)
    runbook = (ROOT / "docs" / "operations.md").read_text()
    assert "petpro_db_pool_requests_waiting" in runbook.split("### PetProDbPoolSaturated")[1]


# What production.py requires that is configuration, not a secret (the chart's config map and
# values set these).
REQUIRED_CONFIG = {"DJANGO_ALLOWED_HOSTS", "JWT_ISSUER", "JWT_AUDIENCE", "PAYMENT_SERVICE_URL"}


def test_the_install_steps_and_values_name_every_secret_production_requires():
    """An operator creates the Secret from these lists; one left out fails the migration Job
    with ImproperlyConfigured (the personal-data keys were once missing from both)."""
    production = (ROOT / "petpro_booking" / "settings" / "production.py").read_text()
    required = set(re.findall(r'required\("([A-Z_]+)"\)', production))
    for names in re.findall(r"for _required in \(([^)]*)\)", production):
        required |= set(re.findall(r'"([A-Z_]+)"', names))
    secrets = required - REQUIRED_CONFIG
    assert {"DJANGO_SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "REDIS_URL"} <= secrets
    operations = (ROOT / "docs" / "operations.md").read_text()
    step = operations.split("1. Create the Secret", 1)[1].split("\n2. ", 1)[0]
    values_comment = (CHART / "values.yaml").read_text().split("# Secret env vars", 1)[1]
    values_comment = values_comment.split("secrets:", 1)[0]
    for name in sorted(secrets):
        assert f"`{name}`" in step, f"docs/operations.md's install step 1 leaves out {name}"
        assert name in values_comment, f"values.yaml's secrets comment leaves out {name}"


def test_the_chart_has_no_placeholder_token_issuer(values):
    """A default issuer would start fine and answer every real caller 401; the chart stops at
    render time until it is set."""
    assert values["config"]["JWT_ISSUER"] == ""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    config = helpers.split('define "petpro.configData"', 1)[1]
    assert re.search(r"required \"[^\"]*JWT_ISSUER[^\"]*\" \.Values\.config\.JWT_ISSUER", config)

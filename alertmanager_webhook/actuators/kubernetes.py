"""Kubernetes in-place pod resize and deployment scale through the API server.

Needs the API server's URL and a bearer token with rights to patch
pods/resize (or pods) and deployments/scale; the HTTP session is injected.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests

from aiops_common.causes import host_port, short_cause
from alertmanager_webhook.actuators.base import ActuatorError, Outcome, Params, Plan
from alertmanager_webhook.config import KubernetesConfig
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.templates import K8S_NAME, LabelError, safe_value

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class KubernetesClient:
    """GET and PATCH against one API server; errors become ActuatorError."""

    def __init__(
        self,
        config: KubernetesConfig,
        token: str,
        session: requests.Session | None = None,
    ) -> None:
        self._config = config
        self._session = session or requests.Session()
        # Proxy settings from the environment would see the bearer token.
        self._session.trust_env = False
        self._headers = {"Authorization": f"Bearer {token}"}
        self._verify: str | bool = config.ca_file or True

    def get(self, path: str) -> dict[str, Any]:
        return self._call("GET", path, None, None)

    def patch(self, path: str, body: Mapping[str, Any], kind: str) -> dict[str, Any]:
        return self._call("PATCH", path, json.dumps(body), kind)

    def _call(
        self, method: str, path: str, body: str | None, kind: str | None
    ) -> dict[str, Any]:
        headers = dict(self._headers, Accept="application/json")
        if kind:
            headers["Content-Type"] = kind
        try:
            response = self._session.request(
                method,
                self._config.api_url.rstrip("/") + path,
                data=body,
                headers=headers,
                timeout=self._config.timeout_seconds,
                verify=self._verify,
            )
        except requests.RequestException as exc:
            raise ActuatorError(
                f"API server {host_port(self._config.api_url)} unreachable: "
                f"{short_cause(exc)}"
            ) from exc

        if response.status_code >= 400:
            raise ActuatorError(
                f"API server refused {method} {path}: {response.status_code} "
                f"{_status_message(response)}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise ActuatorError(f"API server sent no JSON for {path}") from exc


def _status_message(response: requests.Response) -> str:
    # Errors come as a Status object; its message is what a person needs.
    try:
        return repr(str(response.json().get("message", ""))[:200])
    except (ValueError, AttributeError):
        return repr(response.reason)


def _names(labels: Mapping[str, str], *keys: str) -> list[str]:
    return [safe_value(labels, key, K8S_NAME) for key in keys]


def millicores(cores: float) -> str:
    return f"{max(1, round(cores * 1000))}m"


class PodResize:
    """The `k8s_resize` action: new CPU and memory for one container, in place."""

    idempotent = True

    def __init__(self, client: KubernetesClient, use_subresource: bool = True):
        self._client = client
        self._subresource = use_subresource

    def plan(
        self, labels: Mapping[str, str], policy: PolicyConfig, params: Params
    ) -> Plan:
        try:
            namespace, pod, container = _names(labels, "namespace", "pod", "container")
        except LabelError as exc:
            return Plan("", f"refused: {exc}", "refused")

        wanted = {}
        if "cpu_cores" in params:
            wanted["cpu"] = millicores(float(params["cpu_cores"]))
        if "memory_bytes" in params:
            wanted["memory"] = str(int(float(params["memory_bytes"])))
        target = f"pod {namespace}/{pod} container {container}"
        sizes = ", ".join(f"{k} {v}" for k, v in wanted.items())
        return Plan(
            target,
            f"resize {target} in place to limits {sizes}",
            spec={
                "namespace": namespace,
                "pod": pod,
                "container": container,
                "limits": wanted,
            },
        )

    def apply(self, spec: Mapping[str, Any]) -> Outcome:
        pod_path = _pod_path(spec["namespace"], spec["pod"])
        pod = self._client.get(pod_path)
        current = _container_resources(pod, spec["container"])

        limits = dict(spec["limits"])
        # A request above its limit is invalid, so a lowered limit lowers it too.
        lowered = {
            k: v
            for k, v in limits.items()
            if k in current.get("requests", {})
            and _quantity(current["requests"][k]) > _quantity(v)
        }
        resources = {"limits": limits}
        if lowered:
            resources["requests"] = lowered
        self._patch(spec, resources)

        undo = dict(spec, resources=_previous(current, resources))
        return Outcome(f"resized {spec['pod']}/{spec['container']}", undo)

    def restore(self, undo: Mapping[str, Any]) -> str:
        self._patch(undo, undo["resources"])
        return f"set resources of {undo['pod']}/{undo['container']} back"

    def _patch(self, spec: Mapping[str, Any], resources: Mapping[str, Any]) -> None:
        path = _pod_path(spec["namespace"], spec["pod"])
        if self._subresource:
            path += "/resize"
        body = {
            "spec": {
                "containers": [{"name": spec["container"], "resources": resources}]
            }
        }
        self._client.patch(path, body, STRATEGIC)


class DeploymentScale:
    """The `k8s_scale` action: set a deployment's replicas through its scale."""

    idempotent = True

    def __init__(self, client: KubernetesClient):
        self._client = client

    def plan(
        self, labels: Mapping[str, str], policy: PolicyConfig, params: Params
    ) -> Plan:
        try:
            namespace, name = _names(labels, "namespace", "deployment")
        except LabelError as exc:
            return Plan("", f"refused: {exc}", "refused")
        replicas = int(float(params["replicas"]))
        target = f"deployment {namespace}/{name}"
        return Plan(
            target,
            f"scale {target} to {replicas} replicas",
            spec={"namespace": namespace, "name": name, "replicas": replicas},
        )

    def apply(self, spec: Mapping[str, Any]) -> Outcome:
        path = _scale_path(spec["namespace"], spec["name"])
        before = self._client.get(path).get("spec", {}).get("replicas")
        self._client.patch(path, {"spec": {"replicas": spec["replicas"]}}, MERGE)
        undo = None if before is None else dict(spec, replicas=before)
        return Outcome(f"scaled from {before} to {spec['replicas']} replicas", undo)

    def restore(self, undo: Mapping[str, Any]) -> str:
        path = _scale_path(undo["namespace"], undo["name"])
        self._client.patch(path, {"spec": {"replicas": undo["replicas"]}}, MERGE)
        return f"scaled {undo['name']} back to {undo['replicas']} replicas"


def _pod_path(namespace: str, pod: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}"


def _scale_path(namespace: str, name: str) -> str:
    return (
        f"/apis/apps/v1/namespaces/{quote(namespace)}/deployments/{quote(name)}/scale"
    )


def _container_resources(pod: Mapping[str, Any], container: str) -> dict[str, Any]:
    for spec in pod.get("spec", {}).get("containers", []):
        if spec.get("name") == container:
            return spec.get("resources", {})
    raise ActuatorError(f"pod has no container {container!r}")


def _previous(
    current: Mapping[str, Any], changed: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str | None]]:
    # None becomes JSON null, which deletes a key the change added.
    return {
        kind: {key: current.get(kind, {}).get(key) for key in values}
        for kind, values in changed.items()
    }


_SUFFIX = {
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _quantity(text: str) -> float:
    """Read a Kubernetes quantity ("500m", "2", "1Gi") as a number."""
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIX[suffix]
    try:
        return float(text)
    except ValueError as exc:
        raise ActuatorError(f"cannot read quantity {text!r}") from exc

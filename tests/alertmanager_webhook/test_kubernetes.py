"""Pod resize and deployment scale against a fake API server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from alertmanager_webhook.actuators.base import ActuatorError
from alertmanager_webhook.actuators.kubernetes import (
    DeploymentScale,
    KubernetesClient,
    PodResize,
)
from alertmanager_webhook.config import KubernetesConfig
from alertmanager_webhook.policy_config import PolicyConfig

from .conftest import free_port

K8S_TOKEN = "sa-token-123"
POD = "/api/v1/namespaces/ml/pods/trainer-0"
SCALE = "/apis/apps/v1/namespaces/ml/deployments/web/scale"


class FakeApiServer:
    """Answers the few calls the actuators make and records each of them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str, Any]] = []
        self.refuse: int | None = None
        self.pod = {
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "resources": {
                            "requests": {"cpu": "2", "memory": "1Gi"},
                            "limits": {"memory": "2Gi"},
                        },
                    }
                ]
            }
        }
        self.scale = {"kind": "Scale", "spec": {"replicas": 4}}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.handle(self, None)

            def do_PATCH(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                fake.handle(self, json.loads(self.rfile.read(length)))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def handle(self, request: BaseHTTPRequestHandler, body: Any) -> None:
        self.calls.append(
            (
                request.command,
                request.path,
                request.headers.get("Authorization", ""),
                request.headers.get("Content-Type", ""),
                body,
            )
        )
        if request.headers.get("Authorization") != f"Bearer {K8S_TOKEN}":
            return self.answer(request, 401, {"message": "Unauthorized"})
        if self.refuse:
            message = 'pods "trainer-0" is forbidden: cannot patch resource'
            return self.answer(request, self.refuse, {"message": message})
        if request.path.startswith(POD):
            return self.answer(request, 200, self.pod)
        if request.path == SCALE:
            return self.answer(request, 200, self.scale)
        return self.answer(request, 404, {"message": "not found"})

    def answer(self, request: BaseHTTPRequestHandler, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        request.send_response(code)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    fake = FakeApiServer()
    # A short poll interval: shutdown() waits for the loop to notice.
    thread = threading.Thread(
        target=fake.server.serve_forever, args=(0.01,), daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(timeout=10)


def _client(api: FakeApiServer, token: str = K8S_TOKEN) -> KubernetesClient:
    config = KubernetesConfig(api_url=api.url, ca_file="", timeout_seconds=5)
    return KubernetesClient(config, token)


def _policy(action: str, **params: float) -> PolicyConfig:
    return PolicyConfig(name="k", match={"a": "b"}, action=action, params=params)


POD_LABELS = {"namespace": "ml", "pod": "trainer-0", "container": "main"}


def test_resize_patches_the_resize_subresource_and_restores(
    api: FakeApiServer,
) -> None:
    resize = PodResize(_client(api))
    policy = _policy("k8s_resize", cpu_cores=0.5, memory_bytes=float(2**30))

    plan = resize.plan(POD_LABELS, policy, policy.params)
    outcome = resize.apply(plan.spec)
    resize.restore(outcome.undo)

    assert plan.text == (
        "resize pod ml/trainer-0 container main in place to limits cpu 500m, "
        "memory 1073741824"
    )
    get, patch, undo = api.calls
    assert get[:3] == ("GET", POD, f"Bearer {K8S_TOKEN}")
    assert patch[:2] == ("PATCH", f"{POD}/resize")
    assert patch[3] == "application/strategic-merge-patch+json"
    # The request of 2 CPUs would sit above the new limit, so it comes down too;
    # the memory request already fits.
    assert patch[4] == {
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "1073741824"},
                        "requests": {"cpu": "500m"},
                    },
                }
            ]
        }
    }
    # Back as it was: no CPU limit (null deletes it), the old sizes otherwise.
    assert undo[4]["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": None, "memory": "2Gi"},
        "requests": {"cpu": "2"},
    }


def test_resize_before_kubernetes_133_patches_the_pod(api: FakeApiServer) -> None:
    resize = PodResize(_client(api), use_subresource=False)
    policy = _policy("k8s_resize", cpu_cores=4.0)

    resize.apply(resize.plan(POD_LABELS, policy, policy.params).spec)

    assert [c[:2] for c in api.calls] == [("GET", POD), ("PATCH", POD)]
    assert "requests" not in api.calls[1][4]["spec"]["containers"][0]["resources"]


def test_scale_and_restore(api: FakeApiServer) -> None:
    scale = DeploymentScale(_client(api))
    policy = _policy("k8s_scale", replicas=1.0)
    labels = {"namespace": "ml", "deployment": "web"}

    plan = scale.plan(labels, policy, policy.params)
    outcome = scale.apply(plan.spec)
    restored = scale.restore(outcome.undo)

    assert plan.text == "scale deployment ml/web to 1 replicas"
    assert outcome.text == "scaled from 4 to 1 replicas"
    assert restored == "scaled web back to 4 replicas"
    assert [(c[0], c[1], c[3], c[4]) for c in api.calls] == [
        ("GET", SCALE, "", None),
        ("PATCH", SCALE, "application/merge-patch+json", {"spec": {"replicas": 1}}),
        ("PATCH", SCALE, "application/merge-patch+json", {"spec": {"replicas": 4}}),
    ]


def test_refusal_is_an_error_with_the_api_servers_words(api: FakeApiServer) -> None:
    api.refuse = 403
    scale = DeploymentScale(_client(api))
    policy = _policy("k8s_scale", replicas=1.0)
    plan = scale.plan({"namespace": "ml", "deployment": "web"}, policy, policy.params)

    with pytest.raises(ActuatorError) as caught:
        scale.apply(plan.spec)

    assert str(caught.value) == (
        f"API server refused GET {SCALE}: 403 "
        "'pods \"trainer-0\" is forbidden: cannot patch resource'"
    )


def test_wrong_token_is_refused(api: FakeApiServer) -> None:
    scale = DeploymentScale(_client(api, token="stolen"))
    policy = _policy("k8s_scale", replicas=1.0)
    plan = scale.plan({"namespace": "ml", "deployment": "web"}, policy, policy.params)

    with pytest.raises(ActuatorError, match="401 'Unauthorized'"):
        scale.apply(plan.spec)


def test_unreachable_server_fails(api: FakeApiServer) -> None:
    scale = DeploymentScale(_client(api))
    policy = _policy("k8s_scale", replicas=1.0)
    plan = scale.plan({"namespace": "ml", "deployment": "web"}, policy, policy.params)
    api.server.shutdown()
    api.server.server_close()

    with pytest.raises(ActuatorError) as caught:
        scale.apply(plan.spec)

    # The cause, not urllib3's whole text with the URL in it.
    where = api.url.removeprefix("http://")
    assert str(caught.value) == f"API server {where} unreachable: connection refused"


@pytest.mark.parametrize(
    "labels",
    [
        {"namespace": "ml", "pod": "../../nodes", "container": "main"},
        {"namespace": "ML", "pod": "p", "container": "main"},
        {"namespace": "ml", "pod": "p"},
        {"namespace": "ml", "pod": "p?watch=1", "container": "main"},
    ],
)
def test_resize_refuses_names_that_are_not_kubernetes_names(
    api: FakeApiServer, labels
) -> None:
    policy = _policy("k8s_resize", cpu_cores=1.0)

    plan = PodResize(_client(api)).plan(labels, policy, policy.params)

    assert plan.result == "refused"
    assert api.calls == []


def test_token_is_never_in_a_plan_or_error(api: FakeApiServer) -> None:
    api.refuse = 500
    scale = DeploymentScale(_client(api))
    policy = _policy("k8s_scale", replicas=2.0)
    plan = scale.plan({"namespace": "ml", "deployment": "web"}, policy, policy.params)

    with pytest.raises(ActuatorError) as caught:
        scale.apply(plan.spec)

    assert K8S_TOKEN not in str(caught.value) + plan.text + json.dumps(plan.spec)

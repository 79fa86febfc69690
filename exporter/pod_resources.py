"""Which pod and container each GPU is allocated to, from the kubelet's
PodResources API on its unix socket. Needs grpcio and read access to the
socket; on a host without a kubelet the socket is absent and nothing is read.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import grpc

from exporter.nvml_session import GpuIdentity
from exporter.once import Once
from exporter.protobuf_wire import WireError, embedded, fields, text

log = logging.getLogger(__name__)

LIST_METHOD = "/v1.PodResourcesLister/List"

# Field numbers of the v1 API, from the kubelet's api.proto
# (kubernetes/kubernetes, staging/src/k8s.io/kubelet/pkg/apis/podresources/v1):
# ListPodResourcesResponse.pod_resources = 1; PodResources name = 1,
# namespace = 2, containers = 3; ContainerResources name = 1, devices = 2;
# ContainerDevices resource_name = 1, device_ids = 2. Others are skipped.
_POD_RESOURCES = 1
_POD_NAME, _POD_NAMESPACE, _POD_CONTAINERS = 1, 2, 3
_CONTAINER_NAME, _CONTAINER_DEVICES = 1, 2
_DEVICE_RESOURCE, _DEVICE_IDS = 1, 2

# Whole GPUs, GPUs shared by time-slicing once the NVIDIA device plugin renames
# them, and MIG devices under its "mixed" strategy (nvidia.com/mig-1g.10gb).
_GPU_RESOURCES = ("nvidia.com/gpu", "nvidia.com/gpu.shared")
_MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
# The device plugin names time-slicing replicas "<GPU id>::<replica>".
_REPLICA_SEPARATOR = "::"
# A node with many pods can answer with more than gRPC's default 4 MiB.
_MAX_RESPONSE_BYTES = 16 << 20


class PodResourcesError(Exception):
    """The kubelet could not be asked, or answered with something unreadable."""


@dataclass(frozen=True)
class DeviceAllocation:
    """One device id of one container, as the kubelet lists it."""

    namespace: str
    pod: str
    container: str
    resource: str
    device_id: str


@dataclass(frozen=True, order=True)
class GpuPod:
    """A GPU or MIG device and the container it is allocated to.

    gpu and uuid are empty where NVML does not know the device; mig_uuid is
    empty for a whole GPU.
    """

    gpu: str
    uuid: str
    mig_uuid: str
    namespace: str
    pod: str
    container: str


@dataclass(frozen=True)
class GpuPodSample:
    """`available` is False when the host has no PodResources socket."""

    available: bool
    gpus: tuple[GpuPod, ...] = ()


def decode_list_response(data: bytes) -> list[DeviceAllocation]:
    """Every device allocation in a ListPodResourcesResponse."""
    try:
        return list(_allocations(data))
    except WireError as exc:
        raise PodResourcesError(f"unreadable List response: {exc}") from exc


def _allocations(data: bytes) -> Iterator[DeviceAllocation]:
    for number, value in fields(data):
        if number != _POD_RESOURCES:
            continue
        name = namespace = ""
        containers = []
        for field, pod_value in fields(embedded(value, "pod_resources")):
            if field == _POD_NAME:
                name = text(pod_value, "pod name")
            elif field == _POD_NAMESPACE:
                namespace = text(pod_value, "pod namespace")
            elif field == _POD_CONTAINERS:
                containers.append(embedded(pod_value, "containers"))
        for container in containers:
            for resource, device_id, container_name in _devices(container):
                yield DeviceAllocation(
                    namespace, name, container_name, resource, device_id
                )


def _devices(container: bytes) -> Iterator[tuple[str, str, str]]:
    name = ""
    devices = []
    for field, value in fields(container):
        if field == _CONTAINER_NAME:
            name = text(value, "container name")
        elif field == _CONTAINER_DEVICES:
            devices.append(embedded(value, "devices"))
    for device in devices:
        resource, ids = "", []
        for field, value in fields(device):
            if field == _DEVICE_RESOURCE:
                resource = text(value, "resource_name")
            elif field == _DEVICE_IDS:
                ids.append(text(value, "device_ids"))
        for device_id in ids:
            yield resource, device_id, name


class PodResourcesClient:
    """Calls List on the kubelet's socket; one connection per call."""

    def __init__(self, socket_path: str, timeout_seconds: float) -> None:
        self.socket_path = socket_path
        self._timeout = timeout_seconds

    def list(self) -> list[DeviceAllocation]:
        # A fresh channel each time: the kubelet replaces its socket when it
        # restarts, and one call per collection costs little.
        options = [("grpc.max_receive_message_length", _MAX_RESPONSE_BYTES)]
        with grpc.insecure_channel(f"unix:{self.socket_path}", options) as channel:
            # ListPodResourcesRequest has no fields, so it is encoded as no
            # bytes; the answer comes back as bytes and is decoded here, so a
            # malformed one is reported as such rather than as a gRPC error.
            call = channel.unary_unary(
                LIST_METHOD, request_serializer=None, response_deserializer=None
            )
            try:
                data = call(b"", timeout=self._timeout)
            except grpc.RpcError as exc:
                raise PodResourcesError(
                    f"List on {self.socket_path!r} failed: {_describe(exc)}"
                ) from exc
        return decode_list_response(data)


class GpuPodReader:
    """Maps the kubelet's GPU allocations onto the GPUs NVML named.

    `identities` gives the GPU reader's last view of the GPUs by index. Both
    sources start together, so the first collection may come before the GPUs
    are named: gpu is then empty for one interval.
    """

    def __init__(
        self,
        client: PodResourcesClient,
        identities: Callable[[], Mapping[int, GpuIdentity]],
    ) -> None:
        self._client = client
        self._identities = identities
        self._once = Once(log)

    def read(self) -> GpuPodSample:
        path = self._client.socket_path
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            self._once.log(
                logging.INFO,
                "absent",
                "no kubelet PodResources socket, GPUs carry no pod names path=%s",
                path,
            )
            return GpuPodSample(available=False)
        except OSError as exc:
            # There, but out of reach (a directory the exporter may not enter):
            # an error to fix, unlike a host without a kubelet.
            raise PodResourcesError(f"cannot reach {path!r}: {exc.strerror}") from exc
        if not stat.S_ISSOCK(mode):
            raise PodResourcesError(f"{path!r} is not a socket; is it the kubelet's?")
        if self._once.forget("absent"):
            log.info("kubelet PodResources socket found path=%s", path)

        allocations = self._client.list()
        resolve = _Resolver(self._identities())
        gpus = {
            resolve(a)
            for a in allocations
            if a.resource in _GPU_RESOURCES
            or a.resource.startswith(_MIG_RESOURCE_PREFIX)
        }
        return GpuPodSample(available=True, gpus=tuple(sorted(gpus)))


class _Resolver:
    """Names the GPU behind a device id: GPU UUID, MIG UUID or GPU index."""

    def __init__(self, identities: Mapping[int, GpuIdentity]) -> None:
        self._by_index = identities
        self._by_uuid = {i.uuid: i for i in identities.values()}
        self._parent = {mig: i for i in identities.values() for mig in i.mig_uuids}

    def __call__(self, allocation: DeviceAllocation) -> GpuPod:
        device = allocation.device_id.split(_REPLICA_SEPARATOR)[0]
        gpu, uuid, mig = "", device, ""
        if device in self._by_uuid:
            gpu = str(self._by_uuid[device].index)
        elif device in self._parent:
            parent = self._parent[device]
            gpu, uuid, mig = str(parent.index), parent.uuid, device
        elif device.startswith("MIG-"):
            uuid, mig = "", device
        elif device.isdigit():
            # The device plugin's "index" id strategy names GPUs by number.
            known = self._by_index.get(int(device))
            gpu, uuid = device, known.uuid if known else ""
        return GpuPod(
            gpu,
            uuid,
            mig,
            allocation.namespace,
            allocation.pod,
            allocation.container,
        )


def _describe(exc: grpc.RpcError) -> str:
    # The errors grpc raises are also grpc.Call objects with a code and details.
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{code().name} {details()}"
    return repr(exc)

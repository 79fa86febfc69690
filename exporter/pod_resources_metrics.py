"""The GPU-to-pod metrics, built from a GpuPodSample: whether the kubelet's
PodResources socket is there, and one info series per allocated GPU device.

To name the pod behind a GPU series, join on the GPU's labels, e.g.

    aiops_gpu_utilization_ratio
      * on (instance, gpu, uuid) group_left (namespace, pod, container)
        aiops_gpu_pod_info{mig_uuid=""}

which holds while each whole GPU is allocated to one container. GPUs shared by
time-slicing or split by MIG have several containers per GPU; for those, join
on mig_uuid with aiops_gpu_mig_instance_info instead.
"""

from __future__ import annotations

from prometheus_client.core import Metric

from exporter.metrics import Spec, non_empty
from exporter.pod_resources import GpuPodSample

# TODO: GPU-process series carry the pod uid from cgroups, but PodResources
# v1 lists pods by name only, so processes on a GPU shared by several pods
# cannot be named by pod. The fix is a uid-to-name map from the kubelet's pod
# list or the CRI, which needs credentials this exporter does not hold yet.
POD_RESOURCES_AVAILABLE = Spec(
    "aiops_kubelet_pod_resources_available",
    "1 when the kubelet's PodResources socket exists and GPU pods are read, 0 "
    "when the host has none (not a Kubernetes node, or the socket not mounted).",
)
GPU_POD_INFO = Spec(
    "aiops_gpu_pod_info",
    "A GPU or MIG device allocated to a container, as the kubelet lists it; "
    "always 1. gpu and uuid are empty for a device NVML does not show, mig_uuid "
    "for a whole GPU.",
    ("gpu", "uuid", "mig_uuid", "namespace", "pod", "container"),
)


def gpu_pod_families(sample: GpuPodSample) -> list[Metric]:
    """Availability, then one info series per allocated device."""
    info = GPU_POD_INFO.gauge()
    for gpu in sample.gpus:
        info.add_metric(
            [gpu.gpu, gpu.uuid, gpu.mig_uuid, gpu.namespace, gpu.pod, gpu.container],
            1,
        )
    available = POD_RESOURCES_AVAILABLE.single(1 if sample.available else 0)
    return [available, *non_empty([info])]

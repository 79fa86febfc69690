"""A stand-in kubelet: a real gRPC server with the PodResourcesLister service on
a unix socket, and a protocol buffers encoder to build its answers from the
field numbers of the kubelet's api.proto."""

from __future__ import annotations

import threading
from concurrent import futures

import grpc

WAIT = 10.0


# The encoder mirrors exporter/protobuf_wire.py.
def varint(number):
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def length_delimited(number, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def message(number, *parts):
    return length_delimited(number, b"".join(parts))


def devices(resource, *ids):
    # ContainerDevices: resource_name = 1, device_ids = 2.
    parts = [length_delimited(2, i) for i in ids]
    return message(2, length_delimited(1, resource), *parts)


def container(name, *parts):
    # ContainerResources: name = 1, devices = 2.
    return message(3, length_delimited(1, name), *parts)


def pod(name, namespace, *containers):
    # PodResources: name = 1, namespace = 2, containers = 3; the response's
    # pod_resources = 1.
    return message(
        1, length_delimited(1, name), length_delimited(2, namespace), *containers
    )


class Kubelet:
    """A gRPC server with the PodResourcesLister service on a unix socket."""

    def __init__(self, path):
        self.path = str(path)
        self.reply = b""
        self.requests = []
        self.block: threading.Event | None = None
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler(
            "v1.PodResourcesLister",
            {"List": grpc.unary_unary_rpc_method_handler(self._list)},
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(f"unix:{self.path}")
        self.server.start()

    def _list(self, request, context):
        self.requests.append(request)
        if self.block is not None:
            self.block.wait(WAIT)
        return self.reply

    def stop(self):
        if self.block is not None:
            self.block.set()
        self.server.stop(None).wait(WAIT)

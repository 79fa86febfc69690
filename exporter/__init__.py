"""The node exporter of prom-aiops: host, process-group and GPU metrics.

Reads /proc through psutil and GPUs through NVML; serves the last snapshot.
"""

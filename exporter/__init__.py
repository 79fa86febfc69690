"""The node exporter of prom-aiops: host, process-group, GPU, GPU-process and Xid
metrics. Reads /proc directly and GPUs through NVML; serves the last snapshot.
"""

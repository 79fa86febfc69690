"""The actuators: what each action does to a host, a cluster or a GPU."""

"""The `aiops` operator command: the demo, and the tools built on the services."""

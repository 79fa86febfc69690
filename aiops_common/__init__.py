"""Config loading and logging set-up shared by the three services and the CLI."""

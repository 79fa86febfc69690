"""Lets `python -m alertmanager_webhook` run the receiver."""

from alertmanager_webhook.main import main

raise SystemExit(main())

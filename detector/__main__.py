"""Lets `python -m detector` run the service."""

from detector.main import main

raise SystemExit(main())

"""Lets `python -m exporter` start the exporter."""

from exporter.main import main

if __name__ == "__main__":
    main()

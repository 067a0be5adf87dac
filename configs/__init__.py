"""The shipped recipes, installed as the package data `pgkeras/configs/*.yaml` (see pyproject.toml)."""

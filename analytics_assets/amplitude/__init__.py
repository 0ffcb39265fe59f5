"""Amplitude: the plain-Python client (``client``, ``export``, ``ingest``, ``tidy``,
``costs``, ``metering``) and its Dagster side (``resource``, ``assets``, ``component``).
Import the submodule you need: the client must stay importable without Dagster."""

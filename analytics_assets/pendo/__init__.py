"""Pendo: the plain-Python client (``client``, ``pipeline``) and its Dagster side
(``resource``, ``assets``, ``component``). Import the submodule you need: the client must
stay importable without Dagster."""

"""This project's own instances of the components, one folder per system (``defs.yaml``).

Every setting a deployment changes is an environment variable read here, in the YAML
(``{{ env.NAME }}``), and nowhere else: see the README's Configuration table.
"""

"""Shipped data of the write-back: the default mapping, the sample CRM export and the
script that regenerates it (``make_sample.py``, a developer's tool that reads the
sandbox's synthetic company; the product imports only the path below, never the script).
"""

from pathlib import Path

SAMPLE_CRM_PATH = Path(__file__).resolve().parent / "sample_crm_accounts.csv"

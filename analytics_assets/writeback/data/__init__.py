"""Shipped data of the write-back: the default mapping, the sample CRM export and the
script that regenerates it (``make_sample.py``)."""

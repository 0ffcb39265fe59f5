"""CRM -> Pendo write-back: push CRM-derived account metadata into Pendo's custom fields.

``crm`` reads the export, ``mapping`` declares and converts the fields, ``validate``
checks them against Pendo's schema and sets bad rows aside, ``diff`` keeps what changed,
``push`` sends it in batches of at most 1,000 and logs each outcome (``overlap`` lets the
diff run while earlier batches are sent), ``job`` wires them
into the ``crm_account_metadata_push`` job and its daily schedule, and ``component``
(``CrmToPendo``) declares both, with the write key's resource, in YAML.
"""

from analytics_assets.crm_writeback.component import CrmToPendo
from analytics_assets.crm_writeback.data import SAMPLE_CRM_PATH
from analytics_assets.crm_writeback.job import (
    DEFAULT_SCHEDULE_CRON,
    JOB_NAME,
    WRITE_KEY_ENV,
    CrmPushConfig,
    build_crm_push_job,
    build_schedule,
    crm_account_metadata_push,
    crm_account_metadata_push_schedule,
    crm_writeback_preflight,
    push_crm_changes,
    read_crm_export,
    validate_crm_rows,
)
from analytics_assets.crm_writeback.mapping import DEFAULT_MAPPING_PATH
from analytics_assets.crm_writeback.report import run_report

__all__ = [
    "DEFAULT_MAPPING_PATH",
    "DEFAULT_SCHEDULE_CRON",
    "JOB_NAME",
    "SAMPLE_CRM_PATH",
    "WRITE_KEY_ENV",
    "CrmPushConfig",
    "CrmToPendo",
    "build_crm_push_job",
    "build_schedule",
    "crm_account_metadata_push",
    "crm_account_metadata_push_schedule",
    "crm_writeback_preflight",
    "push_crm_changes",
    "read_crm_export",
    "run_report",
    "validate_crm_rows",
]

"""The sandbox's accounts as CRM facts: what the shipped sample export is made from.

The product's sample generator knows no sandbox: it reads accounts from any Pendo and
draws what only a CRM knows. Tests need more: the sandbox's own ARR, size and health
(which its Pendo API does not expose), so that the values a run writes can be checked
against the world itself. This module adapts the sandbox's ``Company`` to the
generator's ``Account`` and regenerates the shipped file:

    python tests/writeback/crm_world.py
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

if __name__ == "__main__":  # run as a script: the repository root holds the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from analytics_assets.crm_writeback.data.make_sample import (
    OUT,
    Account,
    crm_row,
    sample_rows,
    write_csv,
)
from analytics_assets.sandbox.company import HISTORY_START, PLANS, Company

# The sandbox world the shipped sample matches.
SAMPLE_SEED, SAMPLE_SCALE = 42, 1


def company_account(company: Company, index: int) -> Account:
    return Account(
        id=company.account_id(index),
        name=company.account_name(index),
        plan=PLANS[int(company.account_plan[index])],
        arr=float(company.account_arr[index]),
        users=int(company.account_size[index]),
        start=HISTORY_START + timedelta(days=int(company.account_created[index])),
        health=float(company.account_propensity[index]),
    )


def company_accounts(company: Company) -> Iterator[Account]:
    for index in range(company.n_accounts):
        yield company_account(company, index)


def company_row(company: Company, index: int) -> dict[str, str]:
    """The CRM row of one of the company's accounts, as in the sample export."""
    return crm_row(company_account(company, index), index)


def company_sample_rows(company: Company) -> list[dict[str, str]]:
    return sample_rows(list(company_accounts(company)))


def main() -> int:
    company = Company(seed=SAMPLE_SEED, scale=SAMPLE_SCALE, region="us")
    path = write_csv(OUT, company_sample_rows(company))
    print(f"wrote {path} ({company.n_accounts} accounts and 4 extra rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Write the sample CRM export that matches the sandbox's US accounts (seed 42, scale 1).

    python -m analytics_assets.crm_writeback.data.make_sample [--seed 42] [--scale 1] [--out PATH]

Values derive from the sandbox's synthetic company (plan, ARR, size) so a demo push
against the sandbox writes plausible metadata. A few rows are bad on purpose, one of each
kind the validation sets aside, and one account is not in Pendo. The benchmark uses
``crm_rows`` to build large exports without the bad rows.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from analytics_assets.crm_writeback.data import SAMPLE_CRM_PATH
from analytics_assets.sandbox.company import HISTORY_START, PLANS, Company

OUT = SAMPLE_CRM_PATH
COLUMNS = (
    "Account ID",
    "Account Name",
    "Plan",
    "ARR (USD)",
    "Seats",
    "Paying",
    "Renewal Date",
    "CSM Owner",
    "Health Score",
)
OWNERS = ("Dana Whitfield", "Luis Ortega", "Mei Tanaka", "Sam Okoye", "Priya Raman")


def crm_row(company: Company, index: int) -> dict[str, str]:
    """One account as a CRM would export it: display formats, not API types."""
    plan = PLANS[int(company.account_plan[index])]
    arr = float(company.account_arr[index])
    created = HISTORY_START + timedelta(days=int(company.account_created[index]))
    renewal = date(2026 + (index % 2), created.month, min(created.day, 28))
    # Spreadsheet habits: US dates on some rows, ISO on others; padded owner names.
    shown_date = renewal.strftime("%m/%d/%Y") if index % 3 == 0 else renewal.isoformat()
    owner = OWNERS[index % len(OWNERS)]
    return {
        "Account ID": company.account_id(index),
        "Account Name": company.account_name(index),
        "Plan": plan.capitalize(),
        "ARR (USD)": f"${arr:,.2f}",
        "Seats": str(max(5, math.ceil(int(company.account_size[index]) * 1.2 / 5) * 5)),
        "Paying": "No" if plan == "free" else "Yes",
        "Renewal Date": shown_date,
        "CSM Owner": f" {owner} " if index % 4 == 0 else owner,
        "Health Score": f"{float(company.account_propensity[index]) * 100:.1f}",
    }


def crm_rows(company: Company) -> Iterator[dict[str, str]]:
    for index in range(company.n_accounts):
        yield crm_row(company, index)


def sample_rows(company: Company) -> list[dict[str, str]]:
    """Every account once, then the deliberate problems (see the module docstring)."""
    rows = list(crm_rows(company))
    rows[7]["Renewal Date"] = "someday"  # unparsable date
    rows[13]["ARR (USD)"] = "n/a"  # non-numeric ARR
    rows[21]["Paying"] = "maybe"  # not a boolean
    missing_id = crm_row(company, 30) | {"Account ID": "", "Account Name": "Unmatched Co"}
    conflicting = rows[42] | {"Plan": "Enterprise" if rows[42]["Plan"] != "Enterprise" else "Pro"}
    identical = dict(rows[50])  # an exact duplicate: collapsed to one, not set aside
    unknown = crm_row(company, 3) | {"Account ID": "account-900001", "Account Name": "New Co"}
    return [*rows, missing_id, conflicting, identical, unknown]


def write_csv(path: Path, rows: list[dict[str, str]] | Iterator[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    company = Company(seed=args.seed, scale=args.scale, region="us")
    path = write_csv(args.out, sample_rows(company))
    print(f"wrote {path} ({company.n_accounts} accounts and 4 extra rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

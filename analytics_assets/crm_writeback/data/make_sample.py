"""Write a sample CRM export for the accounts of a Pendo subscription.

    python -m analytics_assets.crm_writeback.data.make_sample --base-url URL --key-file PATH
        [--region us] [--seed 42] [--timezone America/New_York] [--clean] [--out PATH]

Any Pendo will do: a real subscription or the local sandbox (``--key-file -`` reads the
key from stdin, so it never shows in the process list). Each account's id, name, plan
and first visit (its start date) are read through the product's ``PendoClient``; what
only a CRM knows (ARR, users, health, owner) is drawn from ``--seed`` and the account id,
so the same subscription and seed always give the same file. A few rows are bad on
purpose, one of each kind the validation sets aside, and one account is not in Pendo
(``--clean`` leaves them out). The benchmark uses ``crm_rows`` for large exports.

The shipped ``sample_crm_accounts.csv`` is this format for the sandbox's default world
(seed 42, scale 1); ``tests/writeback/crm_world.py`` regenerates it from that world's
full facts (ARR and size included), and a test checks that the file is current.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from analytics_assets.crm_writeback.data import SAMPLE_CRM_PATH
from analytics_assets.partitions import DEFAULT_TIMEZONE
from analytics_assets.pendo.client import PendoClient
from analytics_assets.pendo.pipeline import Expr, Pipeline, Source

__all__ = [
    "COLUMNS",
    "OUT",
    "Account",
    "account_from_pendo",
    "accounts_pipeline",
    "crm_row",
    "crm_rows",
    "read_accounts",
    "sample_rows",
    "write_csv",
]

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
# Common SaaS tiers, cheapest first; a plan's position scales its ARR.
PLANS = ("free", "starter", "pro", "enterprise")
# Used when Pendo knows no first visit: a fixed day, so the output stays reproducible.
FALLBACK_START = date(2024, 1, 1)


@dataclass(frozen=True)
class Account:
    """The facts one CRM row is made of, wherever they come from."""

    id: str
    name: str
    plan: str  # lower case, e.g. "pro"
    arr: float  # USD per year
    users: int  # people using the product; seats are sold with some headroom
    start: date  # when the account began (its first visit, for Pendo)
    health: float  # 0 to 1


def crm_row(account: Account, index: int) -> dict[str, str]:
    """One account as a CRM would export it: display formats, not API types.

    ``index`` (the row's position) varies the formats as people's spreadsheets do.
    """
    renewal = date(2026 + (index % 2), account.start.month, min(account.start.day, 28))
    # Spreadsheet habits: US dates on some rows, ISO on others; padded owner names.
    shown_date = renewal.strftime("%m/%d/%Y") if index % 3 == 0 else renewal.isoformat()
    owner = OWNERS[index % len(OWNERS)]
    return {
        "Account ID": account.id,
        "Account Name": account.name,
        "Plan": account.plan.capitalize(),
        "ARR (USD)": f"${account.arr:,.2f}",
        "Seats": str(max(5, math.ceil(account.users * 1.2 / 5) * 5)),
        "Paying": "No" if account.plan == "free" else "Yes",
        "Renewal Date": shown_date,
        "CSM Owner": f" {owner} " if index % 4 == 0 else owner,
        "Health Score": f"{account.health * 100:.1f}",
    }


def crm_rows(accounts: Iterable[Account]) -> Iterator[dict[str, str]]:
    for index, account in enumerate(accounts):
        yield crm_row(account, index)


# Rows of the deliberate problems; a sample needs more accounts than the highest.
_PROBLEM_ROWS = (3, 7, 13, 21, 30, 42, 50)


def sample_rows(accounts: Sequence[Account]) -> list[dict[str, str]]:
    """Every account once, then the deliberate problems (see the module docstring)."""
    if len(accounts) <= max(_PROBLEM_ROWS):
        raise ValueError(
            f"a sample with its deliberate problems needs at least {max(_PROBLEM_ROWS) + 1} "
            f"accounts, got {len(accounts)}; write the clean rows instead (--clean)"
        )
    rows = list(crm_rows(accounts))
    missing_id = rows[30] | {"Account ID": "", "Account Name": "Unmatched Co"}
    conflicting = rows[42] | {"Plan": "Enterprise" if rows[42]["Plan"] != "Enterprise" else "Pro"}
    identical = dict(rows[50])  # an exact duplicate: collapsed to one, not set aside
    unknown = rows[3] | {"Account ID": "account-900001", "Account Name": "New Co"}
    rows[7]["Renewal Date"] = "someday"  # unparsable date
    rows[13]["ARR (USD)"] = "n/a"  # non-numeric ARR
    rows[21]["Paying"] = "maybe"  # not a boolean
    return [*rows, missing_id, conflicting, identical, unknown]


def write_csv(path: Path, rows: Iterable[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


# ----- accounts from Pendo --------------------------------------------------------------


def accounts_pipeline() -> Pipeline:
    """Each account's id, name, plan and first visit (all Pendo knows that a CRM has)."""
    return Pipeline(Source.accounts()).select(
        {
            "accountId": "accountId",
            "name": Expr.field("metadata.agent.name"),
            "plan": Expr.field("metadata.agent.plan"),
            "firstvisit": Expr.field("metadata.auto.firstvisit"),
        }
    )


def account_from_pendo(
    row: Mapping[str, Any], *, seed: int = 42, timezone: str = DEFAULT_TIMEZONE
) -> Account:
    """An account from a row of :func:`accounts_pipeline`, the CRM-only values drawn from
    ``seed`` and its id (string seeds are hashed the same way in every process)."""
    account_id = str(row["accountId"])
    rng = random.Random(f"{seed}:{account_id}")
    given = row.get("plan")
    plan = given.strip().lower() if isinstance(given, str) and given.strip() else None
    plan = plan or rng.choices(PLANS, weights=(3, 4, 2, 1))[0]
    tier = PLANS.index(plan) if plan in PLANS else 1
    first = row.get("firstvisit")
    if isinstance(first, int | float) and not isinstance(first, bool) and first > 0:
        start = datetime.fromtimestamp(first / 1000, tz=ZoneInfo(timezone)).date()
    else:
        start = FALLBACK_START + timedelta(days=rng.randrange(730))
    name = row.get("name")
    return Account(
        id=account_id,
        name=name if isinstance(name, str) and name.strip() else account_id,
        plan=plan,
        # Skewed, as ARR is: a few large customers, many small ones; richer plans pay more.
        arr=round(rng.lognormvariate(9.5, 1.0) * (1 + tier), -2),
        users=min(400, max(1, int(rng.lognormvariate(2.0, 0.9)))),
        start=start,
        health=rng.betavariate(4, 2),
    )


def read_accounts(
    client: PendoClient, *, seed: int = 42, timezone: str = DEFAULT_TIMEZONE
) -> list[Account]:
    """Every account of the subscription behind ``client``, ordered by id."""
    rows = [row for row in client.aggregate(accounts_pipeline()) if row.get("accountId")]
    rows.sort(key=lambda row: str(row["accountId"]))
    return [account_from_pendo(row, seed=seed, timezone=timezone) for row in rows]


def _read_key(path: str) -> str:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return text.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="Pendo API base URL (a proxy, or the sandbox's)")
    parser.add_argument("--region", default=None, help="us, us1, eu, jpn or au")
    parser.add_argument(
        "--key-file", required=True, help="file holding a Pendo integration key; - for stdin"
    )
    parser.add_argument("--seed", type=int, default=42, help="draws the CRM-only values")
    parser.add_argument("--timezone", default=DEFAULT_TIMEZONE, help="the subscription's")
    parser.add_argument("--clean", action="store_true", help="leave out the bad rows")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with PendoClient(
        _read_key(args.key_file), region=args.region, base_url=args.base_url
    ) as client:
        accounts = read_accounts(client, seed=args.seed, timezone=args.timezone)
    rows = list(crm_rows(accounts)) if args.clean else sample_rows(accounts)
    path = write_csv(args.out, rows)
    print(f"wrote {path} ({len(accounts)} accounts, {len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

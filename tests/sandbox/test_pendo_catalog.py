"""Pendo sandbox: catalog lists, single visitors and accounts, schema, saved reports."""

from __future__ import annotations

import base64
import csv
import io
from datetime import timedelta

import pytest

DEFAULT_APP = -323232
COMMON = {
    "id",
    "name",
    "kind",
    "appId",
    "color",
    "createdAt",
    "lastUpdatedAt",
    "createdByUser",
    "lastUpdatedByUser",
    "rootVersionId",
    "stableVersionId",
    "group",
    "dirty",
    "isCoreEvent",
    "validThrough",
    "dailyMergeFirst",
    "dailyRollupFirst",
}


@pytest.fixture
def company(us_company):
    return us_company


def test_lists_are_bare_arrays_of_the_default_app(pendo, company):
    for path, objs in (
        ("page", company.pages),
        ("feature", company.features),
        ("guide", company.guides),
        ("tracktype", company.track_types),
    ):
        got = pendo.get(f"/api/v1/{path}").json()
        assert isinstance(got, list)
        expected = [o.id for o in objs if o.app_id == DEFAULT_APP]
        assert [o["id"] for o in got] == expected
        for obj in got:
            assert obj.keys() >= COMMON
            assert obj["appId"] == DEFAULT_APP
            assert set(obj["createdByUser"]) >= {"id", "username", "first", "last", "role"}
            assert obj["lastUpdatedAt"] >= obj["createdAt"] > 0


def test_object_specific_fields(pendo, company):
    page = pendo.get("/api/v1/page").json()[0]
    assert page["kind"] == "Page" and page["isAutoTagged"] is False
    assert page["rules"][0]["rule"] == company.pages[0].url
    assert set(page["rules"][0]) == {"rule", "parsedRule", "designerHint"}
    feature = pendo.get("/api/v1/feature").json()[0]
    assert feature["pageId"] == company.features[0].page_id
    assert feature["elementPathRules"] == [company.features[0].selector]
    assert feature["appWide"] is False
    guides = {g["name"]: g for g in pendo.get("/api/v1/guide").json()}
    tour = guides["Welcome tour"]
    assert tour["isMultiStep"] is True and tour["state"] == "public"
    assert tour["attributes"]["type"] == "lightbox" and tour["appIds"] == [DEFAULT_APP]
    assert len(tour["steps"]) == 4
    step = tour["steps"][0]
    assert {
        "id",
        "guideId",
        "type",
        "pageId",
        "rank",
        "advanceMethod",
        "attributes",
        "lastUpdatedAt",
    } <= step.keys()
    assert step["guideId"] == tour["id"]
    nps = guides["NPS survey"]
    assert nps["polls"][0]["id"] and nps["isMultiStep"] is False


def test_app_filters(pendo, company):
    all_pages = pendo.get("/api/v1/page", params={"expand": "*"}).json()
    assert len(all_pages) == len(company.pages)
    ios = company.apps[1].id
    ios_pages = pendo.get("/api/v1/page", params={"appId": ios}).json()
    assert ios_pages and all(p["appId"] == ios for p in ios_pages)
    assert len(ios_pages) == sum(p.app_id == ios for p in company.pages)
    both = pendo.get("/api/v1/page", params={"appId": ios, "expand": "*"})
    assert both.status_code == 400
    assert both.headers["content-type"].startswith("text/plain")
    mobile_guides = pendo.get("/api/v1/guide", params={"appId": ios}).json()
    assert [g["name"] for g in mobile_guides] == ["Mobile onboarding"]


def test_id_filters_and_by_id_reads(pendo, company):
    a, b = company.guides[0].id, company.guides[5].id  # b is a mobile guide
    got = pendo.get("/api/v1/guide", params={"id": f"{a},{b}"}).json()
    assert [g["id"] for g in got] == [a, b]
    assert pendo.get("/api/v1/guide", params={"id": f"{a},nope"}).status_code == 404
    for kind, obj_id in (
        ("guide", b),
        ("page", company.pages[3].id),
        ("feature", company.features[7].id),
    ):
        one = pendo.get(f"/api/v1/{kind}/{obj_id}")
        assert one.status_code == 200 and one.json()["id"] == obj_id
        missing = pendo.get(f"/api/v1/{kind}/does-not-exist")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/plain")


def test_visitor_read(pendo, company):
    got = pendo.get("/api/v1/visitor/visitor-0000042").json()
    account = company.account_id(int(company.visitor_account[42]))
    assert got["id"] == "visitor-0000042"
    assert got["accountIds"] == [account]
    auto = got["metadata"]["auto"]
    assert auto["accountid"] == account and auto["id"] == "visitor-0000042"
    assert auto["firstvisit"] == company.visitor_first_visit_ms(42)
    assert auto["firstvisit"] <= auto["lastvisit"] <= auto["lastupdated"]
    agent = got["metadata"]["agent"]
    assert agent["email"] == company.visitor_email(42)
    assert agent["name"] == " ".join(company.visitor_name(42))
    assert set(got["metadata"]) >= {"auto", "agent", "custom", "auto__323232"}
    missing = pendo.get("/api/v1/visitor/visitor-9999999")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/plain")


def test_visitor_lastvisit_matches_the_activity(sandbox, pendo, company):
    now_ms = sandbox.config.now_ms()
    today = company.local_day(now_ms)
    days = [company.activity(today - timedelta(days=back)) for back in range(14)]
    active = int(days[1].visitor[0])  # someone who visited yesterday

    def last_visit(visitor: int) -> int:  # the latest visible hour of the visitor
        hours = [
            int(a.hour_ms[(a.visitor == visitor) & (a.hour_ms <= now_ms)].max(initial=-1))
            for a in days
        ]
        return max(hours)

    got = pendo.get(f"/api/v1/visitor/{company.visitor_id(active)}").json()
    assert got["metadata"]["auto"]["lastvisit"] == last_visit(active)
    # Someone quiet for two weeks still has a last visit, before the window.
    quiet = next(v for v in range(company.n_visitors) if last_visit(v) < 0)
    auto = pendo.get(f"/api/v1/visitor/{company.visitor_id(quiet)}").json()["metadata"]["auto"]
    assert auto["firstvisit"] <= auto["lastvisit"] < days[-1].start_ms


def test_account_read_and_base64_ids(pendo, company):
    got = pendo.get("/api/v1/account/account-000007").json()
    assert set(got) == {"id", "metadata"}
    assert got["metadata"]["agent"]["name"] == company.account_name(7)
    assert got["metadata"]["auto"]["firstvisit"] == company.account_first_visit_ms(7)
    encoded = base64.b64encode(b"account-000007").decode()
    via_b64 = pendo.get(
        f"/api/v1/account/{encoded}", headers={"x-pendo-base64-encoded-params": "true"}
    )
    assert via_b64.json() == got
    assert pendo.get("/api/v1/account/account-999999").status_code == 404
    assert pendo.get("/api/v1/account/account%2F1").status_code == 404  # url-decoded, unknown


@pytest.mark.parametrize("kind", ["visitor", "account"])
def test_schema_shape(pendo, kind):
    schema = pendo.get(f"/api/v1/metadata/schema/{kind}").json()
    assert {"auto", "agent", "custom"} <= schema.keys()
    keys = {
        "Type",
        "DisplayName",
        "ElementType",
        "ElementFormat",
        "Dirty",
        "isHidden",
        "isDeleted",
        "isCalculated",
        "isPerApp",
        "isPromoted",
        "neverIndex",
        "sample",
    }
    for fields in schema.values():
        for descriptor in fields.values():
            assert set(descriptor) == keys
            assert descriptor["Type"] in {"string", "boolean", "integer", "float", "time", ""}
    assert schema["auto"]["lastvisit"]["Type"] == "time"
    assert schema["auto"]["id"]["sample"].startswith(kind)
    if kind == "account":
        custom = {name: d["Type"] for name, d in schema["custom"].items()}
        assert custom == {
            "plan": "string",
            "arr": "float",
            "seats": "integer",
            "is_paying": "boolean",
            "renewal_date": "time",
            "csm_owner": "string",
            "health_score": "float",
        }
    else:
        assert {n: d["Type"] for n, d in schema["custom"].items()} == {
            "role_override": "string",
            "beta_opt_in": "boolean",
            "nps_score": "integer",
        }
    assert pendo.get("/api/v1/metadata/schema/segment").status_code == 404


def test_reports_list_and_results_agree(pendo, company):
    reports = pendo.get("/api/v1/report").json()
    assert [r["name"] for r in reports] == [r.name for r in company.reports]
    enterprise = reports[0]
    assert {
        "id",
        "name",
        "kind",
        "type",
        "level",
        "scope",
        "share",
        "definition",
        "aggregation",
        "lastRunAt",
    } <= enterprise.keys()
    fields = enterprise["aggregation"]["fields"]
    assert [f["field"] for f in fields] == [
        "accountId",
        "metadata.agent.plan",
        "metadata.agent.name",
    ]
    rows = pendo.get(f"/api/v1/report/{enterprise['id']}/results.json").json()
    expected = [
        company.account_id(a) for a in range(company.n_accounts) if company.account_plan[a] == 3
    ]
    assert [r["accountId"] for r in rows] == expected
    assert all(r["metadata.agent.plan"] == "enterprise" for r in rows)

    as_csv = pendo.get(f"/api/v1/report/{enterprise['id']}/results.csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.startswith("Account,Plan,Name\r\n")
    table = list(csv.reader(io.StringIO(as_csv.text)))
    assert table[0] == [f["title"] for f in fields]
    assert table[1:] == [[str(r[f["field"]]) for f in fields] for r in rows]

    admins = next(r for r in reports if r["name"] == "Administrators")
    admin_rows = pendo.get(f"/api/v1/report/{admins['id']}/results.json").json()
    assert len(admin_rows) == sum(int(r) == 0 for r in company.visitor_role)
    assert pendo.get("/api/v1/report/nope/results.json").status_code == 404
    assert pendo.get("/api/v1/report/nope/results.csv").status_code == 404

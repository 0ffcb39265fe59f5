"""What a process holds after loading the code location, and what the product needs.

Every Dagster step, sensor tick and code server starts by importing
``analytics_assets.definitions``. The sandbox must not come with it (nothing in the
product imports the sandbox), and neither should pandas, pyarrow or numpy: together
they cost each of those processes ~80 MB and half a second, and most steps (the raw
export's load among them) never use them; the code that does imports them itself.

The runtime install (``pip install analytics_assets``, no extras) has no web server and
no emulator: starlette and uvicorn come with ``[sandbox]``, dagster-webserver with
``[dev]``. So every product module must import without them.
"""

import json
import subprocess
import sys

PROBE = """
import json, sys
import analytics_assets.definitions as d
d.defs.get_repository_def()  # build every asset, check, sensor and job
print(json.dumps(sorted(sys.modules)))
"""

HEAVY = ("pandas", "pyarrow", "numpy")
SANDBOX_ONLY = ("analytics_assets.sandbox", "starlette", "uvicorn")

# Only in the extras: a deployment installed without them must still import the product.
EXTRAS_ONLY = ("starlette", "uvicorn", "dagster_webserver", "psycopg", "snowflake")
# Not the product: the emulator itself, and the demo that drives it (the CLI's
# `sandbox`, `demo` and `dev` commands import these when run, never at import).
NOT_PRODUCT = ("analytics_assets.sandbox", "analytics_assets.demo")

# Blocks the extras with a meta path finder placed first, as if they were not installed
# (the test environment has them, so a plain import would hide a stray dependency),
# then imports every product module and reports what failed, and what pulled in the
# sandbox (which would fail for the same reason in a runtime install).
BLOCKED_PROBE = """
import importlib, importlib.abc, json, pkgutil, sys, traceback

BLOCKED = {blocked!r}
NOT_PRODUCT = {not_product!r}


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Block())

import analytics_assets


def product(name):
    return not any(name == p or name.startswith(p + ".") for p in NOT_PRODUCT)


# A walk of our own rather than pkgutil.walk_packages, which imports every package it
# descends into: it would import the sandbox to list it.
names, failed = [], {{}}
todo = [("analytics_assets.", analytics_assets.__path__)]
while todo:
    prefix, path = todo.pop()
    for info in pkgutil.iter_modules(path, prefix):
        if not product(info.name):
            continue
        names.append(info.name)
        try:
            module = importlib.import_module(info.name)
        except Exception:
            failed[info.name] = traceback.format_exc(limit=-3)
            continue
        if info.ispkg:
            todo.append((info.name + ".", module.__path__))
sandbox = sorted(m for m in sys.modules if not product(m))
print(json.dumps({{"imported": names, "failed": failed, "sandbox": sandbox}}))
"""


def _loaded_modules() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_code_location_loads_without_the_sandbox_or_dataframe_libraries():
    modules = _loaded_modules()
    for name in (*SANDBOX_ONLY, *HEAVY):
        found = [m for m in modules if m == name or m.startswith(name + ".")]
        assert not found, f"loading the code location imported {found[:3]}"


def test_every_product_module_imports_without_the_extras():
    probe = BLOCKED_PROBE.format(blocked=EXTRAS_ONLY, not_product=NOT_PRODUCT)
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=180
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # The walk found the product (a broken walk would pass vacuously).
    assert "analytics_assets.definitions" in result["imported"]
    assert "analytics_assets.cli" in result["imported"]
    assert not result["failed"], "needs an extra (or failed to import):\n" + "\n".join(
        f"{name}:\n{tb}" for name, tb in result["failed"].items()
    )
    assert not result["sandbox"], f"the product imported the sandbox: {result['sandbox'][:5]}"


WARNINGS_PROBE = """
import json, warnings
before = list(warnings.filters)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    inner = list(warnings.filters)
    import analytics_assets.partitions  # first: imported inside a catch_warnings, a
    import analytics_assets.definitions as d  # process-wide filter would be undone
    d.defs.get_repository_def()
    changed = warnings.filters != inner
print(json.dumps({"caught": [f"{w.category.__name__}: {w.message}" for w in caught],
                  "filters_changed": changed or warnings.filters != before}))
"""


def test_loading_says_no_beta_warning_and_leaves_the_warning_filters_alone():
    # Dagster 1.13 warns per asset about backfill_policy (beta) and partitioned check
    # specs (preview); the product silences those per call. A project importing the
    # library keeps its own filters: nothing is silenced process-wide.
    out = subprocess.run(
        [sys.executable, "-c", WARNINGS_PROBE], capture_output=True, text=True, check=True,
        timeout=120,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    dagster_notes = [c for c in result["caught"] if "Beta" in c or "Preview" in c]
    assert not dagster_notes, dagster_notes[:3]
    assert not result["filters_changed"]

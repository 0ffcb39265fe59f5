"""What a process holds after loading the code location.

Every Dagster step, sensor tick and code server starts by importing
``analytics_assets.definitions``. The sandbox must not come with it (nothing in the
product imports the sandbox), and neither should pandas, pyarrow or numpy: together
they cost each of those processes ~80 MB and half a second, and most steps (the raw
export's load among them) never use them; the code that does imports them itself.
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

"""`asdo ui` with 500 task pods in the fake API server, in a real browser (chromium):
how long the tasks view takes to render the snapshot, and how long a phase change takes
to show in the page. Run by `ui::ui_bench_500_task_pods` (ignored by default):
  cargo test --release --test e2e ui::ui_bench_500_task_pods -- --ignored --nocapture
Prints one JSON line of figures."""

import json
import os
import tempfile
import time

os.environ.setdefault("SE_OFFLINE", "true")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

URL = os.environ["ASDO_UI_URL"]
NS = os.environ["ASDO_NS"]
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--window-size=1440,1000",
          f"--user-data-dir={tempfile.mkdtemp(prefix='asdo-ui-bench-')}"]:
    opts.add_argument(a)
drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
js = drv.execute_script


def until(f, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        v = f()
        if v:
            return v
        time.sleep(0.01)
    raise SystemExit(f"timed out: {f}")


try:
    drv.get(URL)
    until(lambda: js("return window.asdoStats.rendered") >= 501)
    render_ms = js("return window.asdoStats.snapshotRenderMs")
    key = f"{NS}/agent-t999"
    status = lambda: js(f"const r=document.querySelector(\"tr[data-key='{key}']\"); return r && r.dataset.status")
    until(lambda: status() == "Running")
    t0 = time.time()
    open(os.environ["ASDO_GATE"], "w").close()
    until(lambda: status() == "Succeeded")
    change_ms = (time.time() - t0) * 1000
    print(json.dumps({"rows": js("return window.asdoStats.rendered"),
                      "snapshot_render_ms": round(render_ms, 1),
                      "phase_change_ms": round(change_ms, 1)}), flush=True)
finally:
    drv.quit()

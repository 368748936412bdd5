"""Drives `asdo ui` in a real browser (Debian's chromium through chromedriver, selenium),
against the fake API server the Rust test (tests/e2e/ui.rs) started. Exit 0 = every check
passed; each failed check says what it saw.

Environment: ASDO_UI_URL (the first line asdo ui printed), ASDO_BIN, ASDO_KUBECONFIG,
ASDO_NS, ASDO_SPAWN_VALUES (values for a task spawned after the page loaded), ASDO_GATE
(a file that lets the running task T110 finish).
ASDO_UI_MODE=steer instead drives the follow-up box of ASDO_POD (a real agent whose
first turn waits on ASDO_GATE), see steer(); ASDO_UI_MODE=local a running local task's
page (`asdo --runtime local ui`: ASDO_POD, ASDO_TASK, ASDO_TASK_DIR), see local()."""

import http.client
import os
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlparse

URL = os.environ["ASDO_UI_URL"]
U = urlparse(URL)
HOST, PORT = U.hostname, U.port
BASE = f"http://{HOST}:{PORT}"
NS = os.environ.get("ASDO_NS", "local")
SHOTS = os.environ.get("ASDO_SCREENSHOTS")


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def raw(path, headers=None, method="GET"):
    c = http.client.HTTPConnection(HOST, PORT, timeout=30)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    return r.status, r.getheader("Set-Cookie"), body


def until(f, what, timeout=90):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = f()
            if last:
                return last
        except Exception as e:  # the page may be mid-render
            last = e
        time.sleep(0.1)
    check(False, f"{what} (last: {last!r})")


def asdo(*args):
    return subprocess.run(
        [os.environ["ASDO_BIN"], "--kubeconfig", os.environ["ASDO_KUBECONFIG"], *args],
        capture_output=True, text=True, timeout=60)


def guard_checks():
    """The guard, as any HTTP client sees it."""
    check(raw("/")[0] == 401, "no token: 401")
    check(raw("/api/events")[0] == 401, "no token on the API: 401")
    check(raw("/?token=wrong")[0] == 401, "a wrong token: 401")
    check(raw(f"/?{U.query}", {"Host": f"evil.example:{PORT}"})[0] == 403,
          "a foreign Host (DNS rebinding) is refused even with the token: 403")
    status, cookie, _ = raw(f"/?{U.query}")
    check(status == 303 and cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie,
          f"the token becomes an HttpOnly SameSite=Strict cookie: {status} {cookie}")
    jar = cookie.split(";")[0]
    check(raw("/", {"Cookie": jar})[0] == 200, "the cookie opens the page")
    check(raw(f"/api/tasks/{NS}/agent-t100", {"Cookie": jar}, "DELETE")[0] == 403,
          "a DELETE without Origin is refused")
    check(raw(f"/api/tasks/{NS}/agent-t100", {"Cookie": jar, "Origin": "http://evil.example"}, "DELETE")[0] == 403,
          "a cross-origin DELETE is refused")
    token = U.query.split("token=")[1]
    check(raw(f"/api/tasks/{NS}/agent-t100?{U.query}", {"Origin": BASE}, "DELETE")[0] == 401,
          "a DELETE with the token in the query only (no cookie) is refused")
    check(asdo("list", "-n", NS).stdout.count("agent-t100") == 1, "T100 still exists")


MODE = os.environ.get("ASDO_UI_MODE", "tour")
if MODE == "tour":
    guard_checks()

# ---- the browser ----
os.environ.setdefault("SE_OFFLINE", "true")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

profile = tempfile.mkdtemp(prefix="asdo-ui-chromium-")
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--window-size=1440,1000", f"--user-data-dir={profile}"]:
    opts.add_argument(a)
drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
drv.set_script_timeout(30)


def js(s, *a):
    return drv.execute_script(s, *a)


def shot(name):
    if SHOTS:
        time.sleep(0.5)
        drv.save_screenshot(os.path.join(SHOTS, name))


def tour():
    """The tasks view, a running task's log, delete."""
    row = lambda pod: f"tr[data-key='{NS}/{pod}']"
    status_of = lambda pod: js(f"const r=document.querySelector(\"{row(pod)}\"); return r && r.dataset.status")
    for pod, want in [("agent-t100", "Succeeded"), ("agent-t101", "Failed (OOMKilled)"),
                      ("agent-t102", "Pending (CreateContainerError)"), ("agent-t110", "Running")]:
        until(lambda: status_of(pod) == want, f"{pod} shows {want!r}")
    check("no such secret" in drv.find_element(By.CSS_SELECTOR, row("agent-t102")).text,
          "the waiting message is shown under the status")
    counts = drv.find_element(By.ID, "counts").text
    check("Running 1" in counts.replace("\n", " ") or "Running\n1" in counts, f"counts per state: {counts!r}")
    check(js("return document.querySelectorAll('#timeline rect').length") >= 4, "the timeline has a bar per task")
    # Filter by state, then by text.
    drv.find_element(By.CSS_SELECTOR, "#counts .chip[data-state='Failed']").click()
    visible = lambda: js("return [...document.querySelectorAll('#tasks tbody tr')].filter(t=>!t.hidden).map(t=>t.dataset.key)")
    check(visible() == [f"{NS}/agent-t101"], f"the Failed filter shows T101 only: {visible()}")
    drv.find_element(By.CSS_SELECTOR, "#counts .chip[data-state='Failed']").click()
    drv.find_element(By.ID, "filter").send_keys("T102")
    check(visible() == [f"{NS}/agent-t102"], f"the text filter: {visible()}")
    drv.find_element(By.ID, "filter").clear()
    js("document.getElementById('filter').dispatchEvent(new Event('input'))")
    # A task spawned now appears without reload.
    r = asdo("spawn", "--task-id", "T120", "--branch", "specs/1/T120-async", "--repo",
             "git@github.com:org/repo.git", "-f", os.environ["ASDO_SPAWN_VALUES"])
    check(r.returncode == 0, f"spawn T120: {r.stderr}")
    until(lambda: status_of("agent-t120"), "T120 appears without a reload")
    check(js("return window.asdoStats.snapshots") == 1, "one snapshot: the page was not reloaded")
    until(lambda: status_of("agent-t120") == "Succeeded", "T120's phase change shows live")
    shot("ui-tasks.png")

    # The running task's log grows line by line, each line once, across stream cuts.
    drv.get(f"{BASE}/task/{NS}/agent-t110")
    until(lambda: "asdo: running opencode" in drv.find_element(By.ID, "log").text, "the task page follows the log")
    open(os.environ["ASDO_GATE"] + ".lines", "w").close()
    seen = []
    end = time.time() + 60
    while time.time() < end:
        n = js("return Number(document.getElementById('log').dataset.lines || 0)")
        if not seen or n != seen[-1]:
            seen.append(n)
        if n >= 30:
            break
        time.sleep(0.05)
    check(len(seen) >= 4 and seen == sorted(seen), f"the log grew in steps: {seen}")
    open(os.environ["ASDO_GATE"], "w").close()
    until(lambda: js("return document.getElementById('log').dataset.ended") == "true", "the log ends with the task", 120)
    lines = js("return [...document.querySelectorAll('#log .ln')].map(e=>e.textContent)")
    numbered = [l for l in lines if l.startswith("line-")]
    check(numbered == [f"line-{i}" for i in range(1, 41)], f"every line once, in order: {numbered}")
    check(js("return document.querySelectorAll('#log .ln.marker, #log .ln.step').length") >= 1,
          "markers and steps are highlighted")
    check("ended: Succeeded" in drv.find_element(By.ID, "log-state").text, "the ending is said")
    check("asdo attach T110 -n " + NS in drv.find_element(By.ID, "attach-cmd").text, "the attach command to copy")
    shot("ui-task.png")

    # Delete asks first.
    drv.get(f"{BASE}/task/{NS}/agent-t100")
    until(lambda: drv.find_element(By.ID, "t-status").text == "Succeeded", "T100's page")
    drv.find_element(By.ID, "delete").click()
    check(js("return document.getElementById('confirm').open") is True, "Delete opens a confirmation")
    shot("ui-delete.png")
    drv.find_element(By.ID, "confirm-cancel").click()
    time.sleep(1)
    check("agent-t100" in asdo("list", "-n", NS).stdout, "Cancel keeps the pod")
    drv.find_element(By.ID, "delete").click()
    drv.find_element(By.ID, "confirm-delete").click()
    until(lambda: "agent-t100" not in asdo("list", "-n", NS).stdout, "Delete deletes the pod")
    until(lambda: "deleted" in drv.find_element(By.ID, "banner").text, "the page says it is deleted")
    html = drv.page_source
    check(os.environ.get("ASDO_SECRET", "\0") not in html, "no secret value in the page")


def steer():
    """The follow-up box of a running agent's page (ASDO_POD): the message reaches the
    agent, whose first turn waits on ASDO_GATE, and the answer streams into the page."""
    pod = os.environ["ASDO_POD"]
    drv.get(f"{BASE}/task/{NS}/{pod}")
    until(lambda: drv.find_element(By.ID, "t-status").text == "Running", f"{pod}'s page shows Running")
    until(lambda: drv.find_element(By.ID, "send").is_enabled(), "Send is enabled for a running task")
    # Record every moment Send is enabled while a follow-up is in flight.
    js("""window.asdoSendReenabled = [];
          new MutationObserver(() => {
            const b = document.getElementById('send'), st = document.getElementById('reply').dataset.state;
            if (!b.disabled && (st === 'sending' || st === 'sent')) window.asdoSendReenabled.push(st);
          }).observe(document.getElementById('send'), {attributes: true});""")
    drv.find_element(By.ID, "send-text").send_keys("Also write second.txt")
    drv.find_element(By.ID, "send").click()
    state = lambda: js("return document.getElementById('reply').dataset.state")
    until(lambda: state() == "sent", "the page says the message is sent", 180)
    check("sent (session ses" in drv.find_element(By.ID, "send-note").text,
          f"the note names the session: {drv.find_element(By.ID, 'send-note').text!r}")
    open(os.environ["ASDO_GATE"], "w").close()
    reply = lambda: drv.find_element(By.ID, "reply").text
    until(lambda: "Wrote first.txt and second.txt." in reply(), "the agent's answer streams into the page", 300)
    until(lambda: state() in ("done", "error"), "the follow-up ends", 300)
    check(state() == "done", f"the follow-up is answered: {drv.find_element(By.ID, 'send-note').text!r}")
    check("· write" in reply() and "second.txt" in reply(), f"the tool call is in the reply: {reply()!r}")
    check(js("return window.asdoSendReenabled") == [],
          f"Send stays disabled while the follow-up is in flight: {js('return window.asdoSendReenabled')}")
    shot("ui-send.png")


def local():
    """A running local task's page: the local runtime's words, and Delete as a pod's
    deletion in two steps (the task is asked to stop; once ended, Delete removes it)."""
    pod, task, task_dir = os.environ["ASDO_POD"], os.environ["ASDO_TASK"], os.environ["ASDO_TASK_DIR"]
    text = lambda i: drv.find_element(By.ID, i).text
    drv.get(f"{BASE}/task/local/{pod}")
    until(lambda: text("t-status") == "Running", f"{pod}'s page shows Running")
    check(text("scope").startswith("the local tasks in "), f"the header says what is served: {text('scope')!r}")
    check(text("attach-cmd") == f"asdo --runtime local attach {task}", f"the local attach command: {text('attach-cmd')!r}")
    check(text("delete") == "Delete task…", f"the button: {text('delete')!r}")
    drv.find_element(By.ID, "delete").click()
    check(js("return document.getElementById('confirm').open") is True, "Delete opens a confirmation")
    check(text("confirm-pod") == task and "asked to stop" in text("confirm-text"),
          f"the confirmation says what Delete does to a local task: {text('confirm-text')!r}")
    drv.find_element(By.ID, "confirm-delete").click()
    until(lambda: "asked to stop" in text("banner"), "the page says the task is asked to stop")
    until(lambda: text("t-status").startswith("Failed"), "the task ends", 300)
    until(lambda: "ended: Failed, exit code 143" in text("log-state"), "the log says how it ended", 120)
    check(os.path.isdir(task_dir), "a cancelled task stays until deleted again")
    drv.find_element(By.ID, "delete").click()
    drv.find_element(By.ID, "confirm-delete").click()
    until(lambda: "removed" in text("banner"), "the page says the task is removed")
    until(lambda: not os.path.exists(task_dir), "its directory is gone")
    drv.get(f"{BASE}/")
    until(lambda: drv.find_element(By.ID, "empty").is_displayed(), "the tasks view is empty")
    check("asdo --runtime local spawn" in text("empty"), f"and says how to spawn here: {text('empty')!r}")


try:
    drv.get(URL)
    check(urlparse(drv.current_url).query == "", f"the token left the address bar: {drv.current_url}")
    if MODE == "steer":
        steer()
    elif MODE == "local":
        local()
    else:
        tour()
finally:
    drv.quit()
print("all browser checks passed")

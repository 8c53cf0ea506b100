#!/usr/bin/env python3
"""Checks launchway's web page in a real browser: headless Chromium, driven over the
DevTools protocol, opens a run's page, signs in with a token, reads what it shows,
clicks Approve and waits for the run to end, then opens the runs list. Screenshots go
to OUT_DIR. Not part of the test suite (it needs Chromium: `apt-get install chromium`,
and `pip install websocket-client`).

    scripts/web-page-check.py BASE_URL TOKEN RUN_ID [OUT_DIR]

with a `launchway server` at BASE_URL, an approver TOKEN, and RUN_ID awaiting approval.
"""
import base64, json, subprocess, sys, tempfile, time, urllib.request
import websocket

base, token, run = sys.argv[1], sys.argv[2], sys.argv[3]
out = sys.argv[4] if len(sys.argv) > 4 else "."
profile = tempfile.mkdtemp(prefix="launchway-chromium-")
chrome = subprocess.Popen(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=9333",
                           f"--user-data-dir={profile}", "--window-size=1100,900", "about:blank"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            targets = json.load(urllib.request.urlopen("http://127.0.0.1:9333/json"))
            page = next(t for t in targets if t["type"] == "page"); break
        except Exception:
            time.sleep(0.1)
    ws = websocket.create_connection(page["webSocketDebuggerUrl"], suppress_origin=True)
    ids = iter(range(1, 10**6))
    def call(method, **params):
        my = next(ids); ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(ws.recv())
            if msg.get("id") == my:
                if "error" in msg: raise RuntimeError(msg["error"])
                return msg.get("result", {})
    def js(expr):
        r = call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r: raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")
    def wait_for(expr, what, seconds=20):
        end = time.time() + seconds
        while time.time() < end:
            value = js(expr)
            if value: return value
            time.sleep(0.2)
        raise SystemExit(f"timed out waiting for {what}; page says: {js('document.body.innerText')}")
    def shot(name):
        data = call("Page.captureScreenshot", format="png")["data"]
        open(f"{out}/{name}.png", "wb").write(base64.b64decode(data))
    call("Page.enable"); call("Runtime.enable")
    call("Page.navigate", url=f"{base}/runs/{run}")
    wait_for("document.querySelector('input[type=password]') !== null", "the token form")
    print("without a token:", js("document.querySelector('main').innerText").splitlines()[0])
    js(f"document.querySelector('input[type=password]').value = {json.dumps(token)}; document.querySelector('form').requestSubmit(); true")
    wait_for("document.querySelector('button.approve') !== null", "the Approve button")
    shot("waiting")
    print("run page:", js("document.querySelector('h1').innerText"))
    print("plan:", js("[...document.querySelectorAll('h2')].find(h => h.innerText == 'Plan').nextElementSibling.innerText"))
    js("document.querySelector('textarea').value = 'looks good from the browser'; document.querySelector('button.approve').click(); true")
    state = wait_for("(() => { const s = document.querySelector('h1 .state'); return s && ['succeeded','failed','rolled back'].includes(s.innerText) ? s.innerText : null })()", "the run to end", 60)
    shot("finished")
    print("after Approve:", state, "|", js("document.querySelector('main p').innerText"))
    call("Page.navigate", url=f"{base}/")
    wait_for("document.querySelector('table') !== null", "the runs table")
    print("runs list:", js("document.querySelector('tbody tr').innerText").replace("\t", " | "))
    shot("runs")
finally:
    chrome.kill()

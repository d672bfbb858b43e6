"""Headless Chromium against the daemon, driven over the DevTools protocol:

* the JavaScript snippets of the Achex seed document (seeds/000) run
  unchanged, `ws://achex.ca:4010` included (the browser maps that host and
  port to the daemon), and a second browser session receives their messages;
* the status page shows the numbers `/stats` reports.

Every wait is bounded by a deadline.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest
from websockets.sync.client import connect

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} not installed")

# The seed's snippets, verbatim (seeds/000, "Server Interfaces" and "User protocol Steps").
SEED_CONNECT = "var ws = new WebSocket('ws://achex.ca:4010');"
SEED_EVENTS = """\
ws.onopen = function(evt){ /* connect event */ };
ws.onmessage = function(evt){ var received_message = evt.data;};
ws.onerror = function(evt){ console.log(evt); };
ws.onclose = function(evt){ alert("Disconnected");};"""
SEED_LOGIN = """\
var myID = 'Alex';
var mypass = 'somepass';
ws.send('{"setID":"' + myID + '","passwd":"' + mypass + '"}'); ws.send('{"cmd":"register_broadcast","bid":"' + name + '"}');"""
SEED_TO = """\
var destination = 'myfriend';
var mymessage = 'hello friend';
ws.send('{"to":"' + destination + '","msg":"' + mymessage + '"}');"""
SEED_TOS = """\
var session = '343';
var mymessage = 'hello friend';
ws.send('{"tos":"' + session + '","msg":"' + mymessage + '"}');"""
SEED_SEND = 'ws.send("a sample message");'
SEED_CLOSE = "ws.close();"

# Test harness, not part of the snippets: records what the page receives.
RECORD = "window.__got = []; ws.addEventListener('message', function(e){ window.__got.push(e.data); });"


class CDP:
    """A minimal DevTools protocol client over the browser's websocket."""

    def __init__(self, url):
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, max_size=None, open_timeout=15))
        self.next_id = 0
        self.events = []

    def close(self):
        self._stack.close()

    def _recv_until(self, done, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(what)
            m = json.loads(self.ws.recv(timeout=left))
            if done(m):
                return m
            if "method" in m:
                self.events.append(m)

    def call(self, method, session=None, timeout=15, **params):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        m = self._recv_until(lambda m: m.get("id") == mid, timeout, method)
        if "error" in m:
            raise RuntimeError(f"{method}: {m['error']}")
        return m.get("result", {})

    def wait_event(self, method, session, timeout=10):
        for i, e in enumerate(self.events):
            if e["method"] == method and e.get("sessionId") == session:
                return self.events.pop(i)
        return self._recv_until(
            lambda m: m.get("method") == method and m.get("sessionId") == session, timeout, method
        )

    def page(self, url="about:blank"):
        """A new page in its own browser context (its own cookies, cache and
        connections: a separate browser session). Returns its session id."""
        ctx = self.call("Target.createBrowserContext")["browserContextId"]
        target = self.call("Target.createTarget", url=url, browserContextId=ctx)["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session)
        self.call("Runtime.enable", session)
        return session

    def evaluate(self, session, expr, timeout=15):
        r = self.call("Runtime.evaluate", session, timeout, expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, session, expr, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.evaluate(session, expr)
            if v:
                return v
            time.sleep(0.05)
        raise TimeoutError(expr)


@pytest.fixture
def chromium(tmp_path):
    """Factory: chromium(achex_port) -> CDP connected to a fresh headless
    browser that maps achex.ca:4010 to the daemon."""
    procs, made = [], []

    def launch(achex_port):
        profile = tmp_path / f"profile{len(procs)}"
        profile.mkdir()
        proc = subprocess.Popen(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
                "--remote-debugging-port=0", f"--host-resolver-rules=MAP achex.ca:4010 127.0.0.1:{achex_port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if port_file.exists():
                lines = port_file.read_text().split()
                if len(lines) >= 2:
                    made.append(CDP(f"ws://127.0.0.1:{lines[0]}{lines[1]}"))
                    return made[-1]
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("chromium did not start")

    yield launch
    for cdp in made:
        cdp.close()
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def got(cdp, session):
    return cdp.evaluate(session, "JSON.stringify(window.__got)")


def wait_got(cdp, session, n, timeout=10):
    cdp.wait_for(session, f"window.__got && window.__got.length >= {n}", timeout)
    return json.loads(got(cdp, session))


def stats(daemon):
    with urllib.request.urlopen(daemon.http("/stats"), timeout=5) as r:
        return json.loads(r.read())["listeners"][0]


def test_seed_snippets_run_unchanged_and_a_second_session_receives(daemon, client, chromium):
    cdp = chromium(daemon.addrs["achex"][1])
    # SIDs are never reused: burn them so the page of the second session gets
    # the 343 the seed's toS snippet addresses.
    for _ in range(341):
        client().close()
    alex = cdp.page()
    friend = cdp.page()
    # The seed registers to the broadcast `name`, which in a browser is window.name.
    for s in (alex, friend):
        cdp.evaluate(s, "window.name = 'room42'")
    # One evaluation is one JavaScript task: no message can arrive between the
    # snippets and the recorder that follows them.
    cdp.evaluate(alex, SEED_CONNECT + "\n" + SEED_EVENTS + "\n" + RECORD)
    assert wait_got(cdp, alex, 1) == ['{"SID":342}']
    cdp.evaluate(friend, SEED_CONNECT + "\n" + RECORD)
    assert wait_got(cdp, friend, 1) == ['{"SID":343}']
    cdp.evaluate(friend, """ws.send('{"setID":"myfriend","passwd":"x"}')""")
    assert wait_got(cdp, friend, 2)[1] == '{"auth":"ok"}'

    cdp.evaluate(alex, SEED_LOGIN)
    assert wait_got(cdp, alex, 2)[1] == '{"auth":"ok"}'
    cdp.evaluate(alex, SEED_TO)
    cdp.evaluate(alex, SEED_TOS)
    assert wait_got(cdp, friend, 4)[2:] == [
        '{"to":"myfriend","msg":"hello friend","FROM":"Alex","sID":342}',
        '{"tos":"343","msg":"hello friend","FROM":"Alex","sID":342}',
    ]
    # The register_broadcast snippet took effect: friend's bc reaches Alex.
    cdp.evaluate(friend, """ws.send('{"bc":"room42","hi":1}')""")
    assert wait_got(cdp, alex, 3)[2] == '{"bc":"room42","hi":1,"FROM":"myfriend","sID":343}'
    cdp.evaluate(alex, SEED_SEND)
    assert wait_got(cdp, alex, 4)[3] == '{"error":"invalid message: expected a JSON object"}'
    # Step 4: "ping" or "latency", measured with a real WebSocket ping the browser answers.
    cdp.evaluate(alex, 'ws.send("ping"); ws.send("latency");')
    ltcy = wait_got(cdp, alex, 6)[4:]
    assert all(re.fullmatch(r'\{"ltcy":"\d+ms"\}', m) for m in ltcy), ltcy
    st = stats(daemon)
    assert {"name": "Alex", "role": "user", "sessions": 1} in st["names"]
    assert st["group_list"] == [{"name": "room42", "members": 1}]

    cdp.evaluate(alex, SEED_CLOSE)
    dialog = cdp.wait_event("Page.javascriptDialogOpening", alex)
    assert dialog["params"]["message"] == "Disconnected"
    cdp.call("Page.handleJavaScriptDialog", alex, accept=True)
    deadline = time.monotonic() + 5
    while stats(daemon)["sessions"] != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stats(daemon)["sessions"] == 1
    assert cdp.evaluate(friend, "ws.readyState") == 1


# Installed before the page's own script: records the body of every /stats
# response, so the k-th render can be compared with exactly what it was given.
RECORD_STATS = """(() => {
  window.__stats = [];
  const fetch0 = window.fetch.bind(window);
  window.fetch = async (...args) => {
    const r = await fetch0(...args);
    window.__stats.push(await r.clone().text());
    return r;
  };
})();"""

# One evaluation is one task: the page cannot re-render while it is read.
READ_PAGE = """(() => {
  const updated = Number(document.body.dataset.updated);
  const out = {updated: updated, stats: window.__stats[updated - 1], cells: {}, tables: {}};
  for (const td of document.querySelectorAll('[data-stat]')) out.cells[td.dataset.stat] = td.textContent;
  for (const t of document.querySelectorAll('#details table')) {
    out.tables[t.id] = [...t.querySelectorAll('tr')].map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent))
      .filter(r => r.length);
  }
  return JSON.stringify(out);
})()"""

COLUMNS = [
    "connections_open", "sessions", "users", "groups", "hubs", "messages_in", "messages_out", "bytes_in",
    "bytes_out", "rates.messages_in_per_s", "rates.messages_out_per_s",
]


def test_status_page_shows_what_stats_reports(start_daemon, client, chromium):
    d = start_daemon("--wschat", "127.0.0.1:0", expect=("achex", "wschat", "http"))
    a, b, c, busy = client(d), client(d), client(d), client(d)
    a.login("alice")
    b.login("bob")
    c.login("bob")
    busy.login("zed")
    a.send({"cmd": "register_broadcast", "bid": "room42"})
    b.send({"cmd": "register_broadcast", "bid": "room42"})
    a.sync()
    b.sync()
    assert b.call({"joinHub": "T1"}) == '{"joinHub":"OK"}'
    assert c.call({"joinHub": "T2"}) == '{"joinHub":"OK"}'
    assert a.call({"joinHub": "T2"}) == '{"joinHub":"OK"}'
    stack = contextlib.ExitStack()
    chat = stack.enter_context(connect(d.url("wschat"), open_timeout=5))
    chat.recv(timeout=5)
    chat.send('{"command":"identify","name":"carol"}')
    assert '"code":300' in chat.recv(timeout=5)

    # Traffic flows on both listeners while the page is read.
    stop = threading.Event()
    errors = []

    def traffic():
        try:
            i = 0
            while not stop.is_set():
                busy.send({"echo": i})
                busy.recv()
                chat.send('{"command":"message","to":"carol","message":%d}' % i)
                chat.recv(timeout=5)
                i += 1
                time.sleep(0.005)
        except Exception as e:  # reported by the test below
            errors.append(e)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        cdp = chromium(d.addrs["achex"][1])
        page = cdp.page()
        cdp.call("Page.addScriptToEvaluateOnNewDocument", page, source=RECORD_STATS)
        cdp.call("Page.navigate", page, url=d.http("/"))
        # A render whose rates show the traffic on both listeners (rates need
        # two samples of the status server, so allow a few refreshes).
        deadline = time.monotonic() + 15
        while True:
            cdp.wait_for(page, "Number(document.body && document.body.dataset.updated) >= 1")
            shown = json.loads(cdp.evaluate(page, READ_PAGE))
            snap = {l["name"]: l for l in json.loads(shown["stats"])["listeners"]}
            if all(snap[n]["rates"]["messages_in_per_s"] > 0 for n in ("achex", "wschat")):
                break
            assert time.monotonic() < deadline, f"rates stayed 0: {snap}"
            time.sleep(0.5)
    finally:
        stop.set()
        t.join(10)
        stack.close()
    assert not errors, errors
    # Every number cell is exactly what that /stats response said.
    assert [*snap] == ["achex", "wschat"]
    cells = shown["cells"]
    for name, l in snap.items():
        assert cells[f"{name}.address"] == l["address"] == "%s:%d" % d.addrs[name]
        for key in COLUMNS:
            want = l
            for k in key.split("."):
                want = want[k]
            assert float(cells[f"{name}.{key}"]) == float(want), (name, key, cells, l)
        assert l["rates"]["messages_out_per_s"] > 0
    ach = snap["achex"]
    assert (ach["sessions"], ach["users"], ach["groups"], ach["hubs"]) == (4, 3, 1, 2)
    assert (snap["wschat"]["sessions"], snap["wschat"]["users"]) == (1, 1)
    # The lists, as the page shows them and as /stats reports them now
    # (the traffic changed no membership).
    tables = shown["tables"]
    now = {l["name"]: l for l in json.loads(urllib.request.urlopen(d.http("/stats"), timeout=5).read())["listeners"]}
    assert tables["achex-names"] == [[n["name"], n["role"], str(n["sessions"])] for n in now["achex"]["names"]]
    assert tables["achex-names"] == [["alice", "user", "1"], ["bob", "user", "2"], ["zed", "user", "1"]]
    assert tables["achex-groups"] == [[g["name"], str(g["members"])] for g in now["achex"]["group_list"]]
    assert tables["achex-groups"] == [["room42", "2"]]
    assert tables["achex-hubs"] == [[h["name"], str(h["members"])] for h in now["achex"]["hub_list"]]
    assert tables["achex-hubs"] == [["T1", "1"], ["T2", "2"]]

"""PROTOCOLS.md §2 (Achex), rule by rule and row by row, against the real
daemon with a real WebSocket client. Test names cite the section."""

import json
import re
import time

import pytest


# ---- open ---------------------------------------------------------------


def test_open_sids_start_at_1_and_are_never_reused(client):
    a, b = client(), client()
    assert (a.sid, b.sid) == (1, 2)
    b.close()
    c = client()
    assert c.sid == 3


def test_open_sid_is_the_first_message_exactly(daemon):
    from websockets.sync.client import connect

    with connect(daemon.url(), open_timeout=5) as ws:
        assert ws.recv(timeout=5) == '{"SID":1}'


def test_paths_are_accepted_and_not_isolated(client):
    """§1 any path; §7 #5 `/<instance>` paths are accepted but not isolated."""
    a = client(path="/instance-a")
    b = client(path="/other?x=1")
    a.login("alice")
    b.login("bob")
    a.send({"to": "bob", "m": 1})
    assert b.recv() == '{"to":"bob","m":1,"FROM":"alice","sID":1}'


# ---- §2.1 login ------------------------------------------------------------


def test_21_setid_replies_ok_exactly_and_missing_passwd_is_empty(client):
    a, b = client(), client()
    assert a.call('{"setID":"alex","passwd":"free"}') == '{"auth":"ok"}'
    # Missing passwd counts as "": alex's claim has "free", so it fails; a new name works.
    assert b.call('{"setID":"alex"}') == '{"auth":"failed","error":"wrong password"}'
    assert b.call('{"setID":"nopass"}') == '{"auth":"ok"}'
    c = client()
    assert c.call('{"setID":"nopass","passwd":""}') == '{"auth":"ok"}'


def test_21_auth_replies_ok_with_own_sid(client):
    a, b = client(), client()
    assert b.call('{"auth":"alex","passwd":"free"}') == '{"auth":"OK","SID":2}'
    assert a.call('{"auth":"alice@00001023"}') == '{"auth":"OK","SID":1}'


def test_21_open_mode_claim_password_and_release(client):
    a, b = client(), client()
    a.login("alex", "free")
    assert b.call({"setID": "alex", "passwd": "other"}) == '{"auth":"failed","error":"wrong password"}'
    assert b.call({"auth": "alex", "passwd": "free"}) == '{"auth":"OK","SID":2}'
    a.close()
    b.close()
    time.sleep(0.2)
    # Nobody holds alex now: the claim is gone and a new password sets it.
    c = client()
    assert c.call({"setID": "alex", "passwd": "new"}) == '{"auth":"ok"}'


@pytest.mark.parametrize(
    "msg,reason",
    [
        ('{"setID":""}', "invalid name"),
        ('{"setID":5}', "invalid name"),
        ('{"setID":null}', "invalid name"),
        ('{"auth":["x"]}', "invalid name"),
        ('{"setID":"a","passwd":5}', "invalid password"),
        ('{"auth":"a","passwd":{}}', "invalid password"),
        ('{"serviceID":"svc","passwd":"p","idtag":""}', "invalid name"),
        ('{"serviceID":"","passwd":"p"}', "invalid name"),
        ('{"serviceID":"ghost","passwd":"p"}', "unknown service"),
        ('{"serviceID":"svc","passwd":"wrong"}', "wrong password"),
        ('{"serviceID":"svc","passwd":3}', "invalid password"),
    ],
)
def test_21_failure_reasons(start_daemon, client, msg, reason):
    d = start_daemon("--achex-service", "svc:p")
    c = client(d)
    assert c.call(msg) == json.dumps({"auth": "failed", "error": reason}, separators=(",", ":"))


def test_21_services_idtag_and_exclusive_names(start_daemon, client):
    d = start_daemon("--achex-service", "svc:p", "--achex-service", "other:q:r")
    s1, s2, u = client(d), client(d), client(d)
    assert s1.call('{"serviceID":"svc","passwd":"p"}') == '{"auth":"ok"}'
    # A service name is exclusive: a second instance needs an idtag.
    assert s2.call('{"serviceID":"svc","passwd":"p"}') == '{"auth":"failed","error":"name in use"}'
    assert s2.call('{"serviceID":"svc","passwd":"p","idtag":"svc-2"}') == '{"auth":"ok"}'
    # A user cannot take a name a service holds ...
    assert u.call('{"setID":"svc-2"}') == '{"auth":"failed","error":"name in use"}'
    # ... and a service cannot take a name anyone holds.
    u.login("bob")
    s3 = client(d)
    assert s3.call('{"serviceID":"other","passwd":"q:r","idtag":"bob"}') == '{"auth":"failed","error":"name in use"}'
    assert s3.call('{"serviceID":"other","passwd":"q:r"}') == '{"auth":"ok"}'
    # Messages reach services by their names.
    u.send({"to": "svc-2", "q": 1})
    assert s2.recv() == '{"to":"svc-2","q":1,"FROM":"bob","sID":3}'
    s2.send({"to": "bob", "a": 2})
    assert u.recv() == '{"to":"bob","a":2,"FROM":"svc-2","sID":2}'


def test_21_relogin_switches_and_failed_relogin_keeps_identity(client):
    a, b, c = client(), client(), client()
    a.login("first")
    a.send({"cmd": "register_broadcast", "bid": "g"})
    assert a.call({"joinHub": "H"}) == '{"joinHub":"OK"}'
    b.login("taken", "pw")
    # A failed re-login keeps the old identity.
    assert a.call({"setID": "taken", "passwd": "bad"}) == '{"auth":"failed","error":"wrong password"}'
    a.send({"echo": 1})
    assert a.recv_json()["FROM"] == "first"
    # A successful one switches and releases the old name.
    assert a.call({"setID": "second"}) == '{"auth":"ok"}'
    c.login("x")
    c.send({"to": "first"})
    assert c.recv() == '{"error":"no such user: first"}'
    # Memberships stay with the session.
    c.send({"bc": "g", "n": 1})
    assert a.recv() == '{"bc":"g","n":1,"FROM":"x","sID":3}'
    c.send({"toH": "H", "n": 2})
    assert a.recv() == '{"toH":"H","n":2,"FROM":"x","sID":3}'


# ---- §2.2 classification ------------------------------------------------------


def test_22_1_binary_frame_is_an_error(client):
    a = client()
    a.send(b'{"setID":"x"}')
    assert a.recv() == '{"error":"binary frames are not supported"}'


@pytest.mark.parametrize("probe", ["ping", "latency", '{"ping":true}', '{"latency":1}'])
def test_22_2_latency_probe_before_login(client, probe):
    a = client()
    reply = a.call(probe)
    assert re.fullmatch(r'\{"ltcy":"\d+ms"\}', reply), reply
    assert "sID" not in json.loads(reply)


@pytest.mark.parametrize("text", ["Ping", "ping ", "[]", "42", '"ping"', "null", "{", "", "not json"])
def test_22_3_not_a_json_object(client, text):
    a = client()
    assert a.call(text) == '{"error":"invalid message: expected a JSON object"}'


def test_22_4_routing_key_order(client):
    a, b, c = client(), client(), client()
    a.login("alex")
    b.login("bob")
    c.login("carl")
    # toS beats to: the message goes to session 3 (carl), not bob.
    a.send({"to": "bob", "toS": 3, "m": 1})
    assert c.recv() == '{"to":"bob","toS":3,"m":1,"FROM":"alex","sID":1}'
    b.nothing()
    # to beats bc and toH.
    a.send({"toH": "x", "bc": "y", "to": "bob"})
    assert b.recv() == '{"toH":"x","bc":"y","to":"bob","FROM":"alex","sID":1}'
    # tos beats to.
    a.send({"to": "carl", "tos": "2"})
    assert b.recv() == '{"to":"carl","tos":"2","FROM":"alex","sID":1}'
    c.nothing()


def test_22_5_command_key_order_and_routing_wins(client):
    a, b = client(), client()
    # setID comes before cmd and serverstat.
    assert a.call({"serverstat": True, "cmd": "x", "setID": "alex"}) == '{"auth":"ok"}'
    b.login("bob")
    # Routing wins over commands: delivered, not executed.
    a.send({"to": "bob", "cmd": "move"})
    assert b.recv() == '{"to":"bob","cmd":"move","FROM":"alex","sID":1}'
    a.nothing()
    # joinHub comes before echo.
    assert a.call({"echo": True, "joinHub": "h"}) == '{"joinHub":"OK"}'


def test_22_6_no_routing_key(client):
    a = client()
    assert a.call("{}") == '{"error":"no routing key in message"}'
    assert a.call({"msg": "hi"}) == '{"error":"no routing key in message"}'
    # Facebook login is unsupported (§7 #5).
    assert a.call({"fbID": "1"}) == '{"error":"no routing key in message"}'


@pytest.mark.parametrize(
    "msg",
    [
        {"to": "x"},
        {"toS": 1},
        {"tos": "1"},
        {"bc": "g"},
        {"toH": "h"},
        {"cmd": "register_broadcast", "bid": "g"},
        {"cmd": "nope"},
        {"joinHub": "h"},
        {"leaveHub": "h"},
        {"echo": True},
    ],
)
def test_22_needs_login(client, msg):
    a = client()
    assert a.call(msg) == '{"error":"not authenticated"}'


def test_22_serverstat_works_before_login(client):
    a = client()
    assert json.loads(a.call({"serverstat": True}))["serverstat"]["sessions"] == 1


# ---- §2.3 routing and stamping --------------------------------------------------


def test_23_stamping_replaces_client_from_and_sid_and_keeps_order(client):
    a, b = client(), client()
    a.login("alex")
    b.login("bob")
    a.send('{"FROM":"fake","z":1,"to":"bob","sID":99,"a":{"n":1.50,"u":"é/ü"},"e":1e400}')
    assert b.recv() == '{"z":1,"to":"bob","a":{"n":1.50,"u":"é/ü"},"e":1e400,"FROM":"alex","sID":1}'
    # Duplicate members: the last wins.
    a.send('{"to":"bob","k":1,"k":2}')
    assert b.recv() == '{"to":"bob","k":2,"FROM":"alex","sID":1}'


def test_23_to_reaches_every_session_of_the_name(client):
    a, b1, b2 = client(), client(), client()
    a.login("alex")
    b1.login("bob")
    b2.login("bob")
    a.send({"to": "bob", "msg": "hi"})
    want = '{"to":"bob","msg":"hi","FROM":"alex","sID":1}'
    assert b1.recv() == want and b2.recv() == want
    a.nothing()


def test_23_to_own_name_includes_the_sender(client):
    a1, a2 = client(), client()
    a1.login("alex")
    a2.login("alex")
    a1.send({"to": "alex", "n": 1})
    want = '{"to":"alex","n":1,"FROM":"alex","sID":1}'
    assert a1.recv() == want and a2.recv() == want


def test_23_to_unknown_and_error_texts(client):
    a = client()
    a.login("alex")
    assert a.call({"to": "nobody"}) == '{"error":"no such user: nobody"}'
    assert a.call({"to": 5}) == '{"error":"no such user: 5"}'
    assert a.call('{"to":{"a":[1, 2]}}') == '{"error":"no such user: {\\"a\\":[1,2]}"}'


def test_23_tos_number_and_digit_string_reach_sessions_not_logged_in(client):
    a, b = client(), client()
    a.login("alex")
    a.send({"toS": 2, "m": 1})
    assert b.recv() == '{"toS":2,"m":1,"FROM":"alex","sID":1}'
    a.send({"tos": "2", "m": 2})
    assert b.recv() == '{"tos":"2","m":2,"FROM":"alex","sID":1}'
    a.send({"toS": "2", "m": 3})
    assert b.recv() == '{"toS":"2","m":3,"FROM":"alex","sID":1}'


@pytest.mark.parametrize(
    "msg,err",
    [
        ('{"toS":343}', "no such session: 343"),
        ('{"tos":"343"}', "no such session: 343"),
        ('{"toS":"abc"}', "no such session: abc"),
        ('{"toS":"-2"}', "no such session: -2"),
        ('{"toS":2.5}', "no such session: 2.5"),
        ('{"toS":[2]}', "no such session: [2]"),
        ('{"toS":null}', "no such session: null"),
    ],
)
def test_23_no_such_session(client, msg, err):
    a, _b = client(), client()
    a.login("alex")
    assert a.call(msg) == json.dumps({"error": err}, separators=(",", ":"))


def test_23_closed_session_is_gone(client):
    a, b = client(), client()
    a.login("alex")
    b.close()
    time.sleep(0.2)
    assert a.call({"toS": 2}) == '{"error":"no such session: 2"}'


def test_23_bc_members_sender_included_and_nonmembers_may_send(client):
    a, b, c = client(), client(), client()
    for x, n in ((a, "a"), (b, "b"), (c, "c")):
        x.login(n)
    a.send({"cmd": "register_broadcast", "bid": "room42"})
    b.send({"cmd": "register_broadcast", "bid": "room42"})
    b.sync()
    a.send({"bc": "room42", "type": "hello"})
    want = '{"bc":"room42","type":"hello","FROM":"a","sID":1}'
    assert a.recv() == want and b.recv() == want
    c.nothing(0.2)
    c.send({"bc": "room42", "x": 1})
    want = '{"bc":"room42","x":1,"FROM":"c","sID":3}'
    assert a.recv() == want and b.recv() == want
    c.nothing(0.2)
    # An empty group is silent (§7 #2).
    c.send({"bc": "empty"})
    c.nothing()


def test_23_toh_excludes_sender_and_unknown_hub_is_silent(client):
    a, b, c = client(), client(), client()
    for x, n in ((a, "a"), (b, "b"), (c, "c")):
        x.login(n)
    assert a.call({"joinHub": "T1"}) == '{"joinHub":"OK"}'
    assert b.call({"joinHub": "T1"}) == '{"joinHub":"OK"}'
    a.send({"toH": "T1", "msg": "joined"})
    assert b.recv() == '{"toH":"T1","msg":"joined","FROM":"a","sID":1}'
    a.nothing(0.2)
    # A non-member may send to a hub.
    c.send({"toH": "T1", "n": 1})
    want = '{"toH":"T1","n":1,"FROM":"c","sID":3}'
    assert a.recv() == want and b.recv() == want
    c.send({"toH": "nohub"})
    c.nothing()


def test_23_numbers_name_groups_and_hubs_and_other_values_are_invalid(client):
    a, b = client(), client()
    a.login("a")
    b.login("b")
    b.send({"cmd": "register_broadcast", "bid": 42})
    assert b.call({"joinHub": 7}) == '{"joinHub":"OK"}'
    a.send({"bc": "42", "n": 1})
    assert b.recv() == '{"bc":"42","n":1,"FROM":"a","sID":1}'
    a.send({"toH": 7, "n": 2})
    assert b.recv() == '{"toH":7,"n":2,"FROM":"a","sID":1}'
    for key, msg in [
        ("bc", {"bc": True}),
        ("toH", {"toH": None}),
        ("joinHub", {"joinHub": []}),
        ("leaveHub", {"leaveHub": {}}),
        ("bid", {"cmd": "register_broadcast", "bid": False}),
    ]:
        assert a.call(msg) == '{"error":"invalid value for %s"}' % key


# ---- §2.4 commands ----------------------------------------------------------------


def test_24_register_is_silent_and_idempotent_unregister_leaves(client):
    a, b = client(), client()
    a.login("a")
    b.login("b")
    for _ in range(2):
        b.send({"cmd": "register_broadcast", "bid": "g"})
    b.nothing(0.2)
    b.sync()
    a.send({"bc": "g", "n": 1})
    assert b.recv() == '{"bc":"g","n":1,"FROM":"a","sID":1}'
    b.nothing(0.2)
    for _ in range(2):
        b.send({"cmd": "unregister_broadcast", "bid": "g"})
    b.nothing(0.2)
    b.sync()
    a.send({"bc": "g", "n": 2})
    b.nothing()


def test_24_cmd_errors(client):
    a = client()
    a.login("a")
    assert a.call({"cmd": "register_broadcast"}) == '{"error":"missing bid"}'
    assert a.call({"cmd": "unregister_broadcast"}) == '{"error":"missing bid"}'
    assert a.call({"cmd": "other"}) == '{"error":"unknown cmd: other"}'
    assert a.call({"cmd": 5}) == '{"error":"unknown cmd: 5"}'
    assert a.call('{"cmd":{"x":[true]}}') == '{"error":"unknown cmd: {\\"x\\":[true]}"}'


def test_24_hubs_join_leave_and_left_notices(client):
    a, b, c = client(), client(), client()
    a.login("alice")
    b.login("bob")
    c.login("carl")
    assert a.call({"joinHub": "T1", "passwd": "ignored"}) == '{"joinHub":"OK"}'
    assert a.call({"joinHub": "T1"}) == '{"joinHub":"OK"}'
    assert a.call({"joinHub": "T2"}) == '{"joinHub":"OK"}'
    assert b.call({"joinHub": "T1"}) == '{"joinHub":"OK"}'
    assert b.call({"joinHub": "T2"}) == '{"joinHub":"OK"}'
    assert c.call({"joinHub": "T1"}) == '{"joinHub":"OK"}'
    # Several hubs at once work (a Deviation from the original).
    c.send({"toH": "T2", "x": 1})
    assert a.recv() == '{"toH":"T2","x":1,"FROM":"carl","sID":3}'
    assert b.recv() == '{"toH":"T2","x":1,"FROM":"carl","sID":3}'
    # leaveHub answers OK even for a non-member; the rest are told on a real leave.
    assert c.call({"leaveHub": "T2"}) == '{"leaveHub":"OK"}'
    a.nothing(0.2)
    assert c.call({"leaveHub": "T1"}) == '{"leaveHub":"OK"}'
    assert a.recv() == '{"leftHub":"T1","user":"carl","sID":3}'
    assert b.recv() == '{"leftHub":"T1","user":"carl","sID":3}'
    # Disconnecting counts as leaving every hub.
    b.close()
    got = {a.recv(), a.recv()}
    assert got == {'{"leftHub":"T1","user":"bob","sID":2}', '{"leftHub":"T2","user":"bob","sID":2}'}


def test_24_echo_is_stamped_and_to_the_sender_only(client):
    a, b = client(), client()
    a.login("alex")
    b.login("alex")
    a.send({"echo": True, "x": 1})
    assert a.recv() == '{"echo":true,"x":1,"FROM":"alex","sID":1}'
    b.nothing()


def test_24_latency_is_measured_with_a_real_ping(raw):
    r = raw()
    assert r.recv_text() == '{"SID":1}'
    r.send_frame(0x1, b"latency")
    _, op, payload = r.recv_frame()
    assert op == 0x9 and payload
    time.sleep(0.25)
    r.send_frame(0xA, payload)
    reply = r.recv_text()
    m = re.fullmatch(r'\{"ltcy":"(\d+)ms"\}', reply)
    assert m, reply
    assert 240 <= int(m.group(1)) <= 2000
    # Probe payloads are unique.
    r.send_frame(0x1, b"ping")
    _, op, payload2 = r.recv_frame()
    assert op == 0x9 and payload2 != payload


def test_24_latency_probe_times_out_after_5_s(raw):
    r = raw()
    r.recv_text()
    r.send_frame(0x1, b'{"ping":1}')
    pings = []
    t0 = time.monotonic()
    r.sock.settimeout(10)
    assert r.recv_text(pings) == '{"error":"latency probe timed out"}'
    assert 4.5 <= time.monotonic() - t0 <= 8
    assert len(pings) == 1


def test_24_serverstat_counts(start_daemon, client):
    d = start_daemon("--achex-service", "svc:p")
    a, b, b2, s, anon = (client(d) for _ in range(5))
    a.login("alice")
    b.login("bob")
    b2.login("bob")
    assert s.call('{"serviceID":"svc","passwd":"p"}') == '{"auth":"ok"}'
    a.send({"cmd": "register_broadcast", "bid": "g1"})
    b.send({"cmd": "register_broadcast", "bid": "g2"})
    b.send({"cmd": "register_broadcast", "bid": "gone"})
    b.send({"cmd": "unregister_broadcast", "bid": "gone"})
    b.sync()
    assert a.call({"joinHub": "h"}) == '{"joinHub":"OK"}'
    reply = anon.call({"serverstat": True})
    m = re.fullmatch(
        r'\{"serverstat":\{"version":"wsbroker/\d+\.\d+\.\d+","sessions":5,"users":3,"groups":2,"hubs":1,'
        r'"uptime_s":(\d+)\}\}',
        reply,
    )
    assert m, reply


# ---- §2.5 errors, quiet mode, limits ------------------------------------------------


def test_25_quiet_mode_suppresses_errors_but_not_auth_failed(start_daemon, client):
    d = start_daemon("--achex-quiet")
    a = client(d)
    for bad in ["nope", b"\x00", "{}", '{"to":"x"}', '{"cmd":"x"}']:
        a.send(bad)
    a.nothing(0.5)
    assert a.call('{"setID":""}') == '{"auth":"failed","error":"invalid name"}'
    a.login("a")
    for bad in ['{"to":"nobody"}', '{"toS":99}', '{"cmd":"register_broadcast"}', '{"bc":true}']:
        a.send(bad)
    a.nothing(0.5)
    # Normal replies still come.
    assert a.call({"joinHub": "h"}) == '{"joinHub":"OK"}'


def test_25_size_limit_64_kib(client):
    from websockets.exceptions import ConnectionClosed

    a, b = client(), client()
    b.login("b")
    # Exactly 65536 bytes passes.
    body = '{"to":"b","p":"%s"}'
    pad = 65536 - len(body % "")
    a.login("a")
    a.send(body % ("x" * pad))
    got = b.recv()
    assert len(got) == 65536 + len(',"FROM":"a","sID":1')
    a.send(body % ("x" * (pad + 1)))
    with pytest.raises(ConnectionClosed) as e:
        a.recv()
    assert e.value.rcvd is not None and e.value.rcvd.code == 1009
    # Everyone else is still served.
    assert b.call({"echo": 1}) == '{"echo":1,"FROM":"b","sID":2}'


def test_25_replies_in_request_order_and_per_sender_order(client):
    a, b = client(), client()
    a.login("a")
    b.login("b")
    for i in range(300):
        a.send({"to": "b", "i": i})
        a.send({"echo": i})
    for i in range(300):
        assert b.recv() == '{"to":"b","i":%d,"FROM":"a","sID":1}' % i
        assert a.recv() == '{"echo":%d,"FROM":"a","sID":1}' % i


# ---- §2.6 transcripts, verbatim ------------------------------------------------------


def test_26_legacy_transcript(client, raw):
    alex = raw()
    assert alex.recv_text() == '{"SID":1}'
    bob2 = client()
    bob2.login("bob")
    other = client()  # SID 3
    other.login("carol")
    client().close()  # SID 4
    bob5 = client()
    assert (bob2.sid, bob5.sid) == (2, 5)
    bob5.login("bob")

    def say(s):
        alex.send_frame(0x1, s.encode())

    say('{"setID":"alex","passwd":"free"}')
    assert alex.recv_text() == '{"auth":"ok"}'
    say('{"cmd":"register_broadcast","bid":"room42"}')
    say('{"bc":"room42","type":"hello"}')
    assert alex.recv_text() == '{"bc":"room42","type":"hello","FROM":"alex","sID":1}'
    say('{"to":"bob","msg":"hi","FROM":"fake","sID":99}')
    want = '{"to":"bob","msg":"hi","FROM":"alex","sID":1}'
    assert bob2.recv() == want and bob5.recv() == want
    say('{"tos":"5","msg":"only you"}')
    assert bob5.recv() == '{"tos":"5","msg":"only you","FROM":"alex","sID":1}'
    bob2.nothing(0.2)
    say('{"to":"nobody"}')
    assert alex.recv_text() == '{"error":"no such user: nobody"}'
    say("ping")
    _, op, payload = alex.recv_frame()
    assert op == 0x9
    alex.send_frame(0xA, payload)
    assert re.fullmatch(r'\{"ltcy":"\d+ms"\}', alex.recv_text())


def test_26_cloud_transcript(client):
    c1 = client()
    bob = client()
    assert bob.sid == 2
    bob.login("bob")
    assert bob.call('{"joinHub":"T1"}') == '{"joinHub":"OK"}'
    alice = client()
    assert alice.sid == 3
    assert alice.call('{"auth":"alice@00001023"}') == '{"auth":"OK","SID":3}'
    assert alice.call('{"joinHub":"T1"}') == '{"joinHub":"OK"}'
    alice.send('{"toH":"T1","msg":"joined"}')
    assert bob.recv() == '{"toH":"T1","msg":"joined","FROM":"alice@00001023","sID":3}'
    alice.nothing(0.2)
    bob.close()
    assert alice.recv() == '{"leftHub":"T1","user":"bob","sID":2}'
    c1.nothing(0.1)

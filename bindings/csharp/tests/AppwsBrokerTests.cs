// Tests of AppWebsocketClient, AppService, AppWebsocketCrypto and Broker: the client logs in to
// the service (and to the broker's AppWebsocket listener); System.Net.WebSockets.ClientWebSocket
// speaks Achex to the broker's in-process service and plays the webtalk browser.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using Wsbroker;

static partial class ServerTests
{
    const string Challenge = "0123456789abcdef";
    const string Key = "d58c77eae0c1c1f37a9f545e207643c926ad9ea4932016a83a4a01029de37760";

    static List<KeyValuePair<string, Action>> AppwsBrokerTestList()
    {
        return new List<KeyValuePair<string, Action>>
        {
            T("appws crypto vectors (PROTOCOLS.md 5.1, 5.2)", AppwsCryptoVectors),
            T("appws client (queue) logs in to a callback-mode AppService", AppwsClientAndService),
            T("appws wrong password: LoginFailedException", AppwsWrongPassword),
            T("appws authenticator mode (callback) against an echo service", AppwsAuthenticator),
            T("appws service handler exception rethrown by Dispose; userdata freed", AppwsServiceHandlerException),
            T("broker: in-process Achex service answers a ClientWebSocket", BrokerAchexService),
            T("broker: auth callback refuses with a reason", BrokerAuthCallback),
            T("broker: webtalk operations reach a browser", BrokerWebtalk),
            T("broker: AppWebsocket listener serves the AppWebsocketClient", BrokerAppwsListener),
        };
    }

    static void AppwsCryptoVectors()
    {
        Equal(Key, AppWebsocketCrypto.SessionKey(Challenge, "pwd"), "session key");
        Equal("970a852834", AppWebsocketCrypto.Encrypt(Key, "seed1", "hello"), "encrypt");
        Equal("hello", Encoding.UTF8.GetString(AppWebsocketCrypto.Decrypt(Key, "seed1", "970A852834")), "decrypt");
        Equal("f677f09a186944407a62adc3b8b7dae0a421233bfc63b20a33b7cc9cde95d533", AppWebsocketCrypto.Hash(Key, "seed1", "hello"), "hash");
        Equal("54ef6250b93b761b5af73332fb9d149322b0aa2967151d2436e9f02cecafe03f",
              AppWebsocketCrypto.Digest("myapp", "", "myapp", "00000000000000000000000000000000", "Admin", null, Challenge, "pwd"), "digest");
        Equal(Result.InvalidArgument, Throws(() => AppWebsocketCrypto.Decrypt(Key, "seed1", "abc")).Code, "odd hex");
        Equal(Result.InvalidArgument, Throws(() => AppWebsocketCrypto.Hash(Key, "a\0b", "x")).Code, "NUL");
    }

    static string Url(int port) { return "ws://127.0.0.1:" + port + "/"; }

    static void AppwsClientAndService()
    {
        var logins = new BlockingCollection<AppServiceEvent>();
        var options = new AppServiceOptions();
        options.Apps["myapp"] = "pwd";
        using (var svc = new AppService(options, s =>
        {
            s.LoggedIn += (o, ev) => logins.Add(ev);
            s.MessageReceived += (o, ev) => ((AppService)o).Reply(ev.Conn, ev.Src, "{\"mt\":\"" + ev.Mt + "Result\",\"len\":" + ev.Data.Length + "}");
        }))
        {
            var id = new AppWebsocketIdentity { Sip = "alice", Dn = "Alice", Info = "{\"cn\":\"A\"}" };
            using (var c = AppWebsocketClient.CreatePolled(Url(svc.Port), "myapp", "pwd", new AppWebsocketClientOptions { Identity = id }))
            {
                c.WaitConnected(TimeoutMs);
                Check(c.IsConnected, "connected");
                AppServiceEvent login;
                Check(logins.TryTake(out login, TimeoutMs), "login event");
                Equal("alice|Alice|{\"cn\":\"A\"}", login.Sip + "|" + login.Dn + "|" + login.Info, "identity");
                Equal(Result.Ok, c.Send("{\"mt\":\"Ping\",\"src\":\"s1\"}"), "send");
                AppWebsocketClientEvent ev = c.Poll(TimeoutMs);
                Check(ev != null && ev.Type == AppwsClientEventType.Message, "message");
                Equal("PingResult/s1", ev.Mt + "/" + ev.Src, "mt/src");
                Check(ev.Json.Contains("\"len\":24"), ev.Json);
                Equal(Result.InvalidArgument, Throws(() => c.Send("not json")).Code, "not JSON");
                string hex = c.Encrypt("seed", "héllo");
                Equal("héllo", Encoding.UTF8.GetString(c.Decrypt("seed", hex)), "round trip");
                Equal(64, c.Hash("seed", "x").Length, "hash length");
                c.Disconnect();
                var kinds = c.Events(TimeoutMs).Select(e => e.Type).ToList();
                Equal(AppwsClientEventType.Closed, kinds.Last(), "last event");
                Equal(Result.NotConnected, Throws(() => c.Disconnect()).Code, "closed twice");
            }
        }
    }

    static void AppwsWrongPassword()
    {
        var options = new AppServiceOptions();
        options.Apps["app"] = "right";
        using (var svc = AppService.CreatePolled(options))
        using (var c = AppWebsocketClient.CreatePolled(Url(svc.Port), "app", "wrong"))
        {
            try
            {
                c.WaitConnected(TimeoutMs);
                throw new Exception("expected LoginFailedException");
            }
            catch (LoginFailedException) { }
        }
    }

    static void AppwsAuthenticator()
    {
        var options = new AppServiceOptions { Echo = true };
        options.Apps["app"] = "hostpw";
        var got = new BlockingCollection<string>();
        using (var svc = new AppService(options))
        using (var c = new AppWebsocketClient(Url(svc.Port), "app", null, null, cl =>
        {
            cl.ChallengeReceived += (o, ev) =>
            {
                var id = new AppWebsocketIdentity { Sip = "bob" };
                string dg = AppWebsocketCrypto.Digest("app", id.Domain, id.Sip, id.Guid, id.Dn, null, ev.Text, "hostpw");
                ((AppWebsocketClient)o).Authenticate(id, dg, AppWebsocketCrypto.SessionKey(ev.Text, "hostpw"));
            };
            cl.Connected += (o, ev) => ((AppWebsocketClient)o).Send("{\"mt\":\"Echo\",\"src\":\"7\"}");
            cl.MessageReceived += (o, ev) => got.Add(ev.Mt + "/" + ev.Src);
        }))
        {
            string s;
            Check(got.TryTake(out s, TimeoutMs), "echo reply");
            Equal("EchoResult/7", s, "echo");
            c.WaitConnected(TimeoutMs);
            Equal(AppWebsocketCrypto.Hash(AppWebsocketCrypto.SessionKey(Challenge, "hostpw"), "s", "d").Length, c.Hash("s", "d").Length, "hash");
        }
    }

    static void AppwsServiceHandlerException()
    {
        int before = AppService.LiveRegistrations;
        var options = new AppServiceOptions();
        options.Apps["a"] = "p";
        var svc = new AppService(options, s => s.LoggedIn += (o, ev) => { throw new InvalidOperationException("from LoggedIn"); });
        using (var c = AppWebsocketClient.CreatePolled(Url(svc.Port), "a", "p"))
        {
            c.WaitConnected(TimeoutMs);
        }
        try
        {
            svc.Dispose();
            throw new Exception("expected the handler's exception");
        }
        catch (InvalidOperationException e)
        {
            Equal("from LoggedIn", e.Message, "message");
        }
        Equal(before, AppService.LiveRegistrations, "registrations");
    }

    static ClientWebSocket ConnectTo(string url)
    {
        var ws = new ClientWebSocket();
        Wait(ws.ConnectAsync(new Uri(url), CancellationToken.None));
        return ws;
    }

    static string Call(ClientWebSocket ws, string msg)
    {
        SendMsg(ws, Encoding.UTF8.GetBytes(msg), true);
        return RecvText(ws);
    }

    static string RecvText(ClientWebSocket ws)
    {
        var m = Receive(ws);
        return m.Key == WebSocketMessageType.Close ? "<close " + (int)ws.CloseStatus + ">" : Encoding.UTF8.GetString(m.Value);
    }

    static void BrokerAchexService()
    {
        var events = new BlockingCollection<BrokerEvent>();
        int before = Broker.LiveRegistrations;
        using (var broker = new Broker(null, b =>
        {
            b.EventReceived += (o, ev) => events.Add(ev);
            b.ServiceMessage += (o, ev) =>
            {
                if (ev.Sid != ev.Service) ((Broker)o).SendToSession(ev.Service, ev.Sid, "{\"got\":" + ev.Text + "}");
            };
        }))
        {
            Check(broker.Port() != 0 && broker.Port(Listener.Wschat) == 0, "ports");
            ulong svc = broker.RegisterService("svc");
            Equal(Result.InvalidState, Throws(() => broker.RegisterService("svc")).Code, "name in use");
            broker.SetEvents(true);
            var ws = ConnectTo(Url(broker.Port()));
            Check(RecvText(ws).StartsWith("{\"SID\":"), "greeting");
            Equal("{\"auth\":\"ok\"}", Call(ws, "{\"setID\":\"alice\",\"passwd\":\"a\"}"), "login");
            Equal("{\"got\":{\"to\":\"svc\",\"x\":1,\"FROM\":\"alice\",\"sID\":2},\"FROM\":\"svc\",\"sID\":1}", Call(ws, "{\"to\":\"svc\",\"x\":1}"), "service reply");
            BrokerEvent login;
            Check(events.TryTake(out login, TimeoutMs), "login event");
            Equal(BrokerEventType.Login, login.Type, "login type");
            Equal("alice", login.Name, "login name");
            broker.Send(svc, Target.Name, "alice", "{\"hi\":1}");
            Equal("{\"hi\":1,\"FROM\":\"svc\",\"sID\":1}", RecvText(ws), "to name");
            Equal(Result.NotFound, Throws(() => broker.Send(svc, Target.Name, "nobody", "{}")).Code, "unknown name");
            Equal(Result.InvalidArgument, Throws(() => broker.Send(svc, Target.Name, "alice", "[1]")).Code, "not an object");
            broker.Join(svc, "T1", true);
            Equal("{\"joinHub\":\"OK\"}", Call(ws, "{\"joinHub\":\"T1\"}"), "joinHub");
            broker.Leave(svc, "T1", true);
            Equal("{\"leftHub\":\"T1\",\"user\":\"svc\",\"sID\":1}", RecvText(ws), "leftHub");
            BrokerCounts st = broker.Stats();
            Check(st.Sessions == 1 && st.MessagesIn >= 3, "stats");
            CloseClient(ws);
            while (true)
            {
                BrokerEvent ev;
                Check(events.TryTake(out ev, TimeoutMs), "logout event");
                if (ev.Type == BrokerEventType.Logout)
                {
                    Equal("alice", ev.Name, "logout name");
                    break;
                }
            }
            broker.UnregisterService(svc);
        }
        Equal(before, Broker.LiveRegistrations, "registrations");
    }

    static void BrokerAuthCallback()
    {
        int before = Broker.LiveRegistrations;
        var options = new BrokerOptions
        {
            Auth = (string name, string password, out string reason) =>
            {
                if (name == "boom") throw new InvalidOperationException("auth blew up");
                reason = "only bob";
                return name == "bob";
            },
        };
        var broker = new Broker(options);
        var ws = ConnectTo(Url(broker.Port()));
        RecvText(ws);
        Equal("{\"auth\":\"failed\",\"error\":\"only bob\"}", Call(ws, "{\"setID\":\"eve\",\"passwd\":\"x\"}"), "refused");
        Equal("{\"auth\":\"ok\"}", Call(ws, "{\"setID\":\"bob\",\"passwd\":\"x\"}"), "accepted");
        Check(Call(ws, "{\"setID\":\"boom\"}").Contains("failed"), "exception refuses");
        CloseClient(ws);
        try
        {
            broker.Dispose();
            throw new Exception("expected the auth exception");
        }
        catch (InvalidOperationException e)
        {
            Equal("auth blew up", e.Message, "message");
        }
        Equal(before, Broker.LiveRegistrations, "registrations");
    }

    static void BrokerWebtalk()
    {
        var options = new BrokerOptions();
        options.Listeners[Listener.Achex] = "off";
        options.Listeners[Listener.Webtalk] = "127.0.0.1:0";
        using (var broker = new Broker(options))
        {
            Equal(0, broker.Port(Listener.Achex), "achex off");
            string salt;
            ulong user = broker.WebtalkCreateUser(out salt);
            Equal(1UL, user, "user id");
            Equal(20, salt.Length, "salt");
            Equal(Result.NotFound, Throws(() => broker.WebtalkWhisper(99, "x")).Code, "unknown user");
            Equal(Result.InvalidArgument, Throws(() => broker.WebtalkKillChannel(1)).Code, "channel 1");
            broker.WebtalkWhisper(user, "one");
            ulong chan = broker.WebtalkCreateChannel();
            Equal(2UL, chan, "channel id");
            broker.WebtalkJoin(chan, user);
            broker.WebtalkShout(chan, "two");
            var ws = ConnectTo("ws://127.0.0.1:" + broker.Port(Listener.Webtalk) + "/webtalk");
            SendMsg(ws, Encoding.UTF8.GetBytes(user + "!" + salt), true);
            Equal("one", RecvText(ws), "queued whisper");
            Equal("two", RecvText(ws), "queued shout");
            broker.WebtalkLeave(chan, user);
            broker.WebtalkShout(chan, "not for you");
            broker.WebtalkWhisper(user, "three");
            Equal("three", RecvText(ws), "live whisper");
            broker.WebtalkStore("k", "v1");
            Equal("v1", Encoding.UTF8.GetString(broker.WebtalkRetrieve("k")), "retrieve");
            broker.WebtalkStore("big", new string('x', 1000));
            Equal(1000, broker.WebtalkRetrieve("big").Length, "big value");
            broker.WebtalkClear("k");
            Check(broker.WebtalkRetrieve("k") == null, "cleared");
            broker.WebtalkKillUser(user);
            Equal("<close 4003>", RecvText(ws), "killed");
            ws.Dispose();
        }
        var bad = new BrokerOptions();
        bad.Listeners[Listener.WebtalkAdmin] = "127.0.0.1:0";
        Equal(Result.InvalidArgument, Throws(() => new Broker(bad)).Code, "admin without webtalk");
    }

    static void BrokerAppwsListener()
    {
        var options = new BrokerOptions();
        options.Listeners[Listener.Appws] = "127.0.0.1:0";
        options.AppwsApps["myapp"] = "pw";
        using (var broker = new Broker(options))
        using (var c = AppWebsocketClient.CreatePolled(Url(broker.Port(Listener.Appws)), "myapp", "pw"))
        {
            c.WaitConnected(TimeoutMs);
            c.Send("{\"mt\":\"Echo\",\"src\":\"1\"}");
            AppWebsocketClientEvent ev = c.Poll(TimeoutMs);
            Check(ev != null && ev.Mt == "EchoResult" && ev.Src == "1", "echo");
        }
    }
}

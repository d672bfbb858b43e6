// Tests of the C# binding, run under mono: each drives a server through the binding with a real
// WebSocket client (System.Net.WebSockets.ClientWebSocket); ClientTests.cs drives the Client.
// Prints "N passed, M failed"; the exit code is non-zero when any test fails.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Wsbroker;

static partial class ServerTests
{
    const int TimeoutMs = 10000;

    static int Main(string[] args)
    {
        if (args.Length == 1 && args[0] == LeaveOpenMode)
        {
            return LeaveOpen();
        }
        var tests = new List<KeyValuePair<string, Action>>
        {
            T("library version matches the header", VersionMatchesHeader),
            T("echo binary of many sizes (callback mode)", EchoBinarySizes),
            T("echo text, with non-ASCII (callback mode)", EchoText),
            T("open event: path, subprotocol, remote address", OpenEventFields),
            T("client close code and reason reach Closed", ClientCloseCode),
            T("CloseConnection sends code and reason", ServerCloseCode),
            T("queue mode echo through Events()", PolledEcho),
            T("Events() ends on timeout, Interrupt and Dispose", EventsEnd),
            T("handler exception rethrown at the next call", HandlerExceptionRethrown),
            T("handler exception rethrown by Dispose", HandlerExceptionOnDispose),
            T("userdata (GCHandle) freed by userdata_free", UserdataFreed),
            T("errors map to WsbException codes", ErrorsMapToCodes),
            T("backpressure is a return value, Drained follows", Backpressure),
            T("Dispose is idempotent; use after it throws", DisposeTwice),
            T("TLS: wss:// with a PEM certificate; bad files throw", TlsServer),
        };
        tests.AddRange(ClientTestList());
        tests.AddRange(AppwsBrokerTestList());
        tests.AddRange(ConnectionTestList());
        tests.AddRange(NativeTestList());
        tests.AddRange(LifetimeTestList());
        int passed = 0, failed = 0;
        foreach (var t in tests)
        {
            try
            {
                t.Value();
                passed++;
                Console.WriteLine("ok   " + t.Key);
            }
            catch (Exception e)
            {
                failed++;
                Console.WriteLine("FAIL " + t.Key + ": " + e);
            }
        }
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }

    static KeyValuePair<string, Action> T(string name, Action a) { return new KeyValuePair<string, Action>(name, a); }

    // -- helpers ----------------------------------------------------------------------------------

    static void Check(bool cond, string what)
    {
        if (!cond) throw new Exception("check failed: " + what);
    }

    static void Equal<TV>(TV expected, TV actual, string what)
    {
        if (!EqualityComparer<TV>.Default.Equals(expected, actual))
            throw new Exception(what + ": expected <" + expected + ">, got <" + actual + ">");
    }

    static WsbException Throws(Action a)
    {
        try { a(); }
        catch (WsbException e) { return e; }
        throw new Exception("expected a WsbException");
    }

    static T Wait<T>(Task<T> t) { if (!t.Wait(TimeoutMs)) throw new TimeoutException(); return t.Result; }
    static void Wait(Task t) { if (!t.Wait(TimeoutMs)) throw new TimeoutException(); }

    static ClientWebSocket Connect(Server s, string path = "/", string subprotocol = null)
    {
        var ws = new ClientWebSocket();
        if (subprotocol != null) ws.Options.AddSubProtocol(subprotocol);
        Wait(ws.ConnectAsync(new Uri("ws://127.0.0.1:" + s.Port + path), CancellationToken.None));
        return ws;
    }

    static void SendMsg(ClientWebSocket ws, byte[] data, bool text)
    {
        Wait(ws.SendAsync(new ArraySegment<byte>(data), text ? WebSocketMessageType.Text : WebSocketMessageType.Binary, true, CancellationToken.None));
    }

    /// <summary>One whole message; type Close when the server closed (then data is empty).</summary>
    static KeyValuePair<WebSocketMessageType, byte[]> Receive(ClientWebSocket ws)
    {
        var all = new List<byte>();
        var buf = new byte[65536];
        while (true)
        {
            WebSocketReceiveResult r = Wait(ws.ReceiveAsync(new ArraySegment<byte>(buf), CancellationToken.None));
            all.AddRange(new ArraySegment<byte>(buf, 0, r.Count));
            if (r.MessageType == WebSocketMessageType.Close || r.EndOfMessage)
                return new KeyValuePair<WebSocketMessageType, byte[]>(r.MessageType, all.ToArray());
        }
    }

    static void CloseClient(ClientWebSocket ws, int code = 1000, string reason = "")
    {
        Wait(ws.CloseAsync((WebSocketCloseStatus)code, reason, CancellationToken.None));
        ws.Dispose();
    }

    /// <summary>A callback-mode echo server recording every event.</summary>
    sealed class Echo : IDisposable
    {
        public readonly BlockingCollection<ServerEvent> Events = new BlockingCollection<ServerEvent>();
        public readonly Server Server;
        public bool Reply = true;

        public Echo(ServerOptions o = null)
        {
            Server = new Server(o, s =>
            {
                s.EventReceived += (sender, ev) => Events.Add(ev);
                s.MessageReceived += (sender, ev) =>
                {
                    if (!Reply) return;
                    var srv = (Server)sender;
                    if (ev.IsText && ev.Text.StartsWith("/close "))
                    {
                        string[] parts = ev.Text.Split(new[] { ' ' }, 3);
                        srv.CloseConnection(ev.Conn, int.Parse(parts[1]), parts[2]);
                        return;
                    }
                    srv.Send(ev.Conn, ev.Data, 0, ev.Data.Length, ev.IsText);
                };
            });
        }

        public ServerEvent Next(EventType type)
        {
            while (true)
            {
                ServerEvent ev;
                if (!Events.TryTake(out ev, TimeoutMs)) throw new TimeoutException("no " + type + " event");
                if (ev.Type == type) return ev;
            }
        }

        public void Dispose() { Server.Dispose(); }
    }

    // -- tests ------------------------------------------------------------------------------------

    static void VersionMatchesHeader()
    {
        Equal(Library.HeaderVersion, Library.Version, "version");
        Library.EnsureCompatible();
        Check(Library.ResultString(Result.Ok).Length > 0, "result string");
    }

    static void EchoBinarySizes()
    {
        using (var e = new Echo())
        {
            var ws = Connect(e.Server);
            foreach (int size in new[] { 0, 1, 125, 126, 65535, 65536, 1 << 20, (1 << 20) + 7 })
            {
                var data = new byte[size];
                for (int i = 0; i < size; i++) data[i] = (byte)(i * 7 + 3);
                SendMsg(ws, data, false);
                var got = Receive(ws);
                Equal(WebSocketMessageType.Binary, got.Key, "type for size " + size);
                Check(got.Value.SequenceEqual(data), "payload of size " + size);
            }
            CloseClient(ws);
        }
    }

    static void EchoText()
    {
        using (var e = new Echo())
        {
            var ws = Connect(e.Server);
            foreach (string text in new[] { "", "hello", "héllo wörld ✓ 🚀", new string('x', 70000) })
            {
                SendMsg(ws, Encoding.UTF8.GetBytes(text), true);
                var got = Receive(ws);
                Equal(WebSocketMessageType.Text, got.Key, "type");
                Equal(text, Encoding.UTF8.GetString(got.Value), "text");
                var ev = e.Next(EventType.Message);
                Check(ev.IsText, "IsText");
                Equal(text, ev.Text, "event text");
            }
            CloseClient(ws);
        }
    }

    static void OpenEventFields()
    {
        var o = new ServerOptions { Path = "/ws" };
        o.Subprotocols.Add("chat.v2");
        o.Subprotocols.Add("chat");
        using (var e = new Echo(o))
        {
            var ws = Connect(e.Server, "/ws?room=1", "chat");
            Equal("chat", ws.SubProtocol, "client subprotocol");
            var open = e.Next(EventType.Open);
            Equal("/ws?room=1", open.Path, "path");
            Equal("chat", open.Protocol, "protocol");
            Check(open.RemoteAddr.StartsWith("127.0.0.1:"), "remote addr " + open.RemoteAddr);
            Check(e.Server.IsValid(open.Conn), "valid while open");
            CloseClient(ws);
            var close = e.Next(EventType.Close);
            Equal(open.Conn, close.Conn, "conn");
            Check(!e.Server.IsValid(open.Conn), "stale after close");
        }
    }

    static void ClientCloseCode()
    {
        using (var e = new Echo())
        {
            var ws = Connect(e.Server);
            CloseClient(ws, 4001, "bye now");
            var ev = e.Next(EventType.Close);
            Equal(4001, ev.CloseStatus, "status");
            Equal("bye now", ev.Text, "reason");
            Check(!ev.ClosedByHost, "not by host");
        }
    }

    static void ServerCloseCode()
    {
        using (var e = new Echo())
        {
            var ws = Connect(e.Server);
            SendMsg(ws, Encoding.UTF8.GetBytes("/close 4003 go away"), true);
            var got = Receive(ws);
            Equal(WebSocketMessageType.Close, got.Key, "close frame");
            Equal(4003, (int)ws.CloseStatus.Value, "client sees code");
            Equal("go away", ws.CloseStatusDescription, "client sees reason");
            ws.Dispose();
            var ev = e.Next(EventType.Close);
            Check(ev.ClosedByHost, "by host");
            Equal(4003, ev.CloseStatus, "status");
        }
    }

    static void PolledEcho()
    {
        using (var server = Server.CreatePolled())
        {
            Check(server.IsPolled, "polled");
            ushort port = server.Port;
            Exception clientError = null;
            var client = new Thread(() =>
            {
                try
                {
                    var ws = new ClientWebSocket();
                    Wait(ws.ConnectAsync(new Uri("ws://127.0.0.1:" + port + "/q?x=1"), CancellationToken.None));
                    SendMsg(ws, Encoding.UTF8.GetBytes("one"), true);
                    Equal("one", Encoding.UTF8.GetString(Receive(ws).Value), "echo one");
                    SendMsg(ws, new byte[] { 1, 2 }, false);
                    Check(Receive(ws).Value.SequenceEqual(new byte[] { 1, 2 }), "echo binary");
                    CloseClient(ws, 1000, "done");
                }
                catch (Exception ex) { clientError = ex; }
            });
            client.Start();
            var seen = new List<ServerEvent>();
            foreach (ServerEvent ev in server.Events(5000))
            {
                seen.Add(ev);
                if (ev.Type == EventType.Message) server.Send(ev.Conn, ev.Data, 0, ev.Data.Length, ev.IsText);
                if (ev.Type == EventType.Close) break;
            }
            client.Join(TimeoutMs);
            if (clientError != null) throw clientError;
            Equal("Open,Message,Message,Close", string.Join(",", seen.Select(x => x.Type.ToString())), "event order");
            Equal("/q?x=1", seen[0].Path, "path");
            Equal(1000, seen[3].CloseStatus, "close status");
            Equal("done", seen[3].Text, "close reason");
        }
    }

    static void EventsEnd()
    {
        using (var server = Server.CreatePolled())
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            Equal(0, server.Events(200).Count(), "timeout: no events");
            Check(sw.ElapsedMilliseconds >= 150, "waited for the timeout");
            Check(server.Poll(0) == null, "poll(0) is null");
            var t = new Timer(_ => server.Interrupt(), null, 200, Timeout.Infinite);
            sw.Restart();
            Equal(0, server.Events().Count(), "interrupt ends Events()");
            Check(sw.ElapsedMilliseconds < 5000, "promptly");
            t.Dispose();
        }
        var other = Server.CreatePolled();
        var closer = new Thread(() => { Thread.Sleep(200); other.Dispose(); });
        closer.Start();
        var sw2 = System.Diagnostics.Stopwatch.StartNew();
        Equal(0, other.Events().Count(), "Dispose ends Events()");
        Check(sw2.ElapsedMilliseconds < 5000, "promptly after Dispose");
        closer.Join();
    }

    sealed class BoomException : Exception { public BoomException(string m) : base(m) { } }

    static void HandlerExceptionRethrown()
    {
        var s = new Server(null, srv => srv.MessageReceived += (sender, ev) =>
        {
            if (ev.Text == "boom") throw new BoomException("thrown in a handler");
            ((Server)sender).Send(ev.Conn, ev.Text);
        });
        try
        {
            var ws = Connect(s);
            SendMsg(ws, Encoding.UTF8.GetBytes("boom"), true);
            SendMsg(ws, Encoding.UTF8.GetBytes("still alive"), true);
            Equal("still alive", Encoding.UTF8.GetString(Receive(ws).Value), "server keeps serving");
            CloseClient(ws);
            try
            {
                s.GetStats();
                throw new Exception("expected BoomException");
            }
            catch (BoomException b)
            {
                Equal("thrown in a handler", b.Message, "message");
                Check(b.StackTrace.Contains("ServerTests"), "original stack kept");
            }
            s.GetStats(); // thrown once, then cleared
        }
        finally
        {
            s.Dispose();
        }
    }

    static void HandlerExceptionOnDispose()
    {
        var opened = new ManualResetEventSlim();
        var s = new Server(null, srv => srv.Opened += (sender, ev) => { opened.Set(); throw new InvalidOperationException("from open"); });
        var ws = Connect(s);
        Check(opened.Wait(TimeoutMs), "opened");
        CloseClient(ws);
        try
        {
            s.Dispose();
            throw new Exception("expected the handler's exception");
        }
        catch (InvalidOperationException e)
        {
            Equal("from open", e.Message, "message");
        }
        s.Dispose(); // already disposed, nothing pending
    }

    static void UserdataFreed()
    {
        int before = Server.LiveRegistrations;
        var s = new Server();
        Equal(before + 1, Server.LiveRegistrations, "one registration while running");
        s.Dispose();
        Equal(before, Server.LiveRegistrations, "released by userdata_free");
        using (var first = Server.CreatePolled())
        {
            var e = Throws(() => new Server(new ServerOptions { Bind = "127.0.0.1:" + first.Port }));
            Equal(Result.AddrInUse, e.Code, "address in use");
            Check(e.Detail.Length > 0, "detail");
            Equal(before, Server.LiveRegistrations, "released when creation fails");
        }
    }

    static void ErrorsMapToCodes()
    {
        Equal(Result.InvalidArgument, Throws(() => new Server(new ServerOptions { Bind = "nonsense" })).Code, "bad bind");
        Equal(Result.InvalidArgument, Throws(() => new Server(new ServerOptions { Threads = 0 })).Code, "0 threads");
        using (var e = new Echo())
        {
            var nf = Throws(() => e.Server.Send(987654321, "x"));
            Equal(Result.NotFound, nf.Code, "stale id");
            Check(nf.Detail.Contains("987654321"), "detail names the id: " + nf.Detail);
            Equal(Result.InvalidState, Throws(() => e.Server.Poll(0)).Code, "poll in callback mode");
            var ws = Connect(e.Server);
            ulong conn = e.Next(EventType.Open).Conn;
            Equal(Result.InvalidUtf8, Throws(() => e.Server.Send(conn, new byte[] { 0xff, 0xfe }, 0, 2, true)).Code, "bad utf-8");
            Equal(Result.TooBig, Throws(() => e.Server.Ping(conn, new byte[126])).Code, "ping too big");
            // ClientWebSocket answers pings only while a receive is pending.
            ws.ReceiveAsync(new ArraySegment<byte>(new byte[16]), CancellationToken.None);
            Equal(Result.Ok, e.Server.Ping(conn, Encoding.UTF8.GetBytes("p1")), "ping");
            Equal("p1", e.Next(EventType.Pong).Text, "pong payload");
            e.Server.CloseConnection(conn, 1000, "");
            Check(!e.Server.IsValid(conn), "invalid after CloseConnection");
            var late = Throws(() => e.Server.Send(conn, "late")).Code;
            Check(late == Result.Closed || late == Result.NotFound, "late send: " + late);
            ws.Dispose();
        }
    }

    static void Backpressure()
    {
        using (var e = new Echo(new ServerOptions { OutboundSoftLimit = 1024 }))
        {
            e.Reply = false;
            var ws = Connect(e.Server);
            ulong conn = e.Next(EventType.Open).Conn;
            var big = new byte[256 * 1024];
            var results = new List<Result>();
            for (int i = 0; i < 8; i++) results.Add(e.Server.Send(conn, big));
            Check(results.Contains(Result.Backpressure), "some send reported backpressure");
            Check(results.All(r => r == Result.Ok || r == Result.Backpressure), "all queued");
            for (int i = 0; i < 8; i++) Equal(big.Length, Receive(ws).Value.Length, "message " + i);
            e.Next(EventType.Drain);
            CloseClient(ws);
            Check(e.Server.GetStats().MessagesOut >= 8, "stats count messages out");
        }
    }

    static void DisposeTwice()
    {
        var s = new Server();
        s.Dispose();
        s.Dispose();
        try
        {
            var p = s.Port;
            throw new Exception("expected ObjectDisposedException, got port " + p);
        }
        catch (ObjectDisposedException) { }
    }

    /// <summary>A certificate for localhost and its key (tests/pki.sh, in a fresh directory).</summary>
    static string[] ServerCertificate()
    {
        string dir = MakePki();
        return new[] { System.IO.Path.Combine(dir, "server.pem"), System.IO.Path.Combine(dir, "server.key") };
    }

    static void TlsServer()
    {
        string[] files = ServerCertificate();
        string thumbprint = new System.Security.Cryptography.X509Certificates.X509Certificate2(files[0]).Thumbprint;
        using (var e = new Echo(new ServerOptions { TlsCertChainPath = files[0], TlsKeyPath = files[1] }))
        using (var tcp = new System.Net.Sockets.TcpClient("127.0.0.1", e.Server.Port))
        // mono's ClientWebSocket cannot be told to trust one certificate, SslStream can: the
        // upgrade and one frame each way are written by hand.
        using (var tls = new System.Net.Security.SslStream(tcp.GetStream(), false, (sender, cert, chain, errors) =>
            cert != null && new System.Security.Cryptography.X509Certificates.X509Certificate2(cert).Thumbprint == thumbprint))
        {
            tcp.ReceiveTimeout = TimeoutMs;
            tls.AuthenticateAsClient("localhost");
            byte[] req = Encoding.ASCII.GetBytes("GET /tls HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n" +
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
            tls.Write(req, 0, req.Length);
            var head = new StringBuilder();
            while (!head.ToString().EndsWith("\r\n\r\n"))
            {
                int b = tls.ReadByte();
                Check(b >= 0 && head.Length < 4096, "upgrade response: " + head);
                head.Append((char)b);
            }
            Check(head.ToString().StartsWith("HTTP/1.1 101") && head.ToString().Contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "upgrade: " + head);
            Equal("/tls", e.Next(EventType.Open).Path, "open path");
            byte[] text = Encoding.UTF8.GetBytes("over tls");
            // A masked text frame with the all-zero mask, so the payload goes as it is.
            var frame = new List<byte> { 0x81, (byte)(0x80 | text.Length), 0, 0, 0, 0 };
            frame.AddRange(text);
            tls.Write(frame.ToArray(), 0, frame.Count);
            var reply = new byte[2 + text.Length];
            for (int n = 0; n < reply.Length;)
            {
                int got = tls.Read(reply, n, reply.Length - n);
                Check(got > 0, "echo frame");
                n += got;
            }
            Equal(0x81, (int)reply[0], "text frame, final");
            Equal("over tls", Encoding.UTF8.GetString(reply, 2, reply[1]), "echo over wss");
        }
        var missing = Throws(() => new Server(new ServerOptions { TlsCertChainPath = files[0] + ".missing", TlsKeyPath = files[1] }));
        Equal(Result.InvalidArgument, missing.Code, "missing certificate file");
        Check(missing.Detail.Contains(".missing"), "detail names the file: " + missing.Detail);
        var swapped = Throws(() => new Server(new ServerOptions { TlsCertChainPath = files[1], TlsKeyPath = files[1] }));
        Check(swapped.Detail.Contains("no certificate"), "key file as certificate: " + swapped.Detail);
        System.IO.Directory.Delete(System.IO.Path.GetDirectoryName(files[0]), true);
    }
}

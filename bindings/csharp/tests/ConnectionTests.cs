// Tests of the connection settings the Client and AppWebsocketClient share (ConnectionOptions),
// the AppWebsocket login timeout, TLS on AppService and broker listeners, broker message limits
// and every object's LastError, part of the same mono test program as ServerTests.cs. The peers:
// a hand-written WebSocket server that never answers (SilentPeer), AppService, Broker, a
// ClientWebSocket, and certificates made by openssl (tests/pki.sh).
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using Wsbroker;

static partial class ServerTests
{
    static List<KeyValuePair<string, Action>> ConnectionTestList()
    {
        return new List<KeyValuePair<string, Action>>
        {
            T("appws: login timeout against a service that never answers; upgrade headers sent", AppwsLoginTimeoutAndHeaders),
            T("appws: AppService over TLS; CaFile, SystemRoots, client certificate", AppwsTlsTrust),
            T("appws: the Proxy setting routes the connection", AppwsProxy),
            T("broker: MaxMessageSize per listener closes with 1009", BrokerMaxMessage),
            T("broker: listener TLS serves wss://", BrokerListenerTls),
            T("LastError of each object is its own, whichever thread failed", LastErrorPerObject),
        };
    }

    /// <summary>tests/pki.sh in a fresh directory: a CA (ca.pem), a server certificate for
    /// localhost and 127.0.0.1 (server.pem/.key) and a client certificate (client.pem/.key).</summary>
    static string MakePki()
    {
        string dir = Path.Combine(Path.GetTempPath(), "wsb-cs-pki-" + Guid.NewGuid().ToString("N"));
        string script = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(HeaderPath())), "tests", "pki.sh");
        Equal("", Run("bash", "\"" + script + "\" \"" + dir + "\""), "tests/pki.sh output");
        return dir;
    }

    /// <summary>A WebSocket server that completes the upgrade and then answers nothing (the
    /// AppWebsocket service that never replies to AppChallenge). It records each upgrade request
    /// and the text of each frame it is sent, and drops the connection at the client's close.</summary>
    sealed class SilentPeer : IDisposable
    {
        readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
        readonly List<TcpClient> _conns = new List<TcpClient>();
        public readonly BlockingCollection<string> Requests = new BlockingCollection<string>();
        public readonly BlockingCollection<string> Texts = new BlockingCollection<string>();

        public SilentPeer()
        {
            _listener.Start();
            new Thread(Accept) { IsBackground = true }.Start();
        }

        public string Url { get { return "ws://127.0.0.1:" + ((IPEndPoint)_listener.LocalEndpoint).Port + "/"; } }

        void Accept()
        {
            try
            {
                while (true)
                {
                    TcpClient c = _listener.AcceptTcpClient();
                    lock (_conns) _conns.Add(c);
                    new Thread(() => Serve(c)) { IsBackground = true }.Start();
                }
            }
            catch (SocketException) { }
            catch (ObjectDisposedException) { }
        }

        void Serve(TcpClient c)
        {
            try
            {
                NetworkStream s = c.GetStream();
                var head = new StringBuilder();
                while (!head.ToString().EndsWith("\r\n\r\n"))
                {
                    int b = s.ReadByte();
                    if (b < 0 || head.Length > 16384) return;
                    head.Append((char)b);
                }
                string key = Regex.Match(head.ToString(), @"Sec-WebSocket-Key:\s*(\S+)", RegexOptions.IgnoreCase).Groups[1].Value;
                string accept = Convert.ToBase64String(SHA1.Create().ComputeHash(Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
                byte[] resp = Encoding.ASCII.GetBytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n");
                s.Write(resp, 0, resp.Length);
                Requests.Add(head.ToString());
                while (true)
                {
                    // One client frame (always masked): opcode, length, mask, payload.
                    byte[] h = ReadExactly(s, 2);
                    int len = h[1] & 0x7F;
                    if (len == 126)
                    {
                        byte[] ext = ReadExactly(s, 2);
                        len = (ext[0] << 8) | ext[1];
                    }
                    else if (len == 127)
                    {
                        return; // nothing this long is expected here
                    }
                    byte[] mask = ReadExactly(s, 4);
                    byte[] payload = ReadExactly(s, len);
                    for (int i = 0; i < payload.Length; i++) payload[i] ^= mask[i % 4];
                    int opcode = h[0] & 0x0F;
                    if (opcode == 1) Texts.Add(Encoding.UTF8.GetString(payload));
                    if (opcode == 8) return; // the client's close: drop the connection
                }
            }
            catch (IOException) { }
            catch (ObjectDisposedException) { }
            finally
            {
                c.Close();
            }
        }

        static byte[] ReadExactly(Stream s, int n)
        {
            var buf = new byte[n];
            for (int got = 0; got < n;)
            {
                int r = s.Read(buf, got, n - got);
                if (r <= 0) throw new IOException("closed");
                got += r;
            }
            return buf;
        }

        public void Dispose()
        {
            _listener.Stop();
            lock (_conns) foreach (TcpClient c in _conns) c.Close();
        }
    }

    static void AppwsLoginTimeoutAndHeaders()
    {
        using (var peer = new SilentPeer())
        {
            var o = new AppWebsocketClientOptions { LoginTimeoutMs = 300 };
            o.Headers.Add(new KeyValuePair<string, string>("X-App-Test", "yes"));
            var sw = System.Diagnostics.Stopwatch.StartNew();
            using (var c = AppWebsocketClient.CreatePolled(peer.Url, "myapp", "pw", o))
            {
                try
                {
                    c.WaitConnected(TimeoutMs);
                    throw new Exception("expected LoginFailedException");
                }
                catch (LoginFailedException e)
                {
                    Equal("login timed out: no AppChallengeResult within 300 ms", e.Detail, "reason");
                }
                // Well within the 10 s default: the setting took effect.
                Check(sw.ElapsedMilliseconds >= 250 && sw.ElapsedMilliseconds < 5000, "LoginFailed after " + sw.ElapsedMilliseconds + " ms");
                Equal(AppwsClientEventType.Closed, c.Events(TimeoutMs).Last().Type, "Closed follows");
            }
            string request;
            Check(peer.Requests.TryTake(out request, TimeoutMs), "upgrade request");
            Check(Regex.IsMatch(request, @"\r\nX-App-Test: yes\r\n", RegexOptions.IgnoreCase), "header sent: " + request);
            string first;
            Check(peer.Texts.TryTake(out first, TimeoutMs), "first message");
            Equal("{\"mt\":\"AppChallenge\"}", first, "the client asked for the challenge");
        }
        Equal(Result.InvalidArgument, Throws(() => AppWebsocketClient.CreatePolled("ws://127.0.0.1:1/", "a", "p", new AppWebsocketClientOptions { LoginTimeoutMs = 0 })).Code, "zero login timeout");
        var bad = new AppWebsocketClientOptions();
        bad.Headers.Add(new KeyValuePair<string, string>("Bad Name", "x"));
        Equal(Result.InvalidArgument, Throws(() => AppWebsocketClient.CreatePolled("ws://127.0.0.1:1/", "a", "p", bad)).Code, "bad header name");
    }

    static void AppwsTlsTrust()
    {
        string pki = MakePki();
        Func<string, string> f = name => Path.Combine(pki, name);
        var so = new AppServiceOptions { Echo = true, TlsCertChainPath = f("server.pem"), TlsKeyPath = f("server.key") };
        so.Apps["myapp"] = "pw";
        using (var svc = AppService.CreatePolled(so))
        {
            string url = "wss://localhost:" + svc.Port + "/";
            // Only the CA file is trusted; a client certificate is presented (not asked for here).
            var trusted = new AppWebsocketClientOptions { CaFile = f("ca.pem"), SystemRoots = false, ClientCertChain = f("client.pem"), ClientCertKey = f("client.key") };
            using (var c = AppWebsocketClient.CreatePolled(url, "myapp", "pw", trusted))
            {
                c.WaitConnected(TimeoutMs);
                c.Send("{\"mt\":\"Ping\",\"src\":\"tls\"}");
                AppWebsocketClientEvent ev = c.Poll(TimeoutMs);
                Check(ev != null && ev.Mt == "PingResult" && ev.Src == "tls", "echo over wss");
            }
            // The system roots alone do not know the test CA.
            using (var c = AppWebsocketClient.CreatePolled(url, "myapp", "pw"))
            {
                try
                {
                    c.WaitConnected(TimeoutMs);
                    throw new Exception("expected ConnectException");
                }
                catch (ConnectException e)
                {
                    Equal(Result.CertificateInvalid, e.Code, "untrusted certificate");
                }
            }
        }
        Equal(Result.InvalidArgument, Throws(() => AppWebsocketClient.CreatePolled("wss://localhost:1/", "a", "p", new AppWebsocketClientOptions { SystemRoots = false })).Code, "no root at all");
        var missing = Throws(() => AppWebsocketClient.CreatePolled("wss://localhost:1/", "a", "p", new AppWebsocketClientOptions { ClientCertChain = f("none.pem"), ClientCertKey = f("client.key") }));
        Check(missing.Code == Result.InvalidArgument && missing.Detail.Contains("none.pem"), "missing client certificate: " + missing.Detail);
        var badTls = Throws(() => AppService.CreatePolled(new AppServiceOptions { TlsCertChainPath = f("none.pem"), TlsKeyPath = f("server.key") }));
        Check(badTls.Code == Result.InvalidArgument && badTls.Detail.Contains("none.pem"), "missing service certificate: " + badTls.Detail);
        Directory.Delete(pki, true);
    }

    static void AppwsProxy()
    {
        var so = new AppServiceOptions { Echo = true };
        so.Apps["myapp"] = "pw";
        using (var svc = AppService.CreatePolled(so))
        {
            // "" disables proxies, the environment's included: straight to the service.
            using (var c = AppWebsocketClient.CreatePolled(Url(svc.Port), "myapp", "pw", new AppWebsocketClientOptions { Proxy = "" }))
            {
                c.WaitConnected(TimeoutMs);
            }
            // Through a proxy nobody listens on, the same service is out of reach.
            var o = new AppWebsocketClientOptions { Proxy = "http://127.0.0.1:" + ClosedPort() };
            using (var c = AppWebsocketClient.CreatePolled(Url(svc.Port), "myapp", "pw", o))
            {
                try
                {
                    c.WaitConnected(TimeoutMs);
                    throw new Exception("expected ConnectException");
                }
                catch (ConnectException e)
                {
                    Check(e.Code == Result.ProxyFailed || e.Code == Result.ConnectionRefused, "through the closed proxy: " + e.Code);
                }
            }
        }
        Equal(Result.InvalidArgument, Throws(() => AppWebsocketClient.CreatePolled("ws://127.0.0.1:1/", "a", "p", new AppWebsocketClientOptions { Proxy = "socks5://127.0.0.1:1" })).Code, "unsupported proxy scheme");
    }

    static void BrokerMaxMessage()
    {
        var options = new BrokerOptions();
        options.MaxMessageSize[Listener.Achex] = 1000;
        using (var broker = new Broker(options))
        {
            var ws = ConnectTo(Url(broker.Port()));
            Check(RecvText(ws).StartsWith("{\"SID\":"), "greeting");
            string login = "{\"setID\":\"alice\",\"passwd\":\"a\",\"pad\":\"\"}";
            login = login.Replace("\"pad\":\"\"", "\"pad\":\"" + new string('x', 1000 - login.Length) + "\"");
            Equal(1000, login.Length, "login size");
            // Just under the limit is served as usual...
            Equal("{\"auth\":\"ok\"}", Call(ws, login), "at the limit");
            // ...one byte over it (far below the 64 KiB default) ends the connection with 1009.
            SendMsg(ws, Encoding.UTF8.GetBytes("{\"to\":\"alice\",\"pad\":\"" + new string('y', 1000) + "\"}"), true);
            Equal("<close 1009>", RecvText(ws), "over the limit");
            ws.Dispose();
        }
        var zero = new BrokerOptions();
        zero.MaxMessageSize[Listener.Achex] = 0;
        Equal(Result.InvalidArgument, Throws(() => new Broker(zero)).Code, "size 0");
        var admin = new BrokerOptions();
        admin.MaxMessageSize[Listener.WebtalkAdmin] = 1000;
        Equal(Result.InvalidArgument, Throws(() => new Broker(admin)).Code, "the admin socket is not a WebSocket listener");
    }

    static void BrokerListenerTls()
    {
        string pki = MakePki();
        Func<string, string> f = name => Path.Combine(pki, name);
        var options = new BrokerOptions();
        options.Tls[Listener.Achex] = new ListenerTls(f("server.pem"), f("server.key"));
        using (var broker = new Broker(options))
        using (var c = Client.CreatePolled("wss://localhost:" + broker.Port() + "/", new ClientOptions { CaFile = f("ca.pem") }))
        {
            c.WaitConnected(TimeoutMs);
            Check(NextPolled(c, ClientEventType.Message).Text.StartsWith("{\"SID\":"), "greeting over wss");
            c.Send("{\"setID\":\"alice\",\"passwd\":\"a\"}");
            Equal("{\"auth\":\"ok\"}", NextPolled(c, ClientEventType.Message).Text, "login over wss");
        }
        var missing = new BrokerOptions();
        missing.Tls[Listener.Achex] = new ListenerTls(f("none.pem"), f("server.key"));
        var e = Throws(() => new Broker(missing));
        Check(e.Code == Result.InvalidArgument && e.Detail.Contains("none.pem"), "missing file: " + e.Detail);
        var admin = new BrokerOptions();
        admin.Tls[Listener.WebtalkAdmin] = new ListenerTls(f("server.pem"), f("server.key"));
        Equal(Result.InvalidArgument, Throws(() => new Broker(admin)).Code, "the admin socket is plain TCP");
        Directory.Delete(pki, true);
    }

    /// <summary>Runs <paramref name="fail"/> on another thread and returns what it threw.</summary>
    static WsbException FailOnAnotherThread(Action fail)
    {
        WsbException caught = null;
        var t = new Thread(() => { try { fail(); } catch (WsbException e) { caught = e; } });
        t.Start();
        Check(t.Join(TimeoutMs), "thread finished");
        Check(caught != null, "the call failed");
        return caught;
    }

    static void LastErrorPerObject()
    {
        var so = new AppServiceOptions { Echo = true };
        so.Apps["myapp"] = "pw";
        using (var echo = new Echo())
        using (var svc = AppService.CreatePolled(so))
        using (var appws = AppWebsocketClient.CreatePolled(Url(svc.Port), "myapp", "pw"))
        using (var client = Client.CreatePolled("ws://127.0.0.1:" + echo.Server.Port + "/"))
        using (var broker = new Broker())
        {
            appws.WaitConnected(TimeoutMs);
            client.WaitConnected(TimeoutMs);
            var failures = new List<KeyValuePair<Func<string>, WsbException>>
            {
                new KeyValuePair<Func<string>, WsbException>(echo.Server.LastError, FailOnAnotherThread(() => echo.Server.Send(424242101, "x"))),
                new KeyValuePair<Func<string>, WsbException>(client.LastError, FailOnAnotherThread(() => client.Ping(new byte[200]))),
                new KeyValuePair<Func<string>, WsbException>(appws.LastError, FailOnAnotherThread(() => appws.Decrypt("seed", "not hex"))),
                new KeyValuePair<Func<string>, WsbException>(svc.LastError, FailOnAnotherThread(() => svc.CloseConnection(424242102))),
                new KeyValuePair<Func<string>, WsbException>(broker.LastError, FailOnAnotherThread(() => broker.WebtalkKillUser(7))),
            };
            foreach (var kv in failures)
            {
                Check(kv.Value.Detail.Length > 0, kv.Value.Function + " has a detail");
                // The failure was another thread's: the object's last error is it, this thread's is not.
                Equal(kv.Value.Detail, kv.Key(), kv.Value.Function + ": the object's LastError");
                Check(Library.LastError() != kv.Value.Detail, kv.Value.Function + ": not this thread's");
            }
        }
        var closed = new Broker();
        closed.Dispose();
        try { closed.LastError(); throw new Exception("expected ObjectDisposedException"); }
        catch (ObjectDisposedException) { }
    }
}

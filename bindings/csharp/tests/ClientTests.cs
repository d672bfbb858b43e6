// Tests of Wsbroker.Client, part of the same mono test program as ServerTests.cs. The peer is a
// wsbroker Server (through this binding) that echoes and obeys a few commands; the Python suite
// covers the client against a foreign server (websockets), TLS and proxies.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using Wsbroker;

static partial class ServerTests
{
    static List<KeyValuePair<string, Action>> ClientTestList()
    {
        return new List<KeyValuePair<string, Action>>
        {
            T("client: event type values match the library", ClientEventTypesMatch),
            T("client: callback echo text, binary and 4 MiB", ClientCallbackEcho),
            T("client: queue mode echo; Events() ends after the final Closed", ClientPolledEcho),
            T("client: close codes both ways", ClientCloseCodes),
            T("client: Events() ends at the Closed after Disconnect, reconnection on", ClientDisconnectIsFinal),
            T("client: manual flow control holds messages", ClientManualFlowControl),
            T("client: refused port gives ConnectionRefused", ClientRefused),
            T("client: reconnection attempts are reported; GaveUp is final", ClientReconnect),
            T("client: handler exception rethrown at the next call and by Dispose", ClientHandlerException),
            T("client: errors, modes and userdata release", ClientErrors),
        };
    }

    /// <summary>A wsbroker server as the client's peer: echoes; "/close CODE REASON" closes,
    /// "/burst N" sends N numbered messages, "/headers" answers with the request path.</summary>
    sealed class Peer : IDisposable
    {
        public readonly Server Server;
        public readonly BlockingCollection<ServerEvent> Events = new BlockingCollection<ServerEvent>();

        public Peer(ServerOptions o = null)
        {
            Server = new Server(o, s =>
            {
                s.EventReceived += (sender, ev) => Events.Add(ev);
                s.MessageReceived += (sender, ev) =>
                {
                    var srv = (Server)sender;
                    string t = ev.IsText ? ev.Text : "";
                    if (t.StartsWith("/close "))
                    {
                        string[] parts = t.Split(new[] { ' ' }, 3);
                        srv.CloseConnection(ev.Conn, int.Parse(parts[1]), parts[2]);
                    }
                    else if (t.StartsWith("/burst "))
                    {
                        int n = int.Parse(t.Substring(7));
                        for (int i = 0; i < n; i++) srv.Send(ev.Conn, "m" + i);
                    }
                    else
                    {
                        srv.Send(ev.Conn, ev.Data, 0, ev.Data.Length, ev.IsText);
                    }
                };
            });
        }

        public string Url(string path = "/") { return "ws://127.0.0.1:" + Server.Port + path; }

        public ServerEvent Next(EventType type)
        {
            while (true)
            {
                ServerEvent ev;
                if (!Events.TryTake(out ev, TimeoutMs)) throw new TimeoutException("peer: no " + type + " event");
                if (ev.Type == type) return ev;
            }
        }

        public void Dispose() { Server.Dispose(); }
    }

    /// <summary>Records a callback-mode client's events.</summary>
    sealed class ClientRecorder
    {
        public readonly BlockingCollection<ClientEvent> Events = new BlockingCollection<ClientEvent>();

        public void Attach(Client c) { c.EventReceived += (s, ev) => Events.Add(ev); }

        public ClientEvent Next(ClientEventType type, int timeoutMs = TimeoutMs)
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            while (true)
            {
                ClientEvent ev;
                int left = (int)Math.Max(0, timeoutMs - sw.ElapsedMilliseconds);
                if (!Events.TryTake(out ev, left)) return null;
                if (ev.Type == type) return ev;
            }
        }

        public ClientEvent Must(ClientEventType type)
        {
            ClientEvent ev = Next(type);
            if (ev == null) throw new TimeoutException("client: no " + type + " event");
            return ev;
        }
    }

    static ClientEvent NextPolled(Client c, ClientEventType type)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            ClientEvent ev = c.Poll((int)Math.Max(0, TimeoutMs - sw.ElapsedMilliseconds));
            if (ev == null) throw new TimeoutException("client: no " + type + " event");
            if (ev.Type == type) return ev;
        }
    }

    static int ClosedPort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    // -- tests ------------------------------------------------------------------------------------

    static void ClientEventTypesMatch()
    {
        // The header does not export wsb_client_event_type yet: compare with it when it does, else
        // with the Rust declaration the library is built from.
        string dir = Directory.GetCurrentDirectory();
        while (dir != null && !File.Exists(Path.Combine(dir, "include", "wsbroker.h"))) dir = Path.GetDirectoryName(dir);
        Check(dir != null, "repository root found from " + Directory.GetCurrentDirectory());
        var found = new Dictionary<string, uint>();
        foreach (Match m in Regex.Matches(File.ReadAllText(Path.Combine(dir, "include", "wsbroker.h")), @"\bWSB_CLIENT_EVENT_TYPE_(\w+) = (\d+),"))
            found[m.Groups[1].Value.Replace("_", "").ToLowerInvariant()] = uint.Parse(m.Groups[2].Value);
        if (found.Count == 0)
        {
            string rust = File.ReadAllText(Path.Combine(dir, "src", "ffi", "client.rs"));
            Match body = Regex.Match(rust, @"pub enum wsb_client_event_type \{(.*?)\n\}", RegexOptions.Singleline);
            Check(body.Success, "enum found in src/ffi/client.rs");
            foreach (Match m in Regex.Matches(body.Groups[1].Value, @"^\s*(\w+) = (\d+),", RegexOptions.Multiline))
                found[m.Groups[1].Value.ToLowerInvariant()] = uint.Parse(m.Groups[2].Value);
        }
        var mine = Enum.GetValues(typeof(ClientEventType)).Cast<ClientEventType>().ToDictionary(v => v.ToString().ToLowerInvariant(), v => (uint)v);
        Equal(string.Join(",", found.OrderBy(k => k.Key).Select(k => k.Key + "=" + k.Value)),
              string.Join(",", mine.OrderBy(k => k.Key).Select(k => k.Key + "=" + k.Value)), "client event types");
    }

    static void ClientCallbackEcho()
    {
        var so = new ServerOptions();
        so.Subprotocols.Add("chat");
        using (var peer = new Peer(so))
        {
            var rec = new ClientRecorder();
            var o = new ClientOptions { PingIntervalMs = 0 };
            o.Subprotocols.Add("other");
            o.Subprotocols.Add("chat");
            o.Headers.Add(new KeyValuePair<string, string>("X-Test", "1"));
            using (var c = new Client(peer.Url("/room?x=1"), o, rec.Attach))
            {
                Equal("chat", c.WaitConnected(TimeoutMs), "subprotocol");
                Check(c.IsConnected, "connected");
                Equal("chat", rec.Must(ClientEventType.Connected).Protocol, "event protocol");
                Equal("/room?x=1", peer.Next(EventType.Open).Path, "path at the server");
                Equal("chat", c.WaitConnected(0), "at once when connected");

                Equal(Result.Ok, c.Send("héllo ✓"), "send text");
                var m = rec.Must(ClientEventType.Message);
                Check(m.IsText, "is text");
                Equal("héllo ✓", m.Text, "text echo");

                var bin = new byte[] { 0, 1, 255 };
                c.Send(bin);
                m = rec.Must(ClientEventType.Message);
                Check(!m.IsText && m.Data.SequenceEqual(bin), "binary echo");

                var big = new byte[4 << 20];
                for (int i = 0; i < big.Length; i++) big[i] = (byte)(i * 31 + 7);
                Result r = c.Send(big);
                Check(r == Result.Ok || r == Result.Backpressure, "4 MiB queued: " + r);
                m = rec.Must(ClientEventType.Message);
                Check(m.Data.SequenceEqual(big), "4 MiB echo");

                Equal(Result.Ok, c.Ping(Encoding.UTF8.GetBytes("p1")), "ping");
                Equal("p1", rec.Must(ClientEventType.Pong).Text, "pong payload");
            }
            Equal(1000, peer.Next(EventType.Close).CloseStatus, "Dispose closes with 1000");
        }
    }

    static void ClientPolledEcho()
    {
        using (var peer = new Peer())
        using (var c = Client.CreatePolled(peer.Url(), new ClientOptions { SendResults = true }))
        {
            Check(c.IsPolled, "polled");
            Equal("", c.WaitConnected(TimeoutMs), "no subprotocol");
            c.Send("one");
            c.Send(new byte[] { 1, 2 });
            c.Send("/close 4001 bye now");
            var seen = c.Events(TimeoutMs).ToList(); // ends by itself after the final Closed
            var kinds = seen.Select(e => e.Type).ToList();
            Equal(3, kinds.Count(k => k == ClientEventType.Sent), "three Sent events");
            var msgs = seen.Where(e => e.Type == ClientEventType.Message).ToList();
            Equal(2, msgs.Count, "two echoes");
            Equal("one", msgs[0].Text, "text");
            Check(msgs[1].Data.SequenceEqual(new byte[] { 1, 2 }), "binary");
            Equal(ClientEventType.Closed, kinds.Last(), "Closed last");
            Equal(4001, seen.Last().CloseStatus, "status");
            Equal("bye now", seen.Last().Text, "reason");
            Check(!c.IsConnected, "not connected");
            Equal(0, c.Events(TimeoutMs).Count(), "nothing after the final event");
        }
    }

    static void ClientCloseCodes()
    {
        using (var peer = new Peer())
        {
            var rec = new ClientRecorder();
            using (var c = new Client(peer.Url(), null, rec.Attach))
            {
                c.WaitConnected(TimeoutMs);
                c.Disconnect(4002, "client says bye");
                var closed = rec.Must(ClientEventType.Closed);
                Check(closed.ClosedByHost, "by host");
                Equal(4002, closed.CloseStatus, "own code");
                var at = peer.Next(EventType.Close);
                Equal(4002, at.CloseStatus, "server sees the code");
                Equal("client says bye", at.Text, "server sees the reason");
                Equal(Result.NotConnected, Throws(() => c.Send("late")).Code, "send after close");
                Equal(Result.NotConnected, Throws(() => c.Disconnect()).Code, "disconnect twice");
                Equal(Result.NotConnected, Throws(() => c.WaitConnected(TimeoutMs)).Code, "ended for good");
            }
        }
    }

    static void ClientDisconnectIsFinal()
    {
        // Disconnect stops reconnection, so its Closed is the last event and Events() ends there.
        var o = new ClientOptions { Reconnect = new ReconnectOptions { InitialMs = 50, MaxMs = 100 } };
        using (var peer = new Peer())
        using (var c = Client.CreatePolled(peer.Url(), o))
        {
            c.WaitConnected(TimeoutMs);
            c.Disconnect(4003, "done");
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var seen = c.Events(TimeoutMs).ToList();
            Check(sw.ElapsedMilliseconds < TimeoutMs / 2, "Events ended at Closed: " + sw.ElapsedMilliseconds + " ms");
            Equal(ClientEventType.Closed, seen.Last().Type, "Closed last");
            Check(seen.Last().ClosedByHost, "by host");
            Check(!seen.Any(e => e.Type == ClientEventType.Reconnecting), "no reconnection");
        }
    }

    static void ClientManualFlowControl()
    {
        using (var peer = new Peer())
        using (var c = Client.CreatePolled(peer.Url(), new ClientOptions { ManualComplete = true }))
        {
            c.WaitConnected(TimeoutMs);
            c.Send("/burst 3");
            Equal("m0", NextPolled(c, ClientEventType.Message).Text, "first");
            Check(c.Poll(400) == null, "second held until MessageComplete");
            c.MessageComplete();
            Equal("m1", NextPolled(c, ClientEventType.Message).Text, "second");
            Check(c.Poll(300) == null, "third held");
            c.MessageComplete();
            Equal("m2", NextPolled(c, ClientEventType.Message).Text, "third");
        }
        using (var peer = new Peer())
        {
            var rec = new ClientRecorder();
            using (var c = new Client(peer.Url(), new ClientOptions { ManualComplete = true }, rec.Attach))
            {
                c.WaitConnected(TimeoutMs);
                c.Send("/burst 2");
                Equal("m0", rec.Must(ClientEventType.Message).Text, "callback first");
                Check(rec.Next(ClientEventType.Message, 400) == null, "callback second held");
                c.MessageComplete();
                Equal("m1", rec.Must(ClientEventType.Message).Text, "callback second");
            }
        }
    }

    static void ClientRefused()
    {
        string url = "ws://127.0.0.1:" + ClosedPort() + "/";
        using (var c = Client.CreatePolled(url))
        {
            var evs = c.Events(TimeoutMs).ToList();
            Equal(1, evs.Count, "one event");
            Equal(ClientEventType.Error, evs[0].Type, "Error");
            Equal(Result.ConnectionRefused, evs[0].Error, "code");
            Check(evs[0].Text.Length > 0, "message");
            Equal(Result.ConnectionRefused, evs[0].ToException().Code, "as exception");
        }
        var rec = new ClientRecorder();
        ClientEvent failed = null;
        var failedSet = new ManualResetEventSlim();
        using (var c = new Client(url, null, cl => { rec.Attach(cl); cl.ConnectFailed += (s, e) => { failed = e; failedSet.Set(); }; }))
        {
            try
            {
                c.WaitConnected(TimeoutMs);
                throw new Exception("expected ConnectException");
            }
            catch (ConnectException e)
            {
                Equal(Result.ConnectionRefused, e.Code, "thrown code");
                Check(e.Detail.Length > 0, "detail");
            }
            rec.Must(ClientEventType.Error);
            Check(failedSet.Wait(TimeoutMs) && failed != null && failed.Error == Result.ConnectionRefused, "ConnectFailed event");
        }
    }

    static void ClientReconnect()
    {
        int port = ClosedPort();
        var o = new ClientOptions { Reconnect = new ReconnectOptions { InitialMs = 50, MaxMs = 100, MaxAttempts = 2 } };
        using (var c = Client.CreatePolled("ws://127.0.0.1:" + port + "/", o))
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var seen = c.Events(2000).Select(e => e.Type + (e.Attempt != 0 ? ":" + e.Attempt : "")).ToList();
            // GaveUp ends Events at once (nothing can follow), well before its 2 s idle timeout.
            Equal("Error,Reconnecting:1,Error,Reconnecting:2,Error,GaveUp:2", string.Join(",", seen), "attempts");
            Check(sw.ElapsedMilliseconds < 1500, "Events ended at GaveUp: " + sw.ElapsedMilliseconds + " ms");
            // Nothing can follow GaveUp: waiting for a connection fails at once instead of polling in vain.
            GaveUpEndsWaiting(c);
        }
        var rec = new ClientRecorder();
        using (var c = new Client("ws://127.0.0.1:" + port + "/", o, rec.Attach))
        {
            Equal(2u, rec.Must(ClientEventType.GaveUp).Attempt, "GaveUp in callback mode");
            GaveUpEndsWaiting(c);
        }
        o = new ClientOptions { Reconnect = new ReconnectOptions { InitialMs = 100, MaxMs = 200 } };
        using (var c = Client.CreatePolled("ws://127.0.0.1:" + port + "/", o))
        {
            Equal(1u, NextPolled(c, ClientEventType.Reconnecting).Attempt, "first attempt announced");
            using (var peer = new Peer(new ServerOptions { Bind = "127.0.0.1:" + port }))
            {
                NextPolled(c, ClientEventType.Connected);
                c.Send("again");
                Equal("again", NextPolled(c, ClientEventType.Message).Text, "echo after reconnecting");
            }
            Equal(1001, NextPolled(c, ClientEventType.Closed).CloseStatus, "server going away");
            Equal(1u, NextPolled(c, ClientEventType.Reconnecting).Attempt, "attempts start again");
        }
    }

    static void GaveUpEndsWaiting(Client c)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        WsbException e = Throws(() => c.WaitConnected(TimeoutMs));
        Equal(Result.NotConnected, e.Code, "WaitConnected after GaveUp");
        Check(e.Detail.Contains("gave up after 2 attempts"), "detail: " + e.Detail);
        Check(sw.ElapsedMilliseconds < 1000, "at once, not after the timeout: " + sw.ElapsedMilliseconds + " ms");
    }

    static void ClientHandlerException()
    {
        using (var peer = new Peer())
        {
            var c = new Client(peer.Url(), null, cl => cl.MessageReceived += (s, ev) =>
            {
                if (ev.Text == "boom") throw new BoomException("thrown in a client handler");
            });
            try
            {
                c.WaitConnected(TimeoutMs);
                c.Send("boom");
                var sw = System.Diagnostics.Stopwatch.StartNew();
                BoomException caught = null;
                while (caught == null && sw.ElapsedMilliseconds < TimeoutMs)
                {
                    try { bool _ = c.IsConnected; Thread.Sleep(10); }
                    catch (BoomException b) { caught = b; }
                }
                Check(caught != null, "rethrown");
                Equal("thrown in a client handler", caught.Message, "message");
                Check(c.IsConnected, "client keeps running, exception cleared");
                c.Send("boom");
                Thread.Sleep(300);
            }
            finally
            {
                try
                {
                    c.Dispose();
                    throw new Exception("expected BoomException from Dispose");
                }
                catch (BoomException) { }
            }
        }
    }

    static void ClientErrors()
    {
        int before = Client.LiveRegistrations;
        foreach (string url in new[] { "http://127.0.0.1/", "ws://", "not a url" })
            Equal(Result.InvalidArgument, Throws(() => new Client(url)).Code, "bad url " + url);
        Equal(before, Client.LiveRegistrations, "released when creation fails");
        var bad = new ClientOptions();
        bad.Headers.Add(new KeyValuePair<string, string>("Bad Name", "x"));
        Equal(Result.InvalidArgument, Throws(() => Client.CreatePolled("ws://127.0.0.1:1/", bad)).Code, "bad header");
        Equal(Result.InvalidArgument, Throws(() => Client.CreatePolled("ws://127.0.0.1:1/", new ClientOptions { ConnectTimeoutMs = 0 })).Code, "zero timeout");
        Equal(Result.InvalidArgument, Throws(() => Client.CreatePolled("wss://127.0.0.1:1/", new ClientOptions { CaFile = "/nonexistent/ca.pem" })).Code, "missing CA file");
        using (var peer = new Peer())
        {
            var c = new Client(peer.Url());
            Equal(before + 1, Client.LiveRegistrations, "one registration");
            Equal(Result.NotConnected, Throws(() => c.Send("early")).Code, "before Connected");
            Equal(Result.InvalidState, Throws(() => c.Poll(0)).Code, "poll in callback mode");
            Equal(Result.InvalidState, Throws(() => c.Interrupt()).Code, "interrupt in callback mode");
            c.WaitConnected(TimeoutMs);
            Equal(Result.TooBig, Throws(() => c.Ping(new byte[126])).Code, "ping too big");
            Equal(Result.InvalidUtf8, Throws(() => c.Send(new byte[] { 0xff, 0xfe }, 0, 2, true)).Code, "bad utf-8");
            c.Dispose();
            c.Dispose();
            Equal(before, Client.LiveRegistrations, "released by userdata_free");
            try { bool _ = c.IsConnected; throw new Exception("expected ObjectDisposedException"); }
            catch (ObjectDisposedException) { }
        }
        using (var peer = new Peer())
        using (var c = Client.CreatePolled(peer.Url()))
        {
            c.WaitConnected(TimeoutMs);
            var t = new Timer(_ => c.Interrupt(), null, 200, Timeout.Infinite);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            Equal(0, c.Events().Count(), "Interrupt ends Events() without events");
            Check(sw.ElapsedMilliseconds >= 150 && sw.ElapsedMilliseconds < 5000, "ended by the interrupt");
            t.Dispose();
        }
    }
}

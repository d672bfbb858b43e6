// Lifetime tests, part of the same mono test program as ServerTests.cs: delegates and GCHandles
// hold up under garbage collection during callback traffic, finalizers free undisposed objects,
// and a process exits with objects left open.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net.Sockets;
using System.Reflection;
using System.Threading;
using Wsbroker;

static partial class ServerTests
{
    static List<KeyValuePair<string, Action>> LifetimeTestList()
    {
        return new List<KeyValuePair<string, Action>>
        {
            T("lifetime: callback traffic survives GC.Collect (delegates, GCHandles)", TrafficUnderCollection),
            T("lifetime: an undisposed Server and Client are freed by their finalizers", FinalizersFreeNative),
            T("lifetime: a process exits with callback-mode objects left open", ExitWithOpenObjects),
        };
    }

    /// <summary>Collects garbage as hard as it can until <paramref name="stop"/> is set.</summary>
    static Thread Collector(ManualResetEventSlim stop)
    {
        var t = new Thread(() =>
        {
            while (!stop.IsSet)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                GC.Collect();
            }
        });
        t.IsBackground = true;
        t.Start();
        return t;
    }

    static void TrafficUnderCollection()
    {
        const int N = 300;
        int serverBefore = Server.LiveRegistrations, clientBefore = Client.LiveRegistrations;
        var received = new List<string>();
        var done = new ManualResetEventSlim();
        var stop = new ManualResetEventSlim();
        Thread collector = Collector(stop);
        try
        {
            // The handlers below are referenced only through the binding's objects; the library
            // holds static delegates and a GCHandle per registration.
            using (var server = new Server(null, s => s.MessageReceived += (sender, ev) =>
                ((Server)sender).Send(ev.Conn, ev.Data, 0, ev.Data.Length, ev.IsText)))
            using (var client = new Client("ws://127.0.0.1:" + server.Port + "/", null, c => c.MessageReceived += (sender, ev) =>
            {
                lock (received)
                {
                    received.Add(ev.Text);
                    if (received.Count == N) done.Set();
                }
            }))
            {
                client.WaitConnected(TimeoutMs);
                for (int i = 0; i < N; i++)
                {
                    client.Send("m" + i + new string('x', i));
                    if (i % 50 == 0) Thread.Sleep(5);   // let collections interleave with callbacks
                }
                Check(done.Wait(TimeoutMs * 2), "every echo arrived (" + received.Count + " of " + N + ")");
            }
        }
        finally
        {
            stop.Set();
            collector.Join();
        }
        for (int i = 0; i < N; i++)
            Equal("m" + i + new string('x', i), received[i], "echo " + i + " in order");
        Equal(serverBefore, Server.LiveRegistrations, "server registration released");
        Equal(clientBefore, Client.LiveRegistrations, "client registration released");
    }

    /// <summary>Runs <paramref name="a"/> on a thread that then ends, so no stale stack slot (mono
    /// scans stacks conservatively) keeps what it created reachable.</summary>
    static void OnOwnThread(Action a)
    {
        Exception error = null;
        var t = new Thread(() =>
        {
            try { a(); }
            catch (Exception e) { error = e; }
        });
        t.Start();
        t.Join();
        if (error != null) throw new Exception("on its own thread", error);
    }

    static bool Accepts(int port)
    {
        try
        {
            using (var tcp = new TcpClient())
            {
                tcp.Connect("127.0.0.1", port);
                return true;
            }
        }
        catch (SocketException)
        {
            return false;
        }
    }

    static void CollectUntil(Func<bool> cond, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!cond())
        {
            if (sw.ElapsedMilliseconds > TimeoutMs) throw new TimeoutException(what);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Thread.Sleep(10);
        }
    }

    static void FinalizersFreeNative()
    {
        int serverBefore = Server.LiveRegistrations;
        int port = 0;
        OnOwnThread(() =>
        {
            var s = new Server(null, x => x.MessageReceived += (sender, ev) => ((Server)sender).Send(ev.Conn, "echo"));
            port = s.Port;
        });
        Equal(serverBefore + 1, Server.LiveRegistrations, "registration while the server lives");
        Check(Accepts(port), "the abandoned server still listens");
        // The finalizer frees the native server: the library calls userdata_free and stops listening.
        CollectUntil(() => Server.LiveRegistrations == serverBefore, "server finalized (userdata_free)");
        Check(!Accepts(port), "the finalized server no longer listens");

        using (var peer = new Peer())
        {
            int clientBefore = Client.LiveRegistrations;
            string url = peer.Url();
            var got = new ManualResetEventSlim();
            OnOwnThread(() => new Client(url, null, x => x.MessageReceived += (sender, ev) => got.Set()).WaitConnected(TimeoutMs));
            // The last callback the client's thread ran delivered a message to the abandoned client.
            peer.Server.Send(peer.Next(EventType.Open).Conn, "hello");
            Check(got.Wait(TimeoutMs), "the abandoned client received a message");
            Equal(clientBefore + 1, Client.LiveRegistrations, "registration while the client lives");
            CollectUntil(() => Client.LiveRegistrations == clientBefore, "client finalized (userdata_free)");
            // Freed by the finalizer, the client closed its connection with 1000.
            Equal(1000, peer.Next(EventType.Close).CloseStatus, "the peer sees the finalized client close");
        }
    }

    const string LeaveOpenMode = "--leave-open";

    /// <summary>The child of <see cref="ExitWithOpenObjects"/>: a server and a client in callback
    /// mode, connected and exchanging a message (so library threads have run managed code), left
    /// open when Main returns.</summary>
    static int LeaveOpen()
    {
        var server = new Server(null, s => s.MessageReceived += (sender, ev) => ((Server)sender).Send(ev.Conn, ev.Data, 0, ev.Data.Length, ev.IsText));
        var echoed = new ManualResetEventSlim();
        var client = new Client("ws://127.0.0.1:" + server.Port + "/", null, c => c.MessageReceived += (sender, ev) => echoed.Set());
        client.WaitConnected(TimeoutMs);
        client.Send("hi");
        Check(echoed.Wait(TimeoutMs), "echo");
        Console.WriteLine("leaving " + server.Port);
        GC.KeepAlive(server);
        GC.KeepAlive(client);
        return 0;
    }

    static void ExitWithOpenObjects()
    {
        string mono = Process.GetCurrentProcess().MainModule.FileName;
        string exe = Assembly.GetEntryAssembly().Location;
        var psi = new ProcessStartInfo(mono, "\"" + exe + "\" " + LeaveOpenMode) { UseShellExecute = false, RedirectStandardOutput = true };
        using (Process p = Process.Start(psi))
        {
            string first = p.StandardOutput.ReadLine();
            bool exited = p.WaitForExit(TimeoutMs);
            if (!exited) p.Kill();
            Check(first != null && first.StartsWith("leaving "), "the child ran: " + first);
            Check(exited, "the child exited within " + TimeoutMs + " ms (mono waits for library threads that ran callbacks)");
            Equal(0, p.ExitCode, "child exit status");
            Check(!Accepts(int.Parse(first.Substring(8))), "the child's server is gone");
        }
    }
}

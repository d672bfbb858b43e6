// Wsbroker.Client: the C# binding of the wsb_client API (the friendly layer over Native.g.cs).
// C# 7 at most (it must build with mono's mcs as well as with dotnet).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Wsbroker
{
    /// <summary>A connection attempt failed before it opened (an Error event). <see cref="WsbException.Code"/>
    /// says why (ConnectionRefused, CertificateInvalid, HandshakeFailed, ConnectTimeout, ...),
    /// <see cref="WsbException.Detail"/> is the library's message.</summary>
    public class ConnectException : WsbException
    {
        public ConnectException(Result code, string detail) : base(code, detail, "connect") { }
    }

    /// <summary>Automatic reconnection: delays start at <see cref="InitialMs"/> and double up to
    /// <see cref="MaxMs"/> (±20 % jitter), at most <see cref="MaxAttempts"/> in a row (0: no limit).</summary>
    public sealed class ReconnectOptions
    {
        public uint InitialMs = 500;
        public uint MaxMs = 30000;
        public uint MaxAttempts;
    }

    /// <summary>The C setters of one client configuration type, for
    /// <see cref="ConnectionOptions.ApplyConnection"/>.</summary>
    internal sealed class ConnectionSetters<T>
    {
        public Func<T, byte[], byte[], Result> AddHeader;
        public Func<T, uint, Result> SetConnectTimeoutMs;
        public Func<T, byte[], Result> SetCaFile;
        public Func<T, bool, Result> SetSystemRoots;
        public Func<T, byte[], byte[], Result> SetClientCert;
        public Func<T, bool, Result> SetInsecure;
        public Func<T, byte[], Result> SetProxy;
    }

    /// <summary>The connection settings of <see cref="ClientOptions"/> and
    /// <see cref="AppWebsocketClientOptions"/>; null keeps the library default (10 s connect
    /// timeout, system roots, proxy from the environment, never for loopback hosts).</summary>
    public abstract class ConnectionOptions
    {
        /// <summary>Extra headers of the WebSocket upgrade request (name: token characters).</summary>
        public List<KeyValuePair<string, string>> Headers = new List<KeyValuePair<string, string>>();
        public uint? ConnectTimeoutMs;
        /// <summary>Also trust the CA certificates in this PEM file.</summary>
        public string CaFile;
        /// <summary>Trust the operating system's root certificates (default true). Off and no
        /// <see cref="CaFile"/>: a wss:// URL is refused at creation.</summary>
        public bool? SystemRoots;
        /// <summary>Client certificate chain and key (PEM files), both or neither.</summary>
        public string ClientCertChain;
        public string ClientCertKey;
        /// <summary>Accept any server certificate. For development only.</summary>
        public bool? Insecure;
        /// <summary><c>http://[user:password@]host:port</c>, tunnelled with CONNECT; "" disables
        /// proxies, the environment's included.</summary>
        public string Proxy;

        internal ConnectionOptions() { }

        /// <summary>Applies these settings to <paramref name="cfg"/> through its own setters.</summary>
        internal void ApplyConnection<T>(T cfg, ConnectionSetters<T> s)
        {
            foreach (var h in Headers)
                Check(s.AddHeader, s.AddHeader(cfg, AppWebsocketCrypto.N(h.Key ?? ""), AppWebsocketCrypto.N(h.Value ?? "")));
            if (ConnectTimeoutMs.HasValue)
                Check(s.SetConnectTimeoutMs, s.SetConnectTimeoutMs(cfg, ConnectTimeoutMs.Value));
            if (CaFile != null)
                Check(s.SetCaFile, s.SetCaFile(cfg, AppWebsocketCrypto.N(CaFile)));
            if (SystemRoots.HasValue)
                Check(s.SetSystemRoots, s.SetSystemRoots(cfg, SystemRoots.Value));
            if (ClientCertChain != null || ClientCertKey != null)
                Check(s.SetClientCert, s.SetClientCert(cfg, AppWebsocketCrypto.N(ClientCertChain ?? ""), AppWebsocketCrypto.N(ClientCertKey ?? "")));
            if (Insecure.HasValue)
                Check(s.SetInsecure, s.SetInsecure(cfg, Insecure.Value));
            if (Proxy != null)
                Check(s.SetProxy, s.SetProxy(cfg, AppWebsocketCrypto.N(Proxy)));
        }

        /// <summary>Throws for a failed setter, named after the C function it calls.</summary>
        static void Check(Delegate setter, Result r)
        {
            Library.Check(r, setter.Method.Name);
        }
    }

    /// <summary>Client settings; null keeps the library default (see <see cref="ConnectionOptions"/>;
    /// no reconnection, automatic flow control, no Sent events, 16 MiB messages, 30 s pings).</summary>
    public sealed class ClientOptions : ConnectionOptions
    {
        static readonly ConnectionSetters<ClientConfigHandle> s_connection = new ConnectionSetters<ClientConfigHandle>
        {
            AddHeader = NativeMethods.wsb_client_config_add_header,
            SetConnectTimeoutMs = NativeMethods.wsb_client_config_set_connect_timeout_ms,
            SetCaFile = NativeMethods.wsb_client_config_set_ca_file,
            SetSystemRoots = NativeMethods.wsb_client_config_set_system_roots,
            SetClientCert = NativeMethods.wsb_client_config_set_client_cert,
            SetInsecure = NativeMethods.wsb_client_config_set_insecure,
            SetProxy = NativeMethods.wsb_client_config_set_proxy,
        };

        public List<string> Subprotocols = new List<string>();
        public ReconnectOptions Reconnect;
        /// <summary>Hold each further message until <see cref="Client.MessageComplete"/>.</summary>
        public bool? ManualComplete;
        /// <summary>Report a Sent event for each message once written.</summary>
        public bool? SendResults;
        public ulong? MaxMessageSize;
        public uint? PingIntervalMs;

        internal ClientConfigHandle Build(string url)
        {
            if (url == null)
            {
                throw new ArgumentNullException("url");
            }
            ClientConfigHandle cfg = NativeMethods.wsb_client_config_new(Utf8.ToNative(url));
            if (cfg.IsInvalid)
            {
                throw new WsbException(Result.InvalidArgument, "the URL is not valid UTF-8", "wsb_client_config_new");
            }
            try
            {
                ApplyConnection(cfg, s_connection);
                foreach (string p in Subprotocols)
                    Library.Check(NativeMethods.wsb_client_config_add_subprotocol(cfg, Utf8.ToNative(p ?? "")), "wsb_client_config_add_subprotocol");
                if (Reconnect != null)
                    Library.Check(NativeMethods.wsb_client_config_set_reconnect(cfg, true, Reconnect.InitialMs, Reconnect.MaxMs, Reconnect.MaxAttempts), "wsb_client_config_set_reconnect");
                if (ManualComplete.HasValue)
                    Library.Check(NativeMethods.wsb_client_config_set_manual_complete(cfg, ManualComplete.Value), "wsb_client_config_set_manual_complete");
                if (SendResults.HasValue)
                    Library.Check(NativeMethods.wsb_client_config_set_send_results(cfg, SendResults.Value), "wsb_client_config_set_send_results");
                if (MaxMessageSize.HasValue)
                    Library.Check(NativeMethods.wsb_client_config_set_max_message_size(cfg, new UIntPtr(MaxMessageSize.Value)), "wsb_client_config_set_max_message_size");
                if (PingIntervalMs.HasValue)
                    Library.Check(NativeMethods.wsb_client_config_set_ping_interval_ms(cfg, PingIntervalMs.Value), "wsb_client_config_set_ping_interval_ms");
            }
            catch
            {
                cfg.Dispose();
                throw;
            }
            return cfg;
        }
    }

    /// <summary>One client event, copied out of the library (valid as long as you keep it).</summary>
    /// <remarks><see cref="Data"/> is the message, pong payload, close reason or error message. For
    /// Closed, <see cref="CloseStatus"/> is the server's code, 0 for a close frame without one, the
    /// code wsbroker sent when it failed the connection, the host's own code when
    /// <see cref="ClosedByHost"/>, or -1 when the transport dropped. <see cref="Error"/> is set on
    /// Error, <see cref="Attempt"/> and <see cref="DelayMs"/> on Reconnecting, <see cref="Attempt"/>
    /// (the attempts made) on GaveUp, <see cref="Protocol"/> on Connected.</remarks>
    public sealed class ClientEvent : EventArgs
    {
        public ClientEventType Type { get; private set; }
        public byte[] Data { get; private set; }
        public bool IsText { get; private set; }
        public int CloseStatus { get; private set; }
        public bool ClosedByHost { get; private set; }
        public Result Error { get; private set; }
        public uint Attempt { get; private set; }
        public uint DelayMs { get; private set; }
        public string Protocol { get; private set; }

        /// <summary><see cref="Data"/> decoded as UTF-8 (text messages, reasons, error messages).</summary>
        public string Text { get { return Encoding.UTF8.GetString(Data); } }

        /// <summary>For an Error event, the <see cref="ConnectException"/> it stands for; else null.</summary>
        public ConnectException ToException()
        {
            return Type == ClientEventType.Error ? new ConnectException(Error, Text) : null;
        }

        internal static ClientEvent FromNative(ref NativeClientEvent ev)
        {
            int len = checked((int)ev.Len.ToUInt64());
            var data = new byte[len];
            if (len > 0)
            {
                Marshal.Copy(ev.Data, data, 0, len);
            }
            return new ClientEvent
            {
                Type = (ClientEventType)ev.Kind,
                Data = data,
                IsText = ev.IsText,
                CloseStatus = ev.CloseStatus,
                ClosedByHost = ev.ClosedByHost,
                Error = (Result)ev.Error,
                Attempt = ev.Attempt,
                DelayMs = ev.DelayMs,
                Protocol = Utf8.FromNative(ev.Protocol),
            };
        }
    }

    /// <summary>A WebSocket client (<c>wsb_client</c>) for a <c>ws://</c> or <c>wss://</c> URL.</summary>
    /// <remarks>
    /// It starts connecting in the background at once and never blocks on the network. Created with a
    /// constructor it runs in callback mode: events are raised as C# events on the client's engine
    /// thread (handlers must not block; they may call anything but Dispose). An exception a handler
    /// throws is kept and rethrown by the next call on this client from another thread, or by
    /// <see cref="Dispose"/>. Created with <see cref="CreatePolled"/> it runs in queue mode: call
    /// <see cref="Poll"/> or iterate <see cref="Events"/>. A failed attempt is an Error event;
    /// <see cref="WaitConnected"/> turns it into a thrown <see cref="ConnectException"/>. Send, Ping,
    /// Disconnect, MessageComplete, IsConnected and Interrupt are safe from any thread.
    /// </remarks>
    public sealed class Client : IDisposable
    {
        // Static so the GC never collects a delegate the library still holds.
        static readonly ClientEventCb s_onEvent = EventSink<Client>.OnEvent;
        // Static: a delegate made in the constructor could hold the Client alive through the registration.
        static readonly Action<Client, IntPtr> s_dispatch = (o, ev) => o.Dispatch(ev);

        readonly ClientHandle _handle;
        readonly PendingErrors _pending;
        readonly bool _polled;
        readonly bool _reconnects;
        readonly object _state = new object();
        ClientEvent _outcome; // the latest Connected, Error or Closed
        int _disposed;

        /// <summary>Every event.</summary>
        public event EventHandler<ClientEvent> EventReceived;
        public event EventHandler<ClientEvent> Connected;
        public event EventHandler<ClientEvent> MessageReceived;
        public event EventHandler<ClientEvent> PongReceived;
        public event EventHandler<ClientEvent> Sent;
        public event EventHandler<ClientEvent> Drained;
        public event EventHandler<ClientEvent> Closed;
        /// <summary>A connection attempt failed (<see cref="ClientEvent.Error"/> says why).</summary>
        public event EventHandler<ClientEvent> ConnectFailed;
        public event EventHandler<ClientEvent> Reconnecting;
        /// <summary>Reconnection stopped after <see cref="ClientEvent.Attempt"/> failed attempts in a
        /// row; nothing follows.</summary>
        public event EventHandler<ClientEvent> GaveUp;

        /// <summary>Starts a client in callback mode; <paramref name="subscribe"/> runs before it starts
        /// connecting, so handlers attached there see every event.</summary>
        public Client(string url, ClientOptions options = null, Action<Client> subscribe = null)
            : this(url, options, false, subscribe) { }

        /// <summary>Starts a client in queue mode: events wait for <see cref="Poll"/>.</summary>
        public static Client CreatePolled(string url, ClientOptions options = null)
        {
            return new Client(url, options, true, null);
        }

        Client(string url, ClientOptions options, bool polled, Action<Client> subscribe)
        {
            Library.EnsureCompatible();
            Url = url;
            _polled = polled;
            options = options ?? new ClientOptions();
            _reconnects = options.Reconnect != null;
            if (subscribe != null)
            {
                subscribe(this);
            }
            ClientHandle handle;
            Result r;
            using (ClientConfigHandle cfg = options.Build(url))
            {
                if (polled)
                {
                    r = NativeMethods.wsb_client_new(cfg, null, IntPtr.Zero, null, out handle);
                }
                else
                {
                    _pending = new PendingErrors();
                    IntPtr userdata = EventSink<Client>.Register(this, _pending, s_dispatch);
                    // On failure the library has already released the registration.
                    r = NativeMethods.wsb_client_new(cfg, s_onEvent, userdata, Registrations<Client>.Free, out handle);
                }
            }
            Library.Check(r, "wsb_client_new");
            _handle = ExitRelease.Track(handle);
        }

        /// <summary>Registrations the library still holds (for tests of userdata_free).</summary>
        internal static int LiveRegistrations { get { return Registrations<Client>.Live; } }

        /// <summary>The URL given at creation.</summary>
        public string Url { get; private set; }

        /// <summary>True in queue mode.</summary>
        public bool IsPolled { get { return _polled; } }

        void Dispatch(IntPtr evPtr)
        {
            var native = (NativeClientEvent)Marshal.PtrToStructure(evPtr, typeof(NativeClientEvent));
            ClientEvent ev = ClientEvent.FromNative(ref native);
            Note(ev);
            Raise(ev);
        }

        void Note(ClientEvent ev)
        {
            if (ev.Type == ClientEventType.Connected || ev.Type == ClientEventType.Error || ev.Type == ClientEventType.Closed
                || ev.Type == ClientEventType.GaveUp)
            {
                lock (_state)
                {
                    _outcome = ev;
                    Monitor.PulseAll(_state);
                }
            }
        }

        /// <summary>True when nothing can follow: reconnection gave up, the host closed the connection
        /// (which stops reconnection), or the connection ended and reconnection is off.</summary>
        bool IsFinal(ClientEvent ev)
        {
            if (ev != null && ev.Type == ClientEventType.GaveUp) return true;
            if (ev != null && ev.Type == ClientEventType.Closed && ev.ClosedByHost) return true;
            return !_reconnects && ev != null && (ev.Type == ClientEventType.Closed || ev.Type == ClientEventType.Error);
        }

        void Raise(ClientEvent ev)
        {
            EventHandler<ClientEvent> all = EventReceived;
            if (all != null)
            {
                all(this, ev);
            }
            EventHandler<ClientEvent> h;
            switch (ev.Type)
            {
                case ClientEventType.Connected: h = Connected; break;
                case ClientEventType.Message: h = MessageReceived; break;
                case ClientEventType.Pong: h = PongReceived; break;
                case ClientEventType.Sent: h = Sent; break;
                case ClientEventType.Drain: h = Drained; break;
                case ClientEventType.Closed: h = Closed; break;
                case ClientEventType.Error: h = ConnectFailed; break;
                case ClientEventType.Reconnecting: h = Reconnecting; break;
                case ClientEventType.GaveUp: h = GaveUp; break;
                default: h = null; break;
            }
            if (h != null)
            {
                h(this, ev);
            }
        }

        ClientHandle Live()
        {
            OwnerCalls.EnsureLive(_pending, ref _disposed, "Wsbroker.Client");
            return _handle;
        }

        /// <summary>True between Connected and the end of that connection.</summary>
        public bool IsConnected { get { return NativeMethods.wsb_client_is_connected(Live()); } }

        /// <summary>Waits until the connection opens and returns the subprotocol the server chose ("" if
        /// none); at once when already connected. Throws <see cref="ConnectException"/> when the attempt
        /// fails, <see cref="WsbException"/> (NotConnected) when the connection ended for good, and
        /// <see cref="TimeoutException"/> after <paramref name="timeoutMs"/> (negative: no limit). In
        /// queue mode the events polled on the way (Error, Reconnecting) are consumed.</summary>
        public string WaitConnected(int timeoutMs = -1)
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            Func<int> left = () => timeoutMs < 0 ? -1 : (int)Math.Max(0, timeoutMs - sw.ElapsedMilliseconds);
            lock (_state)
            {
                if (_outcome != null && _outcome.Type == ClientEventType.Connected && IsConnected)
                {
                    return _outcome.Protocol;
                }
                // Polled already: no event can follow the final one, so polling would wait in vain.
                if (_polled && IsFinal(_outcome))
                {
                    throw Ended(_outcome);
                }
            }
            if (_polled)
            {
                while (true)
                {
                    ClientEvent ev = Poll(left());
                    if (ev == null)
                    {
                        throw new TimeoutException("not connected to " + Url + " within " + timeoutMs + " ms");
                    }
                    if (ev.Type == ClientEventType.Connected) return ev.Protocol;
                    if (ev.Type == ClientEventType.Error) throw ev.ToException();
                    if (IsFinal(ev)) throw Ended(ev);
                }
            }
            lock (_state)
            {
                while (true)
                {
                    Live();
                    ClientEvent o = _outcome;
                    if (o != null && o.Type == ClientEventType.Connected && IsConnected) return o.Protocol;
                    if (o != null && o.Type == ClientEventType.Error) throw o.ToException();
                    if (IsFinal(o)) throw Ended(o);
                    int wait = left();
                    if (wait == 0)
                    {
                        throw new TimeoutException("not connected to " + Url + " within " + timeoutMs + " ms");
                    }
                    // Bounded so a Dispose from another thread is noticed.
                    Monitor.Wait(_state, wait < 0 ? 250 : Math.Min(wait, 250));
                }
            }
        }

        /// <summary>What waiting for a connection throws once <paramref name="ev"/>, a final event, has come.</summary>
        static WsbException Ended(ClientEvent ev)
        {
            if (ev.Type == ClientEventType.Error)
            {
                return ev.ToException();
            }
            if (ev.Type == ClientEventType.GaveUp)
            {
                return new WsbException(Result.NotConnected, "reconnection gave up after " + ev.Attempt + " attempts", "connect");
            }
            return new WsbException(Result.NotConnected, "the connection ended (status " + ev.CloseStatus + ") and reconnection is off", "connect");
        }

        /// <summary>Queues a text message. Returns Ok, or Backpressure when queued above the soft limit
        /// (a Drained event follows); throws <see cref="WsbException"/> otherwise (NotConnected before
        /// Connected or after Closed, InvalidUtf8, ...).</summary>
        public Result Send(string text)
        {
            byte[] b = Encoding.UTF8.GetBytes(text ?? "");
            return Send(b, 0, b.Length, true);
        }

        /// <summary>Queues a binary message (see <see cref="Send(string)"/>).</summary>
        public Result Send(byte[] data)
        {
            return Send(data, 0, data == null ? 0 : data.Length, false);
        }

        /// <summary>Queues <paramref name="count"/> bytes of <paramref name="data"/> from
        /// <paramref name="offset"/>, as text (must be UTF-8) or binary.</summary>
        public unsafe Result Send(byte[] data, int offset, int count, bool isText)
        {
            OwnerCalls.CheckRange(data, offset, count);
            ClientHandle h = Live();
            fixed (byte* p = data)
            {
                IntPtr ptr = count == 0 ? IntPtr.Zero : (IntPtr)(p + offset);
                return OwnerCalls.Queued(NativeMethods.wsb_client_send(h, ptr, (UIntPtr)(uint)count, isText), "wsb_client_send");
            }
        }

        /// <summary>Sends a ping (payload at most 125 bytes); a PongReceived event follows.</summary>
        public unsafe Result Ping(byte[] payload = null)
        {
            int count = payload == null ? 0 : payload.Length;
            ClientHandle h = Live();
            fixed (byte* p = payload)
            {
                IntPtr ptr = count == 0 ? IntPtr.Zero : (IntPtr)p;
                return OwnerCalls.Queued(NativeMethods.wsb_client_ping(h, ptr, (UIntPtr)(uint)count), "wsb_client_ping");
            }
        }

        /// <summary>Starts the closing handshake (reason at most 123 UTF-8 bytes) and stops any
        /// reconnection; a Closed event follows. Throws NotConnected without an open connection.</summary>
        public void Disconnect(int code = 1000, string reason = null)
        {
            Library.Check(NativeMethods.wsb_client_close(Live(), code, Utf8.ToNative(reason)), "wsb_client_close");
        }

        /// <summary>Manual flow control: done with the last message, the next may be delivered.</summary>
        public void MessageComplete()
        {
            Library.Check(NativeMethods.wsb_client_message_complete(Live()), "wsb_client_message_complete");
        }

        /// <summary>The detail of the last failed call on this client, from whichever thread made it
        /// ("" if none); <see cref="Library.LastError"/> is the calling thread's instead.</summary>
        public string LastError()
        {
            ClientHandle h = Live();
            return Library.ReadSized((byte[] b, UIntPtr n, out UIntPtr need) => NativeMethods.wsb_client_last_error(h, b, n, out need));
        }

        /// <summary>Queue mode: the next event, waiting up to <paramref name="timeoutMs"/> (negative:
        /// forever); null when the time ran out. Throws <see cref="WsbException"/> with
        /// <c>Result.Interrupted</c> after <see cref="Interrupt"/>. Poll from one thread at a time. In
        /// automatic flow control, polling a message completes it.</summary>
        public ClientEvent Poll(int timeoutMs)
        {
            NativeClientEvent ev;
            if (!OwnerCalls.Polled(NativeMethods.wsb_client_poll(Live(), timeoutMs, out ev), "wsb_client_poll"))
            {
                return null;
            }
            ClientEvent e = ClientEvent.FromNative(ref ev);
            Note(e);
            return e;
        }

        /// <summary>Queue mode: events until none comes for <paramref name="idleTimeoutMs"/> (negative:
        /// no limit), until <see cref="Interrupt"/> or Dispose from another thread, or after the final
        /// event (GaveUp, or Closed or Error while reconnection is off: nothing can follow it).</summary>
        public IEnumerable<ClientEvent> Events(int idleTimeoutMs = -1)
        {
            Func<bool> disposed = () => Volatile.Read(ref _disposed) != 0;
            Func<bool> over = () =>
            {
                lock (_state)
                {
                    return disposed() || IsFinal(_outcome);
                }
            };
            return OwnerCalls.Events(over, disposed, () => Poll(idleTimeoutMs));
        }

        /// <summary>Makes the current (or next) Poll throw Interrupted; Events ends. Queue mode only.</summary>
        public void Interrupt()
        {
            Library.Check(NativeMethods.wsb_client_interrupt(Live()), "wsb_client_interrupt");
        }

        /// <summary>Closes the connection (1000) if open, stops the client's thread and frees it; then
        /// rethrows an exception a handler left behind. Idempotent. Not allowed from the client's own
        /// handlers. To close the connection but keep the client, use <see cref="Disconnect"/>.</summary>
        public void Dispose()
        {
            if (PendingErrors.InCallback)
            {
                throw new WsbException(Result.Reentrant, "Dispose called from a client event handler", "wsb_client_free");
            }
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                if (_polled)
                {
                    // A thread blocked in Poll holds a reference on the handle: wake it so the free
                    // (deferred by the SafeHandle until that reference is released) happens now.
                    NativeMethods.wsb_client_interrupt(_handle);
                }
                _handle.Dispose();
                lock (_state)
                {
                    Monitor.PulseAll(_state);
                }
            }
            if (_pending != null)
            {
                _pending.ThrowIfAny();
            }
        }
    }
}

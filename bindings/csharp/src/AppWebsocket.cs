// Wsbroker.AppWebsocketClient, AppService and AppWebsocketCrypto: the C# binding of the
// wsb_appws_* API (innovaphone AppWebsocket, PROTOCOLS.md §5). C# 7 at most (mono's mcs).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Wsbroker
{
    /// <summary>The connection-free §5.1/§5.2 crypto. Strings are UTF-8 and must not hold NUL.</summary>
    public static class AppWebsocketCrypto
    {
        /// <summary>The §5.1 login digest (64 lowercase hex characters); <paramref name="info"/> is
        /// the exact JSON text sent, or null for none.</summary>
        public static string Digest(string app, string domain, string sip, string guid, string dn, string info, string challenge, string password)
        {
            var buf = new byte[65];
            Library.Check(NativeMethods.wsb_appws_digest(N(app), N(domain), N(sip), N(guid), N(dn), Utf8.ToNative(info), N(challenge), N(password), buf, (UIntPtr)65u), "wsb_appws_digest");
            return Encoding.ASCII.GetString(buf, 0, 64);
        }

        /// <summary>The §5.2 session key (64 lowercase hex characters).</summary>
        public static string SessionKey(string challenge, string password)
        {
            var buf = new byte[65];
            Library.Check(NativeMethods.wsb_appws_session_key(N(challenge), N(password), buf, (UIntPtr)65u), "wsb_appws_session_key");
            return Encoding.ASCII.GetString(buf, 0, 64);
        }

        /// <summary>§5.2 Encrypt: lowercase hex of RC4 (key <c>seed:sessionKey</c>) over the UTF-8 of data.</summary>
        public static string Encrypt(string sessionKey, string seed, string data)
        {
            byte[] d = N(data);
            int n = d.Length - 1;
            var buf = new byte[2 * n + 1];
            Library.Check(NativeMethods.wsb_appws_encrypt(N(sessionKey), N(seed), d, buf, (UIntPtr)(uint)buf.Length), "wsb_appws_encrypt");
            return Encoding.ASCII.GetString(buf, 0, 2 * n);
        }

        /// <summary>§5.2 Decrypt: the raw bytes behind <paramref name="hex"/> (either case).</summary>
        public static byte[] Decrypt(string sessionKey, string seed, string hex)
        {
            byte[] h = N(hex);
            int n = (h.Length - 1) / 2;
            var buf = new byte[n + 1];
            Library.Check(NativeMethods.wsb_appws_decrypt(N(sessionKey), N(seed), h, buf, (UIntPtr)(uint)buf.Length), "wsb_appws_decrypt");
            Array.Resize(ref buf, n);
            return buf;
        }

        /// <summary>§5.2 Hash: lowercase hex SHA-256 of <c>seed:sessionKey:data</c>.</summary>
        public static string Hash(string sessionKey, string seed, string data)
        {
            var buf = new byte[65];
            Library.Check(NativeMethods.wsb_appws_hash(N(sessionKey), N(seed), N(data), buf, (UIntPtr)65u), "wsb_appws_hash");
            return Encoding.ASCII.GetString(buf, 0, 64);
        }

        /// <summary>NUL-terminated UTF-8; a NUL inside (which C would cut at) is refused.</summary>
        internal static byte[] N(string s)
        {
            if (s == null)
            {
                throw new ArgumentNullException("a string argument");
            }
            if (s.IndexOf('\0') >= 0)
            {
                throw new WsbException(Result.InvalidArgument, "a string holds a NUL character", "appws");
            }
            return Utf8.ToNative(s);
        }
    }

    /// <summary>A login identity. <see cref="Info"/> is JSON text, or null for none.</summary>
    public sealed class AppWebsocketIdentity
    {
        public string Domain = "";
        public string Sip = "";
        public string Guid = "00000000000000000000000000000000";
        public string Dn = "Admin";
        public string Info;
    }

    /// <summary>The app service refused the login (a LoginFailed event).</summary>
    public class LoginFailedException : WsbException
    {
        public LoginFailedException(string reason) : base(Result.InvalidState, reason, "login") { }
    }

    /// <summary>AppWebsocket client settings; null keeps the library default (see
    /// <see cref="ConnectionOptions"/>; automatic flow control, no Sent events, no keep-alive, 10 s
    /// login timeout).</summary>
    public sealed class AppWebsocketClientOptions : ConnectionOptions
    {
        static readonly ConnectionSetters<AppwsClientConfigHandle> s_connection = new ConnectionSetters<AppwsClientConfigHandle>
        {
            AddHeader = NativeMethods.wsb_appws_client_config_add_header,
            SetConnectTimeoutMs = NativeMethods.wsb_appws_client_config_set_connect_timeout_ms,
            SetCaFile = NativeMethods.wsb_appws_client_config_set_ca_file,
            SetSystemRoots = NativeMethods.wsb_appws_client_config_set_system_roots,
            SetClientCert = NativeMethods.wsb_appws_client_config_set_client_cert,
            SetInsecure = NativeMethods.wsb_appws_client_config_set_insecure,
            SetProxy = NativeMethods.wsb_appws_client_config_set_proxy,
        };

        /// <summary>Password mode only; default: sip = the app, dn Admin, no info.</summary>
        public AppWebsocketIdentity Identity;
        public bool? ManualComplete;
        public bool? SendResults;
        public uint? KeepAliveMs;
        /// <summary>Time allowed from the WebSocket's opening to AppLoginResult (ms, &gt; 0); when
        /// it passes, LoginFailed says what was still awaited and Closed follows.</summary>
        public uint? LoginTimeoutMs;

        internal AppwsClientConfigHandle Build(string url, string app, string password)
        {
            AppwsClientConfigHandle cfg = NativeMethods.wsb_appws_client_config_new(AppWebsocketCrypto.N(url), AppWebsocketCrypto.N(app), password == null ? null : AppWebsocketCrypto.N(password));
            if (cfg.IsInvalid)
            {
                throw new WsbException(Result.InvalidArgument, "the URL or app is not valid", "wsb_appws_client_config_new");
            }
            try
            {
                if (Identity != null)
                {
                    var i = Identity;
                    Library.Check(NativeMethods.wsb_appws_client_config_set_identity(cfg, AppWebsocketCrypto.N(i.Domain), AppWebsocketCrypto.N(string.IsNullOrEmpty(i.Sip) ? app : i.Sip), AppWebsocketCrypto.N(i.Guid), AppWebsocketCrypto.N(i.Dn), i.Info == null ? null : AppWebsocketCrypto.N(i.Info)), "wsb_appws_client_config_set_identity");
                }
                if (ManualComplete.HasValue)
                    Library.Check(NativeMethods.wsb_appws_client_config_set_manual_complete(cfg, ManualComplete.Value), "wsb_appws_client_config_set_manual_complete");
                if (SendResults.HasValue)
                    Library.Check(NativeMethods.wsb_appws_client_config_set_send_results(cfg, SendResults.Value), "wsb_appws_client_config_set_send_results");
                if (KeepAliveMs.HasValue)
                    Library.Check(NativeMethods.wsb_appws_client_config_set_keep_alive_ms(cfg, KeepAliveMs.Value), "wsb_appws_client_config_set_keep_alive_ms");
                if (LoginTimeoutMs.HasValue)
                    Library.Check(NativeMethods.wsb_appws_client_config_set_login_timeout_ms(cfg, LoginTimeoutMs.Value), "wsb_appws_client_config_set_login_timeout_ms");
                ApplyConnection(cfg, s_connection);
            }
            catch
            {
                cfg.Dispose();
                throw;
            }
            return cfg;
        }
    }

    /// <summary>One AppWebsocket client event, copied out of the library.</summary>
    /// <remarks>Message: <see cref="Json"/>, <see cref="Mt"/>, <see cref="Src"/>. LoginFailed: the
    /// reason in <see cref="Text"/>; Challenge: the challenge in <see cref="Text"/>; Closed: the close
    /// reason or error message in <see cref="Text"/>, <see cref="CloseStatus"/> (-1 when the
    /// transport dropped or never connected), <see cref="ClosedByHost"/>, and <see cref="Error"/>
    /// (why it never connected, else Ok).</remarks>
    public sealed class AppWebsocketClientEvent : EventArgs
    {
        public AppwsClientEventType Type { get; private set; }
        public string Json { get; private set; }
        public string Mt { get; private set; }
        public string Src { get; private set; }
        public string Text { get; private set; }
        public int CloseStatus { get; private set; }
        public bool ClosedByHost { get; private set; }
        public Result Error { get; private set; }

        internal static AppWebsocketClientEvent FromNative(ref NativeAppwsClientEvent ev)
        {
            return new AppWebsocketClientEvent
            {
                Type = (AppwsClientEventType)ev.Kind,
                Json = Utf8.FromNative(ev.Json, checked((int)ev.Len.ToUInt64())),
                Mt = Utf8.FromNative(ev.Mt),
                Src = Utf8.FromNative(ev.Src),
                Text = Utf8.FromNative(ev.Text),
                CloseStatus = ev.CloseStatus,
                ClosedByHost = ev.ClosedByHost,
                Error = (Result)ev.Error,
            };
        }
    }

    /// <summary>An AppWebsocket client (<c>wsb_appws_client</c>) for a URL and an app.</summary>
    /// <remarks>With a password it logs in by itself; with a null password it runs in authenticator
    /// mode (a Challenge event, then <see cref="Authenticate"/>). It connects in the background at
    /// once. Created with a constructor it runs in callback mode: C# events on the client's thread
    /// (handlers must not block; they may call anything but Dispose; an exception they throw is
    /// rethrown by the next call from another thread or by Dispose). Created with
    /// <see cref="CreatePolled"/> it runs in queue mode (<see cref="Poll"/>, <see cref="Events"/>).
    /// Closed comes exactly once and ends the client.</remarks>
    public sealed class AppWebsocketClient : IDisposable
    {
        // Static so the GC never collects a delegate the library still holds.
        static readonly AppwsClientEventCb s_onEvent = EventSink<AppWebsocketClient>.OnEvent;
        // Static: a delegate made in the constructor could hold the AppWebsocketClient alive through the registration.
        static readonly Action<AppWebsocketClient, IntPtr> s_dispatch = (o, ev) => o.Dispatch(ev);

        readonly AppwsClientHandle _handle;
        readonly PendingErrors _pending;
        readonly bool _polled;
        readonly object _state = new object();
        AppWebsocketClientEvent _outcome; // Connected, LoginFailed or Closed
        bool _finished;
        int _disposed;

        public event EventHandler<AppWebsocketClientEvent> EventReceived;
        public event EventHandler<AppWebsocketClientEvent> Connected;
        public event EventHandler<AppWebsocketClientEvent> LoginFailed;
        public event EventHandler<AppWebsocketClientEvent> MessageReceived;
        public event EventHandler<AppWebsocketClientEvent> Sent;
        public event EventHandler<AppWebsocketClientEvent> Closed;
        public event EventHandler<AppWebsocketClientEvent> ChallengeReceived;

        /// <summary>Callback mode; <paramref name="subscribe"/> runs before it starts connecting.</summary>
        public AppWebsocketClient(string url, string app, string password, AppWebsocketClientOptions options = null, Action<AppWebsocketClient> subscribe = null)
            : this(url, app, password, options, false, subscribe) { }

        /// <summary>Queue mode: events wait for <see cref="Poll"/>.</summary>
        public static AppWebsocketClient CreatePolled(string url, string app, string password, AppWebsocketClientOptions options = null)
        {
            return new AppWebsocketClient(url, app, password, options, true, null);
        }

        AppWebsocketClient(string url, string app, string password, AppWebsocketClientOptions options, bool polled, Action<AppWebsocketClient> subscribe)
        {
            Library.EnsureCompatible();
            Url = url;
            _polled = polled;
            if (subscribe != null)
            {
                subscribe(this);
            }
            AppwsClientHandle handle;
            Result r;
            using (AppwsClientConfigHandle cfg = (options ?? new AppWebsocketClientOptions()).Build(url, app, password))
            {
                if (polled)
                {
                    r = NativeMethods.wsb_appws_client_new(cfg, null, IntPtr.Zero, null, out handle);
                }
                else
                {
                    _pending = new PendingErrors();
                    IntPtr userdata = EventSink<AppWebsocketClient>.Register(this, _pending, s_dispatch);
                    // On failure the library has already released the registration.
                    r = NativeMethods.wsb_appws_client_new(cfg, s_onEvent, userdata, Registrations<AppWebsocketClient>.Free, out handle);
                }
            }
            Library.Check(r, "wsb_appws_client_new");
            _handle = ExitRelease.Track(handle);
        }

        internal static int LiveRegistrations { get { return Registrations<AppWebsocketClient>.Live; } }

        public string Url { get; private set; }

        void Dispatch(IntPtr evPtr)
        {
            var native = (NativeAppwsClientEvent)Marshal.PtrToStructure(evPtr, typeof(NativeAppwsClientEvent));
            AppWebsocketClientEvent ev = AppWebsocketClientEvent.FromNative(ref native);
            Note(ev);
            Raise(ev);
        }

        void Note(AppWebsocketClientEvent ev)
        {
            if (ev.Type != AppwsClientEventType.Connected && ev.Type != AppwsClientEventType.LoginFailed && ev.Type != AppwsClientEventType.Closed)
            {
                return;
            }
            lock (_state)
            {
                if (ev.Type == AppwsClientEventType.Closed)
                {
                    _finished = true;
                }
                // A LoginFailed stays the outcome when its Closed follows.
                if (_outcome == null || _outcome.Type != AppwsClientEventType.LoginFailed)
                {
                    _outcome = ev;
                }
                Monitor.PulseAll(_state);
            }
        }

        void Raise(AppWebsocketClientEvent ev)
        {
            EventHandler<AppWebsocketClientEvent> all = EventReceived;
            if (all != null)
            {
                all(this, ev);
            }
            EventHandler<AppWebsocketClientEvent> h;
            switch (ev.Type)
            {
                case AppwsClientEventType.Connected: h = Connected; break;
                case AppwsClientEventType.LoginFailed: h = LoginFailed; break;
                case AppwsClientEventType.Message: h = MessageReceived; break;
                case AppwsClientEventType.Sent: h = Sent; break;
                case AppwsClientEventType.Closed: h = Closed; break;
                case AppwsClientEventType.Challenge: h = ChallengeReceived; break;
                default: h = null; break;
            }
            if (h != null)
            {
                h(this, ev);
            }
        }

        AppwsClientHandle Live()
        {
            OwnerCalls.EnsureLive(_pending, ref _disposed, "Wsbroker.AppWebsocketClient");
            return _handle;
        }

        static Exception OutcomeException(AppWebsocketClientEvent o)
        {
            if (o.Type == AppwsClientEventType.LoginFailed) return new LoginFailedException(o.Text);
            if (o.Error != Result.Ok) return new ConnectException(o.Error, o.Text);
            return new WsbException(Result.NotConnected, "closed before login (status " + o.CloseStatus + ": " + o.Text + ")", "connect");
        }

        /// <summary>True from Connected until the end or <see cref="Disconnect"/>.</summary>
        public bool IsConnected { get { return NativeMethods.wsb_appws_client_is_connected(Live()); } }

        /// <summary>Waits for Connected (the login succeeded). Throws <see cref="LoginFailedException"/>,
        /// <see cref="ConnectException"/>, <see cref="WsbException"/> (NotConnected: closed first) or
        /// <see cref="TimeoutException"/>. In queue mode the events polled on the way are consumed.</summary>
        public void WaitConnected(int timeoutMs = -1)
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            Func<int> left = () => timeoutMs < 0 ? -1 : (int)Math.Max(0, timeoutMs - sw.ElapsedMilliseconds);
            lock (_state)
            {
                if (_outcome != null)
                {
                    if (_outcome.Type == AppwsClientEventType.Connected) return;
                    throw OutcomeException(_outcome);
                }
            }
            if (_polled)
            {
                while (true)
                {
                    AppWebsocketClientEvent ev = Poll(left());
                    if (ev == null) throw new TimeoutException("not logged in to " + Url + " within " + timeoutMs + " ms");
                    if (ev.Type == AppwsClientEventType.Connected) return;
                    if (ev.Type == AppwsClientEventType.LoginFailed || ev.Type == AppwsClientEventType.Closed) throw OutcomeException(ev);
                }
            }
            lock (_state)
            {
                while (true)
                {
                    Live();
                    if (_outcome != null)
                    {
                        if (_outcome.Type == AppwsClientEventType.Connected) return;
                        throw OutcomeException(_outcome);
                    }
                    int wait = left();
                    if (wait == 0) throw new TimeoutException("not logged in to " + Url + " within " + timeoutMs + " ms");
                    Monitor.Wait(_state, wait < 0 ? 250 : Math.Min(wait, 250));
                }
            }
        }

        /// <summary>Sends one JSON message (it must be JSON). Ok or Backpressure; throws NotConnected
        /// before Connected or after Closed, InvalidArgument for non-JSON.</summary>
        public Result Send(string json)
        {
            return OwnerCalls.Queued(NativeMethods.wsb_appws_client_send(Live(), AppWebsocketCrypto.N(json)), "wsb_appws_client_send");
        }

        /// <summary>One text frame without a JSON check (MessageSendText).</summary>
        public unsafe Result SendText(string text)
        {
            byte[] b = Encoding.UTF8.GetBytes(text ?? "");
            AppwsClientHandle h = Live();
            fixed (byte* p = b)
            {
                return OwnerCalls.Queued(NativeMethods.wsb_appws_client_send_text(h, b.Length == 0 ? IntPtr.Zero : (IntPtr)p, (UIntPtr)(uint)b.Length), "wsb_appws_client_send_text");
            }
        }

        /// <summary>Manual flow control: done with the last message, the next may be delivered.</summary>
        public void MessageComplete()
        {
            Library.Check(NativeMethods.wsb_appws_client_message_complete(Live()), "wsb_appws_client_message_complete");
        }

        /// <summary>Authenticator mode: answers the Challenge with a digest and session key computed
        /// elsewhere (<see cref="AppWebsocketCrypto"/>).</summary>
        public void Authenticate(AppWebsocketIdentity id, string digest, string sessionKey)
        {
            Library.Check(NativeMethods.wsb_appws_client_authenticate(Live(), AppWebsocketCrypto.N(id.Domain), AppWebsocketCrypto.N(id.Sip), AppWebsocketCrypto.N(id.Guid), AppWebsocketCrypto.N(id.Dn), id.Info == null ? null : AppWebsocketCrypto.N(id.Info), AppWebsocketCrypto.N(digest), AppWebsocketCrypto.N(sessionKey)), "wsb_appws_client_authenticate");
        }

        /// <summary>§5.2 Encrypt with this login's session key (after Connected).</summary>
        public string Encrypt(string seed, string data)
        {
            byte[] d = AppWebsocketCrypto.N(data);
            int n = d.Length - 1;
            var buf = new byte[2 * n + 1];
            Library.Check(NativeMethods.wsb_appws_client_encrypt(Live(), AppWebsocketCrypto.N(seed), d, buf, (UIntPtr)(uint)buf.Length), "wsb_appws_client_encrypt");
            return Encoding.ASCII.GetString(buf, 0, 2 * n);
        }

        public byte[] Decrypt(string seed, string hex)
        {
            byte[] h = AppWebsocketCrypto.N(hex);
            int n = (h.Length - 1) / 2;
            var buf = new byte[n + 1];
            Library.Check(NativeMethods.wsb_appws_client_decrypt(Live(), AppWebsocketCrypto.N(seed), h, buf, (UIntPtr)(uint)buf.Length), "wsb_appws_client_decrypt");
            Array.Resize(ref buf, n);
            return buf;
        }

        public string Hash(string seed, string data)
        {
            var buf = new byte[65];
            Library.Check(NativeMethods.wsb_appws_client_hash(Live(), AppWebsocketCrypto.N(seed), AppWebsocketCrypto.N(data), buf, (UIntPtr)65u), "wsb_appws_client_hash");
            return Encoding.ASCII.GetString(buf, 0, 64);
        }

        /// <summary>The detail of the last failed call on this client, from whichever thread made it
        /// ("" if none); <see cref="Library.LastError"/> is the calling thread's instead.</summary>
        public string LastError()
        {
            AppwsClientHandle h = Live();
            return Library.ReadSized((byte[] b, UIntPtr n, out UIntPtr need) => NativeMethods.wsb_appws_client_last_error(h, b, n, out need));
        }

        /// <summary>Closes the connection (1000); Closed follows. Throws NotConnected once Closed was reported.</summary>
        public void Disconnect()
        {
            Library.Check(NativeMethods.wsb_appws_client_close(Live()), "wsb_appws_client_close");
        }

        /// <summary>Queue mode: the next event within <paramref name="timeoutMs"/> (negative: forever),
        /// null when the time ran out. Throws Interrupted after <see cref="Interrupt"/>, ShutDown after
        /// Closed was polled.</summary>
        public AppWebsocketClientEvent Poll(int timeoutMs)
        {
            NativeAppwsClientEvent ev;
            if (!OwnerCalls.Polled(NativeMethods.wsb_appws_client_poll(Live(), timeoutMs, out ev), "wsb_appws_client_poll"))
            {
                return null;
            }
            AppWebsocketClientEvent e = AppWebsocketClientEvent.FromNative(ref ev);
            Note(e);
            return e;
        }

        /// <summary>Queue mode: events until Closed (included), an idle timeout, Interrupt or Dispose.</summary>
        public IEnumerable<AppWebsocketClientEvent> Events(int idleTimeoutMs = -1)
        {
            Func<bool> disposed = () => Volatile.Read(ref _disposed) != 0;
            Func<bool> over = () =>
            {
                lock (_state)
                {
                    return _finished || disposed();
                }
            };
            return OwnerCalls.Events(over, disposed, () => Poll(idleTimeoutMs));
        }

        public void Interrupt()
        {
            Library.Check(NativeMethods.wsb_appws_client_interrupt(Live()), "wsb_appws_client_interrupt");
        }

        /// <summary>Closes, stops the client's thread and frees it; then rethrows an exception a
        /// handler left behind. Idempotent. Not allowed from the client's own handlers.</summary>
        public void Dispose()
        {
            if (PendingErrors.InCallback)
            {
                throw new WsbException(Result.Reentrant, "Dispose called from an event handler", "wsb_appws_client_free");
            }
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                if (_polled)
                {
                    NativeMethods.wsb_appws_client_interrupt(_handle);
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

    /// <summary>App-service settings: <see cref="Apps"/> maps app names to passwords (none: every
    /// login fails); <see cref="DomainPasswords"/> a login's domain to a password for any app.
    /// <see cref="Echo"/> answers each message itself (mt + "Result") instead of reporting it.</summary>
    public sealed class AppServiceOptions
    {
        public string Bind;
        public Dictionary<string, string> Apps = new Dictionary<string, string>();
        public Dictionary<string, string> DomainPasswords = new Dictionary<string, string>();
        public bool? ManualComplete;
        public bool? Echo;
        public ulong? MaxMessageSize;
        /// <summary>With <see cref="TlsKeyPath"/>: serve wss:// with this PEM certificate chain (leaf
        /// first). The files are read when the service is created; a bad file throws
        /// <see cref="WsbException"/> InvalidArgument naming it.</summary>
        public string TlsCertChainPath;
        /// <summary>The PEM private key of <see cref="TlsCertChainPath"/>.</summary>
        public string TlsKeyPath;

        internal AppwsServiceConfigHandle Build()
        {
            AppwsServiceConfigHandle cfg = NativeMethods.wsb_appws_service_config_new();
            if (cfg.IsInvalid)
            {
                throw new OutOfMemoryException("wsb_appws_service_config_new");
            }
            try
            {
                if (Bind != null)
                    Library.Check(NativeMethods.wsb_appws_service_config_set_bind(cfg, AppWebsocketCrypto.N(Bind)), "wsb_appws_service_config_set_bind");
                foreach (var a in Apps)
                    Library.Check(NativeMethods.wsb_appws_service_config_add_app(cfg, AppWebsocketCrypto.N(a.Key), AppWebsocketCrypto.N(a.Value)), "wsb_appws_service_config_add_app");
                foreach (var d in DomainPasswords)
                    Library.Check(NativeMethods.wsb_appws_service_config_add_domain_password(cfg, AppWebsocketCrypto.N(d.Key), AppWebsocketCrypto.N(d.Value)), "wsb_appws_service_config_add_domain_password");
                if (ManualComplete.HasValue)
                    Library.Check(NativeMethods.wsb_appws_service_config_set_manual_complete(cfg, ManualComplete.Value), "wsb_appws_service_config_set_manual_complete");
                if (Echo.HasValue)
                    Library.Check(NativeMethods.wsb_appws_service_config_set_echo(cfg, Echo.Value), "wsb_appws_service_config_set_echo");
                if (MaxMessageSize.HasValue)
                    Library.Check(NativeMethods.wsb_appws_service_config_set_max_message_size(cfg, new UIntPtr(MaxMessageSize.Value)), "wsb_appws_service_config_set_max_message_size");
                if (TlsCertChainPath != null || TlsKeyPath != null)
                    Library.Check(NativeMethods.wsb_appws_service_config_set_tls(cfg, Utf8.ToNative(TlsCertChainPath), Utf8.ToNative(TlsKeyPath)), "wsb_appws_service_config_set_tls");
            }
            catch
            {
                cfg.Dispose();
                throw;
            }
            return cfg;
        }
    }

    /// <summary>One app-service event, copied out. Login: App, Domain, Sip, Guid, Dn, Info (JSON
    /// text, "" if none); Message: Data (the JSON text), Mt, Src; Binary: Data; Closed: Data (the
    /// reason), CloseStatus, ClosedByHost.</summary>
    public sealed class AppServiceEvent : EventArgs
    {
        public AppwsServiceEventType Type { get; private set; }
        public ulong Conn { get; private set; }
        public string App { get; private set; }
        public string Domain { get; private set; }
        public string Sip { get; private set; }
        public string Guid { get; private set; }
        public string Dn { get; private set; }
        public string Info { get; private set; }
        public string Mt { get; private set; }
        public string Src { get; private set; }
        public byte[] Data { get; private set; }
        public int CloseStatus { get; private set; }
        public bool ClosedByHost { get; private set; }

        public string Text { get { return Encoding.UTF8.GetString(Data); } }

        internal static AppServiceEvent FromNative(ref NativeAppwsServiceEvent ev)
        {
            int len = checked((int)ev.Len.ToUInt64());
            var data = new byte[len];
            if (len > 0)
            {
                Marshal.Copy(ev.Data, data, 0, len);
            }
            return new AppServiceEvent
            {
                Type = (AppwsServiceEventType)ev.Kind,
                Conn = ev.Conn,
                App = Utf8.FromNative(ev.App),
                Domain = Utf8.FromNative(ev.Domain),
                Sip = Utf8.FromNative(ev.Sip),
                Guid = Utf8.FromNative(ev.Guid),
                Dn = Utf8.FromNative(ev.Dn),
                Info = Utf8.FromNative(ev.Info),
                Mt = Utf8.FromNative(ev.Mt),
                Src = Utf8.FromNative(ev.Src),
                Data = data,
                CloseStatus = ev.CloseStatus,
                ClosedByHost = ev.ClosedByHost,
            };
        }
    }

    /// <summary>An AppWebsocket app service (<c>wsb_appws_service</c>): listens at once
    /// (<see cref="Port"/>), runs the challenge and login itself, and reports sessions. Same callback
    /// and queue modes as <see cref="Server"/>; Reply, Send, CloseConnection, MessageComplete and
    /// Interrupt are safe from any thread.</summary>
    public sealed class AppService : IDisposable
    {
        // Static so the GC never collects a delegate the library still holds.
        static readonly AppwsServiceEventCb s_onEvent = EventSink<AppService>.OnEvent;
        // Static: a delegate made in the constructor could hold the AppService alive through the registration.
        static readonly Action<AppService, IntPtr> s_dispatch = (o, ev) => o.Dispatch(ev);

        readonly AppwsServiceHandle _handle;
        readonly PendingErrors _pending;
        readonly bool _polled;
        int _disposed;

        public event EventHandler<AppServiceEvent> EventReceived;
        public event EventHandler<AppServiceEvent> LoggedIn;
        public event EventHandler<AppServiceEvent> MessageReceived;
        public event EventHandler<AppServiceEvent> BinaryReceived;
        public event EventHandler<AppServiceEvent> Closed;

        public AppService(AppServiceOptions options = null, Action<AppService> subscribe = null) : this(options, false, subscribe) { }

        public static AppService CreatePolled(AppServiceOptions options = null)
        {
            return new AppService(options, true, null);
        }

        AppService(AppServiceOptions options, bool polled, Action<AppService> subscribe)
        {
            Library.EnsureCompatible();
            _polled = polled;
            if (subscribe != null)
            {
                subscribe(this);
            }
            AppwsServiceHandle handle;
            Result r;
            using (AppwsServiceConfigHandle cfg = (options ?? new AppServiceOptions()).Build())
            {
                if (polled)
                {
                    r = NativeMethods.wsb_appws_service_new(cfg, null, IntPtr.Zero, null, out handle);
                }
                else
                {
                    _pending = new PendingErrors();
                    IntPtr userdata = EventSink<AppService>.Register(this, _pending, s_dispatch);
                    // On failure the library has already released the registration.
                    r = NativeMethods.wsb_appws_service_new(cfg, s_onEvent, userdata, Registrations<AppService>.Free, out handle);
                }
            }
            Library.Check(r, "wsb_appws_service_new");
            _handle = ExitRelease.Track(handle);
        }

        internal static int LiveRegistrations { get { return Registrations<AppService>.Live; } }

        void Dispatch(IntPtr evPtr)
        {
            var native = (NativeAppwsServiceEvent)Marshal.PtrToStructure(evPtr, typeof(NativeAppwsServiceEvent));
            Raise(AppServiceEvent.FromNative(ref native));
        }

        void Raise(AppServiceEvent ev)
        {
            EventHandler<AppServiceEvent> all = EventReceived;
            if (all != null)
            {
                all(this, ev);
            }
            EventHandler<AppServiceEvent> h;
            switch (ev.Type)
            {
                case AppwsServiceEventType.Login: h = LoggedIn; break;
                case AppwsServiceEventType.Message: h = MessageReceived; break;
                case AppwsServiceEventType.Binary: h = BinaryReceived; break;
                case AppwsServiceEventType.Closed: h = Closed; break;
                default: h = null; break;
            }
            if (h != null)
            {
                h(this, ev);
            }
        }

        AppwsServiceHandle Live()
        {
            OwnerCalls.EnsureLive(_pending, ref _disposed, "Wsbroker.AppService");
            return _handle;
        }

        public int Port { get { return NativeMethods.wsb_appws_service_port(Live()); } }

        /// <summary>Answers a request: <paramref name="json"/> goes to <paramref name="conn"/> with
        /// <paramref name="src"/> set ("" leaves it out). Ok or Backpressure; throws otherwise.</summary>
        public Result Reply(ulong conn, string src, string json)
        {
            Result r = NativeMethods.wsb_appws_service_reply(Live(), conn, AppWebsocketCrypto.N(src ?? ""), AppWebsocketCrypto.N(json));
            return OwnerCalls.Queued(r, "wsb_appws_service_reply");
        }

        public Result Send(ulong conn, string text)
        {
            byte[] b = Encoding.UTF8.GetBytes(text ?? "");
            return Send(conn, b, true);
        }

        public unsafe Result Send(ulong conn, byte[] data, bool isText = false)
        {
            int n = data == null ? 0 : data.Length;
            AppwsServiceHandle h = Live();
            fixed (byte* p = data)
            {
                Result r = NativeMethods.wsb_appws_service_send(h, conn, n == 0 ? IntPtr.Zero : (IntPtr)p, (UIntPtr)(uint)n, isText);
                return OwnerCalls.Queued(r, "wsb_appws_service_send");
            }
        }

        public void CloseConnection(ulong conn, int code = 1000, string reason = "")
        {
            Library.Check(NativeMethods.wsb_appws_service_close(Live(), conn, code, AppWebsocketCrypto.N(reason ?? "")), "wsb_appws_service_close");
        }

        public void MessageComplete(ulong conn)
        {
            Library.Check(NativeMethods.wsb_appws_service_message_complete(Live(), conn), "wsb_appws_service_message_complete");
        }

        /// <summary>The detail of the last failed call on this service, from whichever thread made it
        /// ("" if none); <see cref="Library.LastError"/> is the calling thread's instead.</summary>
        public string LastError()
        {
            AppwsServiceHandle h = Live();
            return Library.ReadSized((byte[] b, UIntPtr n, out UIntPtr need) => NativeMethods.wsb_appws_service_last_error(h, b, n, out need));
        }

        /// <summary>Queue mode: the next event within <paramref name="timeoutMs"/>, or null.</summary>
        public AppServiceEvent Poll(int timeoutMs)
        {
            NativeAppwsServiceEvent ev;
            if (!OwnerCalls.Polled(NativeMethods.wsb_appws_service_poll(Live(), timeoutMs, out ev), "wsb_appws_service_poll"))
            {
                return null;
            }
            return AppServiceEvent.FromNative(ref ev);
        }

        /// <summary>Queue mode: events until an idle timeout, Interrupt or Dispose.</summary>
        public IEnumerable<AppServiceEvent> Events(int idleTimeoutMs = -1)
        {
            Func<bool> disposed = () => Volatile.Read(ref _disposed) != 0;
            return OwnerCalls.Events(disposed, disposed, () => Poll(idleTimeoutMs));
        }

        public void Interrupt()
        {
            Library.Check(NativeMethods.wsb_appws_service_interrupt(Live()), "wsb_appws_service_interrupt");
        }

        /// <summary>Stops the service and frees it; then rethrows an exception a handler left
        /// behind. Idempotent. Not allowed from the service's own handlers.</summary>
        public void Dispose()
        {
            if (PendingErrors.InCallback)
            {
                throw new WsbException(Result.Reentrant, "Dispose called from an event handler", "wsb_appws_service_free");
            }
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                if (_polled)
                {
                    NativeMethods.wsb_appws_service_interrupt(_handle);
                }
                _handle.Dispose();
            }
            if (_pending != null)
            {
                _pending.ThrowIfAny();
            }
        }
    }
}

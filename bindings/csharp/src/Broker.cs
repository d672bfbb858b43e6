// Wsbroker.Broker: the C# binding of the wsb_broker_* API (listeners, in-process Achex services,
// the webtalk operations). C# 7 at most (mono's mcs).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Wsbroker
{
    /// <summary>Decides a user login: return true to accept; to refuse, return false and optionally
    /// set <paramref name="reason"/> (the client sees <c>{"auth":"failed","error":reason}</c>). Runs
    /// on an I/O thread; must not block. An exception refuses the login and is rethrown by the
    /// broker's next call.</summary>
    public delegate bool AuthHandler(string name, string password, out string reason);

    /// <summary>Broker settings. <see cref="Listeners"/> maps a listener to "IP:PORT" (port 0:
    /// ephemeral) or "off"; by default only Achex runs, on 127.0.0.1:0. <see cref="Credentials"/>
    /// makes logins check that table only; <see cref="Auth"/> decides every login instead.
    /// <see cref="AppwsApps"/> replaces the default demo/demo app.</summary>
    public sealed class BrokerOptions
    {
        public Dictionary<Listener, string> Listeners = new Dictionary<Listener, string>();
        /// <summary>Per WebSocket listener (not WebtalkAdmin, plain TCP): the largest message
        /// accepted, in bytes (default 65536; larger gets close 1009).</summary>
        public Dictionary<Listener, ulong> MaxMessageSize = new Dictionary<Listener, ulong>();
        /// <summary>Per WebSocket listener: serve wss:// with this certificate chain and key (PEM
        /// files, read when the broker is created; a bad file throws InvalidArgument naming it).</summary>
        public Dictionary<Listener, ListenerTls> Tls = new Dictionary<Listener, ListenerTls>();
        public bool? AchexQuiet;
        public Dictionary<string, string> ServiceCredentials = new Dictionary<string, string>();
        public Dictionary<string, string> Credentials = new Dictionary<string, string>();
        public AuthHandler Auth;
        public string WebtalkAdminSecret;
        public Dictionary<string, string> AppwsApps = new Dictionary<string, string>();
    }

    /// <summary>A listener's TLS certificate chain (PEM, leaf first) and its private key (PEM).</summary>
    public sealed class ListenerTls
    {
        public string CertChainPath;
        public string KeyPath;

        public ListenerTls(string certChainPath, string keyPath)
        {
            CertChainPath = certChainPath;
            KeyPath = keyPath;
        }
    }

    /// <summary>One broker event, copied out. ServiceMessage: <see cref="Service"/> (the receiving
    /// SID), <see cref="Sid"/> and <see cref="Name"/> (the sender), <see cref="Data"/> (the stamped
    /// JSON); Login/Logout: Sid, Name, IsService; Join/Leave: Sid, Place, IsHub.</summary>
    public sealed class BrokerEvent : EventArgs
    {
        public BrokerEventType Type { get; private set; }
        public ulong Service { get; private set; }
        public ulong Sid { get; private set; }
        public string Name { get; private set; }
        public string Place { get; private set; }
        public bool IsHub { get; private set; }
        public bool IsService { get; private set; }
        public byte[] Data { get; private set; }

        public string Text { get { return Encoding.UTF8.GetString(Data); } }

        internal static BrokerEvent FromNative(ref NativeBrokerEvent ev)
        {
            int len = checked((int)ev.Len.ToUInt64());
            var data = new byte[len];
            if (len > 0)
            {
                Marshal.Copy(ev.Data, data, 0, len);
            }
            return new BrokerEvent
            {
                Type = (BrokerEventType)ev.Kind,
                Service = ev.Service,
                Sid = ev.Sid,
                Name = Utf8.FromNative(ev.Name),
                Place = Utf8.FromNative(ev.Place),
                IsHub = ev.IsHub,
                IsService = ev.IsService,
                Data = data,
            };
        }
    }

    /// <summary>A running broker (<c>wsb_broker</c>): its listeners serve at once
    /// (<see cref="Port"/>).</summary>
    /// <remarks>ServiceMessage events (and Login/Logout/Join/Leave after
    /// <see cref="SetEvents"/>) are raised as C# events on an I/O thread or inside the Broker call
    /// that caused them; handlers must not block, may call any method but Dispose, and an exception
    /// they throw is rethrown by the next call from another thread or by Dispose. Every method is
    /// safe from any thread.</remarks>
    public sealed class Broker : IDisposable
    {
        // Static so the GC never collects a delegate the library still holds.
        static readonly BrokerEventCb s_onEvent = EventSink<Broker>.OnEvent;
        // Static: a delegate made in the constructor could hold the Broker alive through the registration.
        static readonly Action<Broker, IntPtr> s_dispatch = (o, ev) => o.Dispatch(ev);
        static readonly AuthCb s_onAuth = OnAuth;

        readonly BrokerHandle _handle;
        readonly PendingErrors _pending = new PendingErrors();
        int _disposed;

        public event EventHandler<BrokerEvent> EventReceived;
        public event EventHandler<BrokerEvent> ServiceMessage;
        public event EventHandler<BrokerEvent> Login;
        public event EventHandler<BrokerEvent> Logout;
        public event EventHandler<BrokerEvent> Joined;
        public event EventHandler<BrokerEvent> Left;

        /// <summary>Starts a broker; <paramref name="subscribe"/> runs before it starts serving.</summary>
        public Broker(BrokerOptions options = null, Action<Broker> subscribe = null)
        {
            Library.EnsureCompatible();
            options = options ?? new BrokerOptions();
            if (subscribe != null)
            {
                subscribe(this);
            }
            BrokerHandle handle;
            Result r;
            using (BrokerConfigHandle cfg = NativeMethods.wsb_broker_config_new())
            {
                if (cfg.IsInvalid)
                {
                    throw new OutOfMemoryException("wsb_broker_config_new");
                }
                foreach (var l in options.Listeners)
                    Library.Check(NativeMethods.wsb_broker_config_set_listener(cfg, (uint)l.Key, AppWebsocketCrypto.N(l.Value)), "wsb_broker_config_set_listener");
                foreach (var m in options.MaxMessageSize)
                    Library.Check(NativeMethods.wsb_broker_config_set_max_message(cfg, (uint)m.Key, new UIntPtr(m.Value)), "wsb_broker_config_set_max_message");
                foreach (var t in options.Tls)
                {
                    // null: no TLS on that listener (both paths NULL).
                    ListenerTls tls = t.Value ?? new ListenerTls(null, null);
                    Library.Check(NativeMethods.wsb_broker_config_set_listener_tls(cfg, (uint)t.Key, Utf8.ToNative(tls.CertChainPath), Utf8.ToNative(tls.KeyPath)), "wsb_broker_config_set_listener_tls");
                }
                if (options.AchexQuiet.HasValue)
                    Library.Check(NativeMethods.wsb_broker_config_set_achex_quiet(cfg, options.AchexQuiet.Value), "wsb_broker_config_set_achex_quiet");
                foreach (var c in options.ServiceCredentials)
                    Library.Check(NativeMethods.wsb_broker_config_add_service_credentials(cfg, AppWebsocketCrypto.N(c.Key), AppWebsocketCrypto.N(c.Value)), "wsb_broker_config_add_service_credentials");
                foreach (var c in options.Credentials)
                    Library.Check(NativeMethods.wsb_broker_config_add_credentials(cfg, AppWebsocketCrypto.N(c.Key), AppWebsocketCrypto.N(c.Value)), "wsb_broker_config_add_credentials");
                foreach (var a in options.AppwsApps)
                    Library.Check(NativeMethods.wsb_broker_config_add_appws_app(cfg, AppWebsocketCrypto.N(a.Key), AppWebsocketCrypto.N(a.Value)), "wsb_broker_config_add_appws_app");
                if (options.WebtalkAdminSecret != null)
                    Library.Check(NativeMethods.wsb_broker_config_set_webtalk_admin_secret(cfg, AppWebsocketCrypto.N(options.WebtalkAdminSecret)), "wsb_broker_config_set_webtalk_admin_secret");
                if (options.Auth != null)
                {
                    // The library owns the registration from here (userdata_free), failure included.
                    IntPtr auth = Registrations<Broker>.Add(new AuthBox(options.Auth, _pending));
                    Library.Check(NativeMethods.wsb_broker_config_set_auth_callback(cfg, s_onAuth, auth, Registrations<Broker>.Free), "wsb_broker_config_set_auth_callback");
                }
                IntPtr userdata = EventSink<Broker>.Register(this, _pending, s_dispatch);
                // On failure the library has already released the registration.
                r = NativeMethods.wsb_broker_new(cfg, s_onEvent, userdata, Registrations<Broker>.Free, out handle);
            }
            Library.Check(r, "wsb_broker_new");
            _handle = ExitRelease.Track(handle);
        }

        /// <summary>Registrations (event dispatchers and auth handlers) the library still holds.</summary>
        internal static int LiveRegistrations { get { return Registrations<Broker>.Live; } }

        sealed class AuthBox
        {
            public readonly AuthHandler Handler;
            public readonly PendingErrors Pending;

            public AuthBox(AuthHandler h, PendingErrors pending)
            {
                Handler = h;
                Pending = pending;
            }
        }

        void Dispatch(IntPtr evPtr)
        {
            var native = (NativeBrokerEvent)Marshal.PtrToStructure(evPtr, typeof(NativeBrokerEvent));
            Raise(BrokerEvent.FromNative(ref native));
        }

        static bool OnAuth(IntPtr userdata, IntPtr name, IntPtr password, IntPtr reason, UIntPtr reasonLen)
        {
            AuthBox box = null;
            PendingErrors.Enter();
            try
            {
                box = (AuthBox)GCHandle.FromIntPtr(userdata).Target;
                string why;
                if (box.Handler(Utf8.FromNative(name), Utf8.FromNative(password), out why))
                {
                    return true;
                }
                ulong cap = reasonLen.ToUInt64();
                if (!string.IsNullOrEmpty(why) && reason != IntPtr.Zero && cap > 0)
                {
                    byte[] b = Encoding.UTF8.GetBytes(why.Replace('\0', ' '));
                    int n = (int)Math.Min((ulong)b.Length, cap - 1);
                    // Never cut a UTF-8 sequence in two: back off over continuation bytes.
                    while (n > 0 && n < b.Length && (b[n] & 0xC0) == 0x80)
                    {
                        n--;
                    }
                    Marshal.Copy(b, 0, reason, n);
                    Marshal.WriteByte(reason, n, 0);
                }
                return false;
            }
            catch (Exception e)
            {
                if (box != null)
                {
                    box.Pending.Add(e);
                }
                return false;
            }
            finally
            {
                PendingErrors.Leave();
            }
        }

        void Raise(BrokerEvent ev)
        {
            EventHandler<BrokerEvent> all = EventReceived;
            if (all != null)
            {
                all(this, ev);
            }
            EventHandler<BrokerEvent> h;
            switch (ev.Type)
            {
                case BrokerEventType.ServiceMessage: h = ServiceMessage; break;
                case BrokerEventType.Login: h = Login; break;
                case BrokerEventType.Logout: h = Logout; break;
                case BrokerEventType.Join: h = Joined; break;
                case BrokerEventType.Leave: h = Left; break;
                default: h = null; break;
            }
            if (h != null)
            {
                h(this, ev);
            }
        }

        BrokerHandle Live()
        {
            OwnerCalls.EnsureLive(_pending, ref _disposed, "Wsbroker.Broker");
            return _handle;
        }

        static unsafe Result WithBytes(byte[] b, Func<IntPtr, UIntPtr, Result> call)
        {
            fixed (byte* p = b)
            {
                return call(b.Length == 0 ? IntPtr.Zero : (IntPtr)p, (UIntPtr)(uint)b.Length);
            }
        }

        /// <summary>The port a listener serves on, 0 when it is off.</summary>
        public int Port(Listener listener = Listener.Achex)
        {
            return NativeMethods.wsb_broker_port(Live(), (uint)listener);
        }

        // -- in-process services ------------------------------------------------------------------

        /// <summary>Registers an in-process service under an exclusive Achex name and returns its
        /// SID (InvalidState: name in use).</summary>
        public ulong RegisterService(string name)
        {
            ulong sid;
            Library.Check(NativeMethods.wsb_broker_register_service(Live(), AppWebsocketCrypto.N(name), out sid), "wsb_broker_register_service");
            return sid;
        }

        public void UnregisterService(ulong service)
        {
            Library.Check(NativeMethods.wsb_broker_unregister_service(Live(), service), "wsb_broker_unregister_service");
        }

        /// <summary>Sends a JSON object from <paramref name="service"/> to a name, group or hub,
        /// stamped with FROM/sID (NotFound: unknown name; InvalidArgument: not an object).</summary>
        public void Send(ulong service, Target target, string to, string json)
        {
            BrokerHandle h = Live();
            byte[] t = AppWebsocketCrypto.N(to);
            Library.Check(WithBytes(Encoding.UTF8.GetBytes(json ?? ""), (p, n) => NativeMethods.wsb_broker_send(h, service, (uint)target, t, p, n)), "wsb_broker_send");
        }

        public void SendToSession(ulong service, ulong sid, string json)
        {
            BrokerHandle h = Live();
            Library.Check(WithBytes(Encoding.UTF8.GetBytes(json ?? ""), (p, n) => NativeMethods.wsb_broker_send_to_session(h, service, sid, p, n)), "wsb_broker_send_to_session");
        }

        public void Join(ulong service, string place, bool hub = false)
        {
            Library.Check(NativeMethods.wsb_broker_join(Live(), service, hub, AppWebsocketCrypto.N(place)), "wsb_broker_join");
        }

        public void Leave(ulong service, string place, bool hub = false)
        {
            Library.Check(NativeMethods.wsb_broker_leave(Live(), service, hub, AppWebsocketCrypto.N(place)), "wsb_broker_leave");
        }

        /// <summary>Login/Logout/Join/Leave events on or off (default off).</summary>
        public void SetEvents(bool on)
        {
            Library.Check(NativeMethods.wsb_broker_set_events(Live(), on), "wsb_broker_set_events");
        }

        /// <summary>The detail of the last failed call on this broker, from whichever thread made it
        /// ("" if none); <see cref="Library.LastError"/> is the calling thread's instead.</summary>
        public string LastError()
        {
            BrokerHandle h = Live();
            return Library.ReadSized((byte[] b, UIntPtr n, out UIntPtr need) => NativeMethods.wsb_broker_last_error(h, b, n, out need));
        }

        public BrokerCounts Stats()
        {
            BrokerCounts c;
            Library.Check(NativeMethods.wsb_broker_stats(Live(), out c), "wsb_broker_stats");
            return c;
        }

        // -- webtalk ------------------------------------------------------------------------------

        /// <summary>[newuser]: the new user's id; <paramref name="salt"/> completes the browser's
        /// login, <c>user + "!" + salt</c>.</summary>
        public ulong WebtalkCreateUser(out string salt)
        {
            ulong user;
            var buf = new byte[32];
            Library.Check(NativeMethods.wsb_broker_webtalk_create_user(Live(), out user, buf, (UIntPtr)32u), "wsb_broker_webtalk_create_user");
            int n = Array.IndexOf(buf, (byte)0);
            salt = Encoding.ASCII.GetString(buf, 0, n < 0 ? buf.Length : n);
            return user;
        }

        public void WebtalkKillUser(ulong user)
        {
            Library.Check(NativeMethods.wsb_broker_webtalk_kill_user(Live(), user), "wsb_broker_webtalk_kill_user");
        }

        /// <summary>[whisper]: one text frame to the user's browser, queued while offline
        /// (WouldOverflow when that queue is full).</summary>
        public void WebtalkWhisper(ulong user, string message)
        {
            WebtalkWhisper(user, Encoding.UTF8.GetBytes(message ?? ""));
        }

        /// <summary>[whisper] of raw bytes (a binary frame unless they are UTF-8).</summary>
        public void WebtalkWhisper(ulong user, byte[] message)
        {
            BrokerHandle h = Live();
            Library.Check(WithBytes(message ?? new byte[0], (p, n) => NativeMethods.wsb_broker_webtalk_whisper(h, user, p, n)), "wsb_broker_webtalk_whisper");
        }

        public ulong WebtalkCreateChannel()
        {
            ulong ch;
            Library.Check(NativeMethods.wsb_broker_webtalk_create_channel(Live(), out ch), "wsb_broker_webtalk_create_channel");
            return ch;
        }

        public void WebtalkKillChannel(ulong channel)
        {
            Library.Check(NativeMethods.wsb_broker_webtalk_kill_channel(Live(), channel), "wsb_broker_webtalk_kill_channel");
        }

        public void WebtalkShout(ulong channel, string message)
        {
            WebtalkShout(channel, Encoding.UTF8.GetBytes(message ?? ""));
        }

        public void WebtalkShout(ulong channel, byte[] message)
        {
            BrokerHandle h = Live();
            Library.Check(WithBytes(message ?? new byte[0], (p, n) => NativeMethods.wsb_broker_webtalk_shout(h, channel, p, n)), "wsb_broker_webtalk_shout");
        }

        public void WebtalkJoin(ulong channel, ulong user)
        {
            Library.Check(NativeMethods.wsb_broker_webtalk_join(Live(), channel, user), "wsb_broker_webtalk_join");
        }

        public void WebtalkLeave(ulong channel, ulong user)
        {
            Library.Check(NativeMethods.wsb_broker_webtalk_leave(Live(), channel, user), "wsb_broker_webtalk_leave");
        }

        public void WebtalkStore(string key, string value)
        {
            WebtalkStore(key, Encoding.UTF8.GetBytes(value ?? ""));
        }

        public void WebtalkStore(string key, byte[] value)
        {
            BrokerHandle h = Live();
            byte[] k = AppWebsocketCrypto.N(key);
            Library.Check(WithBytes(value ?? new byte[0], (p, n) => NativeMethods.wsb_broker_webtalk_store(h, k, p, n)), "wsb_broker_webtalk_store");
        }

        public void WebtalkClear(string key)
        {
            Library.Check(NativeMethods.wsb_broker_webtalk_clear(Live(), AppWebsocketCrypto.N(key)), "wsb_broker_webtalk_clear");
        }

        /// <summary>[retrieve]: the stored value, or null when there is none.</summary>
        public byte[] WebtalkRetrieve(string key)
        {
            byte[] k = AppWebsocketCrypto.N(key);
            var buf = new byte[256];
            for (int attempt = 0; attempt < 4; attempt++) // the value may grow between two calls
            {
                UIntPtr needed;
                Result r = NativeMethods.wsb_broker_webtalk_retrieve(Live(), k, buf, (UIntPtr)(uint)buf.Length, out needed);
                if (r == Result.NotFound)
                {
                    return null;
                }
                int need = checked((int)needed.ToUInt64());
                if (r == Result.Ok)
                {
                    Array.Resize(ref buf, Math.Max(need - 1, 0));
                    return buf;
                }
                if (r != Result.BufferTooSmall)
                {
                    Library.Check(r, "wsb_broker_webtalk_retrieve");
                }
                buf = new byte[Math.Max(need, buf.Length * 2)];
            }
            throw new WsbException(Result.BufferTooSmall, "the value kept growing", "wsb_broker_webtalk_retrieve");
        }

        /// <summary>Stops every listener (close 1001) and frees the broker; then rethrows an exception
        /// a handler left behind. Idempotent. Not allowed from the broker's own handlers.</summary>
        public void Dispose()
        {
            if (PendingErrors.InCallback)
            {
                throw new WsbException(Result.Reentrant, "Dispose called from an event handler", "wsb_broker_free");
            }
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                _handle.Dispose();
            }
            _pending.ThrowIfAny();
        }
    }
}

// Wsbroker: the C# binding of libwsbroker (shared parts and the server; Client.cs has the
// client). The P/Invoke declarations, enums, structs and SafeHandles are generated into
// Native.g.cs; this file is the friendly layer over them.
//
// C# 7 at most (it must build with mono's mcs as well as with dotnet).
using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("WsbrokerTests")]

namespace Wsbroker
{
    /// <summary>A <c>wsb_</c> call failed. <see cref="Code"/> is its result, <see cref="Detail"/> the
    /// <c>wsb_last_error</c> text of the calling thread.</summary>
    public class WsbException : Exception
    {
        public Result Code { get; private set; }
        public string Detail { get; private set; }
        public string Function { get; private set; }

        public WsbException(Result code, string detail, string function)
            : base(Format(code, detail, function))
        {
            Code = code;
            Detail = detail ?? "";
            Function = function ?? "";
        }

        static string Format(Result code, string detail, string function)
        {
            string text = string.IsNullOrEmpty(function) ? code.ToString() : function + ": " + code;
            return string.IsNullOrEmpty(detail) ? text : text + " (" + detail + ")";
        }
    }

    /// <summary>libwsbroker could not be loaded, or is not the version this binding was generated from.</summary>
    public class WsbLibraryException : Exception
    {
        public WsbLibraryException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>The loaded library: version, checks and error text.</summary>
    public static class Library
    {
        static readonly object s_lock = new object();
        static bool s_checked;

        /// <summary>The version of the header the binding was generated from.</summary>
        public static string HeaderVersion { get { return NativeMethods.HeaderVersion; } }

        /// <summary>The loaded library's version, "MAJOR.MINOR.PATCH".</summary>
        public static string Version
        {
            get
            {
                try
                {
                    return Utf8.FromNative(NativeMethods.wsb_version());
                }
                catch (DllNotFoundException e)
                {
                    throw new WsbLibraryException(
                        "libwsbroker not found: put libwsbroker.so on LD_LIBRARY_PATH (or next to the program), " +
                        "or map \"wsbroker\" to its path in Wsbroker.dll.config (mono)", e);
                }
            }
        }

        /// <summary>Throws <see cref="WsbLibraryException"/> unless the library is the version of the
        /// header this binding was generated from (checked once; every object creation calls it).</summary>
        public static void EnsureCompatible()
        {
            lock (s_lock)
            {
                if (s_checked)
                {
                    return;
                }
                string v = Version;
                uint n = NativeMethods.wsb_version_number();
                if (v != NativeMethods.HeaderVersion || n != NativeMethods.HeaderVersionNumber)
                {
                    throw new WsbLibraryException(string.Format(
                        "libwsbroker is {0} ({1}); this binding was generated from the {2} ({3}) header",
                        v, n, NativeMethods.HeaderVersion, NativeMethods.HeaderVersionNumber), null);
                }
                s_checked = true;
            }
        }

        /// <summary>The library's description of a result code.</summary>
        public static string ResultString(Result r)
        {
            return Utf8.FromNative(NativeMethods.wsb_result_str((uint)r));
        }

        /// <summary>The detail of the most recent failed <c>wsb_</c> call on this thread ("" if none).</summary>
        public static string LastError()
        {
            return ReadSized(NativeMethods.wsb_last_error);
        }

        /// <summary>A call that copies a string into <c>buf</c> and reports the size it needs, NUL
        /// included (<c>wsb_last_error</c>, <c>wsb_server_last_error</c>, ...).</summary>
        internal delegate Result SizedCall(byte[] buf, UIntPtr len, out UIntPtr needed);

        /// <summary>The string <paramref name="call"/> copies out, growing the buffer while it
        /// reports BufferTooSmall; "" on any other failure.</summary>
        internal static string ReadSized(SizedCall call)
        {
            int size = 256;
            for (int i = 0; i < 3; i++)
            {
                var buf = new byte[size];
                UIntPtr needed;
                Result r = call(buf, (UIntPtr)buf.Length, out needed);
                if (r == Result.Ok)
                {
                    int len = Array.IndexOf(buf, (byte)0);
                    return Encoding.UTF8.GetString(buf, 0, len < 0 ? buf.Length : len);
                }
                if (r != Result.BufferTooSmall)
                {
                    return "";
                }
                size = Math.Max((int)needed.ToUInt64(), size * 2);
            }
            return "";
        }

        /// <summary>Returns <c>Result.Ok</c>; throws <see cref="WsbException"/> for anything else.</summary>
        internal static Result Check(Result r, string function)
        {
            if (r != Result.Ok)
            {
                throw new WsbException(r, LastError(), function);
            }
            return r;
        }
    }

    internal static class Utf8
    {
        /// <summary>NUL-terminated UTF-8, or null for null.</summary>
        public static byte[] ToNative(string s)
        {
            if (s == null)
            {
                return null;
            }
            int n = Encoding.UTF8.GetByteCount(s);
            var b = new byte[n + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, b, 0);
            return b;
        }

        public static string FromNative(IntPtr p)
        {
            if (p == IntPtr.Zero)
            {
                return "";
            }
            int len = 0;
            while (Marshal.ReadByte(p, len) != 0)
            {
                len++;
            }
            return FromNative(p, len);
        }

        public static string FromNative(IntPtr p, int len)
        {
            if (len == 0)
            {
                return "";
            }
            var b = new byte[len];
            Marshal.Copy(p, b, 0, len);
            return Encoding.UTF8.GetString(b);
        }
    }

    /// <summary>Keeps exceptions thrown by user code on a library thread until the owner's next
    /// call from another thread rethrows them (a managed exception must never unwind into C).</summary>
    internal sealed class PendingErrors
    {
        const int MaxKept = 32;
        readonly List<ExceptionDispatchInfo> _errors = new List<ExceptionDispatchInfo>();

        [ThreadStatic] static int t_callbackDepth;

        public static bool InCallback { get { return t_callbackDepth > 0; } }

        public static void Enter() { t_callbackDepth++; }

        public static void Leave() { t_callbackDepth--; }

        public void Add(Exception e)
        {
            lock (_errors)
            {
                if (_errors.Count < MaxKept)
                {
                    _errors.Add(ExceptionDispatchInfo.Capture(e));
                }
            }
        }

        /// <summary>Rethrows the first kept exception (with its original stack), unless on a callback thread.</summary>
        public void ThrowIfAny()
        {
            if (InCallback)
            {
                return;
            }
            ExceptionDispatchInfo first = null;
            lock (_errors)
            {
                if (_errors.Count > 0)
                {
                    first = _errors[0];
                    _errors.Clear();
                }
            }
            if (first != null)
            {
                first.Throw();
            }
        }
    }

    /// <summary>The calls every owner (Server, Client, AppWebsocketClient, AppService, Broker)
    /// makes the same way.</summary>
    internal static class OwnerCalls
    {
        /// <summary>The check before each call on an owner: first rethrow what a handler left behind,
        /// then refuse once disposed.</summary>
        public static void EnsureLive(PendingErrors pending, ref int disposed, string name)
        {
            if (pending != null)
            {
                pending.ThrowIfAny();
            }
            if (Volatile.Read(ref disposed) != 0)
            {
                throw new ObjectDisposedException(name);
            }
        }

        /// <summary>Ok, or Backpressure (queued above the soft limit); throws <see cref="WsbException"/>
        /// for anything else.</summary>
        public static Result Queued(Result r, string function)
        {
            return r == Result.Backpressure ? r : Library.Check(r, function);
        }

        /// <summary>A poll's result: true when an event came, false when the time ran out; throws
        /// <see cref="WsbException"/> for anything else (Interrupted, ShutDown, ...).</summary>
        public static bool Polled(Result r, string function)
        {
            if (r == Result.Timeout)
            {
                return false;
            }
            Library.Check(r, function);
            return true;
        }

        public static void CheckRange(byte[] data, int offset, int count)
        {
            int len = data == null ? 0 : data.Length;
            if (offset < 0 || count < 0 || offset > len - count)
            {
                throw new ArgumentOutOfRangeException("offset/count", "outside the array");
            }
        }

        /// <summary>Queue mode's Events: <paramref name="poll"/> until it returns null (the idle
        /// timeout), is interrupted, or <paramref name="over"/> says nothing more can come (disposed,
        /// or the final event was seen). A failure after Dispose from another thread ends it too.</summary>
        public static IEnumerable<T> Events<T>(Func<bool> over, Func<bool> disposed, Func<T> poll) where T : class
        {
            while (true)
            {
                T ev;
                try
                {
                    if (over())
                    {
                        yield break;
                    }
                    ev = poll();
                }
                catch (WsbException e)
                {
                    if (e.Code == Result.Interrupted || disposed())
                    {
                        yield break;
                    }
                    throw;
                }
                catch (ObjectDisposedException)
                {
                    yield break;
                }
                if (ev == null)
                {
                    yield break;
                }
                yield return ev;
            }
        }
    }

    /// <summary>Frees, when the process exits, the native objects nobody disposed. Without it mono
    /// hangs at exit: it waits for every thread that ever ran managed code, which includes each
    /// library thread that delivered a callback, and such a thread ends only when its object is
    /// freed (finalizers run after that wait). Held weakly, so finalizers still free objects that
    /// become unreachable earlier.</summary>
    internal static class ExitRelease
    {
        static readonly List<WeakReference<SafeHandle>> s_open = new List<WeakReference<SafeHandle>>();
        static int s_pruneAt = 16;
        static bool s_hooked;

        /// <summary>Returns <paramref name="handle"/>, now released at exit if still open.</summary>
        public static T Track<T>(T handle) where T : SafeHandle
        {
            lock (s_open)
            {
                if (!s_hooked)
                {
                    AppDomain.CurrentDomain.ProcessExit += (sender, e) => ReleaseAll();
                    s_hooked = true;
                }
                if (s_open.Count >= s_pruneAt)
                {
                    s_open.RemoveAll(w => Open(w) == null);
                    s_pruneAt = Math.Max(16, s_open.Count * 2);
                }
                s_open.Add(new WeakReference<SafeHandle>(handle));
            }
            return handle;
        }

        static SafeHandle Open(WeakReference<SafeHandle> w)
        {
            SafeHandle h;
            return w.TryGetTarget(out h) && !h.IsClosed ? h : null;
        }

        static void ReleaseAll()
        {
            List<SafeHandle> open;
            lock (s_open)
            {
                open = s_open.Select(Open).Where(h => h != null).ToList();
                s_open.Clear();
            }
            foreach (SafeHandle h in open)
            {
                h.Dispose();
            }
        }
    }

    /// <summary>The GCHandles one owner type (Server, Client, ...) gives the library as callback
    /// userdata, counted so tests can check that userdata_free releases every one.</summary>
    internal static class Registrations<TOwner>
    {
        static int s_live;

        /// <summary>The userdata_free of every registration of this owner type; static so the GC
        /// never collects a delegate the library still holds.</summary>
        public static readonly UserdataFreeCb Free = FreeUserdata;

        public static int Live { get { return Volatile.Read(ref s_live); } }

        /// <summary>A new registration. The library releases it through <see cref="Free"/> from the
        /// call that takes it on, that call's failure included.</summary>
        public static IntPtr Add(object target)
        {
            var gc = GCHandle.Alloc(target);
            Interlocked.Increment(ref s_live);
            return GCHandle.ToIntPtr(gc);
        }

        static void FreeUserdata(IntPtr userdata)
        {
            GCHandle.FromIntPtr(userdata).Free();
            Interlocked.Decrement(ref s_live);
        }
    }

    /// <summary>What a callback-mode owner's event userdata points to: a weak link, so an undisposed
    /// owner can still be collected (its SafeHandle finalizer then frees the native handle, which
    /// releases this registration).</summary>
    internal sealed class EventSink<TOwner> where TOwner : class
    {
        readonly WeakReference<TOwner> _owner;
        readonly PendingErrors _pending;
        readonly Action<TOwner, IntPtr> _dispatch;

        EventSink(TOwner owner, PendingErrors pending, Action<TOwner, IntPtr> dispatch)
        {
            _owner = new WeakReference<TOwner>(owner);
            _pending = pending;
            _dispatch = dispatch;
        }

        /// <summary>The userdata for <paramref name="owner"/>: <paramref name="dispatch"/> gets each
        /// event pointer while the owner lives, and what it throws is kept in <paramref name="pending"/>.
        /// <paramref name="dispatch"/> must not capture the owner (that would keep it alive).</summary>
        public static IntPtr Register(TOwner owner, PendingErrors pending, Action<TOwner, IntPtr> dispatch)
        {
            return Registrations<TOwner>.Add(new EventSink<TOwner>(owner, pending, dispatch));
        }

        /// <summary>The event callback of every owner type (each owner's static <c>cb</c> delegate
        /// wraps this).</summary>
        /// <remarks>The owner is touched only inside <see cref="Deliver"/>, and <see cref="Scrub"/> then
        /// overwrites the argument and return registers: mono (hybrid suspend, its default) keeps the
        /// registers a library thread had when it left managed code and scans them conservatively
        /// until that thread comes back, so an owner left in one would never be collected and its
        /// finalizer would never free the native object.</remarks>
        public static void OnEvent(IntPtr userdata, IntPtr handle, IntPtr ev)
        {
            PendingErrors.Enter();
            try
            {
                Deliver(userdata, ev);
            }
            finally
            {
                PendingErrors.Leave();
            }
            Scrub(null, null, null, null, null, null);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        static void Deliver(IntPtr userdata, IntPtr ev)
        {
            EventSink<TOwner> sink = null;
            try
            {
                sink = (EventSink<TOwner>)GCHandle.FromIntPtr(userdata).Target;
                TOwner owner;
                if (sink._owner.TryGetTarget(out owner))
                {
                    sink._dispatch(owner, ev);
                }
            }
            catch (Exception e)
            {
                if (sink != null)
                {
                    sink._pending.Add(e);
                }
            }
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        static object Scrub(object a, object b, object c, object d, object e, object f)
        {
            return null;
        }
    }

    /// <summary>Server settings; null keeps the library default (see the README table). Times in
    /// milliseconds, sizes in bytes, as in the C API.</summary>
    public sealed class ServerOptions
    {
        public string Bind = "127.0.0.1:0";
        public uint? Threads;
        public ulong? MaxMessageSize;
        public ulong? MaxFrameSize;
        public uint? HandshakeTimeoutMs;
        public uint? PingIntervalMs;
        public uint? IdleTimeoutMs;
        public uint? CloseTimeoutMs;
        public uint? MaxConnections;
        public ulong? OutboundSoftLimit;
        public ulong? OutboundHardLimit;
        public bool? RefuseOnOverflow;
        public List<string> AllowedOrigins = new List<string>();
        public List<string> Subprotocols = new List<string>();
        public string Path;
        public uint? EventQueueCapacity;
        /// <summary>With <see cref="TlsKeyPath"/>: serve wss:// with this PEM certificate chain (leaf
        /// first). The files are read when the server is created; a bad file throws
        /// <see cref="WsbException"/> InvalidArgument naming it.</summary>
        public string TlsCertChainPath;
        /// <summary>The PEM private key of <see cref="TlsCertChainPath"/>.</summary>
        public string TlsKeyPath;

        internal ServerConfigHandle Build()
        {
            ServerConfigHandle cfg = NativeMethods.wsb_server_config_new();
            if (cfg.IsInvalid)
            {
                throw new OutOfMemoryException("wsb_server_config_new");
            }
            try
            {
                Library.Check(NativeMethods.wsb_server_config_set_bind(cfg, Utf8.ToNative(Bind ?? "127.0.0.1:0")), "wsb_server_config_set_bind");
                if (Threads.HasValue)
                    Library.Check(NativeMethods.wsb_server_config_set_threads(cfg, Threads.Value), "wsb_server_config_set_threads");
                if (MaxMessageSize.HasValue)
                    Library.Check(NativeMethods.wsb_server_config_set_max_message_size(cfg, new UIntPtr(MaxMessageSize.Value)), "wsb_server_config_set_max_message_size");
                if (MaxFrameSize.HasValue)
                    Library.Check(NativeMethods.wsb_server_config_set_max_frame_size(cfg, new UIntPtr(MaxFrameSize.Value)), "wsb_server_config_set_max_frame_size");
                if (HandshakeTimeoutMs.HasValue)
                    Library.Check(NativeMethods.wsb_server_config_set_handshake_timeout_ms(cfg, HandshakeTimeoutMs.Value), "wsb_server_config_set_handshake_timeout_ms");
                if (PingIntervalMs.HasValue)
                    Library.Check(NativeMethods.wsb_server_config_set_ping_interval_ms(cfg, PingIntervalMs.Value), "wsb_server_config_set_ping_interval_ms");
                if (IdleTimeoutMs.HasValue)
                    Library.Check(NativeMethods.wsb_server_config_set_idle_timeout_ms(cfg, IdleTimeoutMs.Value), "wsb_server_config_set_idle_timeout_ms");
                if (CloseTimeoutMs.HasValue)
                    Library.Check(NativeMethods.wsb_server_config_set_close_timeout_ms(cfg, CloseTimeoutMs.Value), "wsb_server_config_set_close_timeout_ms");
                if (MaxConnections.HasValue)
                    Library.Check(NativeMethods.wsb_server_config_set_max_connections(cfg, MaxConnections.Value), "wsb_server_config_set_max_connections");
                if (OutboundSoftLimit.HasValue || OutboundHardLimit.HasValue)
                {
                    // The C setter takes both; the documented defaults fill the one not given.
                    ulong soft = OutboundSoftLimit ?? (1UL << 20);
                    ulong hard = OutboundHardLimit ?? (64UL << 20);
                    Library.Check(NativeMethods.wsb_server_config_set_outbound_limits(cfg, new UIntPtr(soft), new UIntPtr(hard)), "wsb_server_config_set_outbound_limits");
                }
                if (RefuseOnOverflow.HasValue)
                    Library.Check(NativeMethods.wsb_server_config_set_refuse_on_overflow(cfg, RefuseOnOverflow.Value), "wsb_server_config_set_refuse_on_overflow");
                foreach (string o in AllowedOrigins)
                    Library.Check(NativeMethods.wsb_server_config_add_allowed_origin(cfg, Utf8.ToNative(o)), "wsb_server_config_add_allowed_origin");
                foreach (string p in Subprotocols)
                    Library.Check(NativeMethods.wsb_server_config_add_subprotocol(cfg, Utf8.ToNative(p)), "wsb_server_config_add_subprotocol");
                if (Path != null)
                    Library.Check(NativeMethods.wsb_server_config_set_path(cfg, Utf8.ToNative(Path)), "wsb_server_config_set_path");
                if (EventQueueCapacity.HasValue)
                    Library.Check(NativeMethods.wsb_server_config_set_event_queue_capacity(cfg, EventQueueCapacity.Value), "wsb_server_config_set_event_queue_capacity");
                if (TlsCertChainPath != null || TlsKeyPath != null)
                    Library.Check(NativeMethods.wsb_server_config_set_tls(cfg, Utf8.ToNative(TlsCertChainPath), Utf8.ToNative(TlsKeyPath)), "wsb_server_config_set_tls");
            }
            catch
            {
                cfg.Dispose();
                throw;
            }
            return cfg;
        }
    }

    /// <summary>One server event, copied out of the library (valid as long as you keep it).</summary>
    /// <remarks><see cref="Data"/> is the message, ping or pong payload, or the close reason. For
    /// Close, <see cref="CloseStatus"/> is the peer's code, 0 for a close frame without one, the code
    /// wsbroker sent when it failed the connection, the host's own code when
    /// <see cref="ClosedByHost"/>, or -1 when the transport dropped.</remarks>
    public sealed class ServerEvent : EventArgs
    {
        public EventType Type { get; private set; }
        public ulong Conn { get; private set; }
        public byte[] Data { get; private set; }
        public bool IsText { get; private set; }
        public int CloseStatus { get; private set; }
        public bool ClosedByHost { get; private set; }
        public string RemoteAddr { get; private set; }
        public string Path { get; private set; }
        public string Protocol { get; private set; }

        /// <summary><see cref="Data"/> decoded as UTF-8 (text messages, close reasons).</summary>
        public string Text { get { return Encoding.UTF8.GetString(Data); } }

        internal static ServerEvent FromNative(ref NativeEvent ev)
        {
            int len = checked((int)ev.Len.ToUInt64());
            var data = new byte[len];
            if (len > 0)
            {
                Marshal.Copy(ev.Data, data, 0, len);
            }
            return new ServerEvent
            {
                Type = (EventType)ev.Kind,
                Conn = ev.Conn,
                Data = data,
                IsText = ev.IsText,
                CloseStatus = ev.CloseStatus,
                ClosedByHost = ev.ClosedByHost,
                RemoteAddr = Utf8.FromNative(ev.RemoteAddr),
                Path = Utf8.FromNative(ev.Path),
                Protocol = Utf8.FromNative(ev.Protocol),
            };
        }
    }

    /// <summary>A running WebSocket server (<c>wsb_server</c>).</summary>
    /// <remarks>
    /// Created with a constructor it runs in callback mode: events are raised as C# events on a
    /// library I/O thread (handlers must not block; they may call anything but Dispose). An exception
    /// a handler throws is kept and rethrown by the next call on this server from another thread, or
    /// by <see cref="Dispose"/>. Created with <see cref="CreatePolled"/> it runs in queue mode: call
    /// <see cref="Poll"/> or iterate <see cref="Events"/>. Send, Ping, CloseConnection, IsValid,
    /// Port, GetStats and Interrupt are safe from any thread.
    /// </remarks>
    public sealed class Server : IDisposable
    {
        // Static so the GC never collects a delegate the library still holds.
        static readonly ServerEventCb s_onEvent = EventSink<Server>.OnEvent;
        // Static: a delegate made in the constructor could hold the Server alive through the registration.
        static readonly Action<Server, IntPtr> s_dispatch = (o, ev) => o.Dispatch(ev);

        readonly ServerHandle _handle;
        readonly PendingErrors _pending;
        readonly bool _polled;
        int _disposed;

        /// <summary>Every event.</summary>
        public event EventHandler<ServerEvent> EventReceived;
        public event EventHandler<ServerEvent> Opened;
        public event EventHandler<ServerEvent> MessageReceived;
        public event EventHandler<ServerEvent> PingReceived;
        public event EventHandler<ServerEvent> PongReceived;
        public event EventHandler<ServerEvent> Drained;
        public event EventHandler<ServerEvent> Closed;

        /// <summary>Starts a server in callback mode.</summary>
        public Server(ServerOptions options = null) : this(options, null) { }

        /// <summary>Starts a server in callback mode; <paramref name="subscribe"/> runs before it starts
        /// listening, so handlers attached there see every event (even with a fixed port).</summary>
        public Server(ServerOptions options, Action<Server> subscribe) : this(options, false, subscribe) { }

        /// <summary>Starts a server in queue mode: events wait for <see cref="Poll"/>.</summary>
        public static Server CreatePolled(ServerOptions options = null)
        {
            return new Server(options, true, null);
        }

        Server(ServerOptions options, bool polled, Action<Server> subscribe)
        {
            Library.EnsureCompatible();
            _polled = polled;
            if (subscribe != null)
            {
                subscribe(this);
            }
            ServerHandle handle;
            Result r;
            using (ServerConfigHandle cfg = (options ?? new ServerOptions()).Build())
            {
                if (polled)
                {
                    r = NativeMethods.wsb_server_new(cfg, null, IntPtr.Zero, null, out handle);
                }
                else
                {
                    _pending = new PendingErrors();
                    IntPtr userdata = EventSink<Server>.Register(this, _pending, s_dispatch);
                    // On failure the library has already released the registration.
                    r = NativeMethods.wsb_server_new(cfg, s_onEvent, userdata, Registrations<Server>.Free, out handle);
                }
            }
            Library.Check(r, "wsb_server_new");
            _handle = ExitRelease.Track(handle);
        }

        /// <summary>Registrations the library still holds (for tests of userdata_free).</summary>
        internal static int LiveRegistrations { get { return Registrations<Server>.Live; } }

        void Dispatch(IntPtr evPtr)
        {
            var native = (NativeEvent)Marshal.PtrToStructure(evPtr, typeof(NativeEvent));
            Raise(ServerEvent.FromNative(ref native));
        }

        void Raise(ServerEvent ev)
        {
            EventHandler<ServerEvent> all = EventReceived;
            if (all != null)
            {
                all(this, ev);
            }
            EventHandler<ServerEvent> h;
            switch (ev.Type)
            {
                case EventType.Open: h = Opened; break;
                case EventType.Message: h = MessageReceived; break;
                case EventType.Ping: h = PingReceived; break;
                case EventType.Pong: h = PongReceived; break;
                case EventType.Drain: h = Drained; break;
                case EventType.Close: h = Closed; break;
                default: h = null; break;
            }
            if (h != null)
            {
                h(this, ev);
            }
        }

        ServerHandle Live()
        {
            OwnerCalls.EnsureLive(_pending, ref _disposed, "Wsbroker.Server");
            return _handle;
        }

        /// <summary>True in queue mode.</summary>
        public bool IsPolled { get { return _polled; } }

        /// <summary>The port the server listens on (the real one when port 0 was asked).</summary>
        public ushort Port { get { return NativeMethods.wsb_server_port(Live()); } }

        /// <summary>Queues a text message. Returns Ok, or Backpressure when queued above the soft
        /// limit (a Drained event follows); throws <see cref="WsbException"/> otherwise.</summary>
        public Result Send(ulong conn, string text)
        {
            byte[] b = Encoding.UTF8.GetBytes(text ?? "");
            return Send(conn, b, 0, b.Length, true);
        }

        /// <summary>Queues a binary message (see <see cref="Send(ulong, string)"/>).</summary>
        public Result Send(ulong conn, byte[] data)
        {
            return Send(conn, data, 0, data == null ? 0 : data.Length, false);
        }

        /// <summary>Queues <paramref name="count"/> bytes of <paramref name="data"/> from
        /// <paramref name="offset"/>, as text (must be UTF-8) or binary.</summary>
        public unsafe Result Send(ulong conn, byte[] data, int offset, int count, bool isText)
        {
            OwnerCalls.CheckRange(data, offset, count);
            ServerHandle h = Live();
            fixed (byte* p = data)
            {
                IntPtr ptr = count == 0 ? IntPtr.Zero : (IntPtr)(p + offset);
                return OwnerCalls.Queued(NativeMethods.wsb_server_write(h, conn, ptr, (UIntPtr)(uint)count, isText), "wsb_server_write");
            }
        }

        /// <summary>Sends a ping (payload at most 125 bytes). Same results as Send.</summary>
        public unsafe Result Ping(ulong conn, byte[] payload = null)
        {
            int count = payload == null ? 0 : payload.Length;
            ServerHandle h = Live();
            fixed (byte* p = payload)
            {
                IntPtr ptr = count == 0 ? IntPtr.Zero : (IntPtr)p;
                return OwnerCalls.Queued(NativeMethods.wsb_server_ping(h, conn, ptr, (UIntPtr)(uint)count), "wsb_server_ping");
            }
        }

        /// <summary>Starts the closing handshake (reason at most 123 UTF-8 bytes); a Closed event follows.</summary>
        public void CloseConnection(ulong conn, int code = 1000, string reason = null)
        {
            Library.Check(NativeMethods.wsb_server_close(Live(), conn, code, Utf8.ToNative(reason)), "wsb_server_close");
        }

        /// <summary>True from Open until CloseConnection or the end of the connection.</summary>
        public bool IsValid(ulong conn)
        {
            return NativeMethods.wsb_server_is_valid(Live(), conn);
        }

        /// <summary>The detail of the last failed call on this server, from whichever thread made it
        /// ("" if none); <see cref="Library.LastError"/> is the calling thread's instead.</summary>
        public string LastError()
        {
            ServerHandle h = Live();
            return Library.ReadSized((byte[] b, UIntPtr n, out UIntPtr need) => NativeMethods.wsb_server_last_error(h, b, n, out need));
        }

        public Stats GetStats()
        {
            Stats s;
            Library.Check(NativeMethods.wsb_server_stats(Live(), out s), "wsb_server_stats");
            return s;
        }

        /// <summary>Queue mode: the next event, waiting up to <paramref name="timeoutMs"/> (negative:
        /// forever); null when the time ran out. Throws <see cref="WsbException"/> with
        /// <c>Result.Interrupted</c> after <see cref="Interrupt"/>. Poll from one thread at a time.</summary>
        public ServerEvent Poll(int timeoutMs)
        {
            NativeEvent ev;
            if (!OwnerCalls.Polled(NativeMethods.wsb_server_poll(Live(), timeoutMs, out ev), "wsb_server_poll"))
            {
                return null;
            }
            return ServerEvent.FromNative(ref ev);
        }

        /// <summary>Queue mode: events until none comes for <paramref name="idleTimeoutMs"/>
        /// (negative: until <see cref="Interrupt"/> or Dispose from another thread).</summary>
        public IEnumerable<ServerEvent> Events(int idleTimeoutMs = -1)
        {
            Func<bool> disposed = () => Volatile.Read(ref _disposed) != 0;
            return OwnerCalls.Events(disposed, disposed, () => Poll(idleTimeoutMs));
        }

        /// <summary>Makes the current (or next) Poll throw Interrupted; Events ends.</summary>
        public void Interrupt()
        {
            Library.Check(NativeMethods.wsb_server_interrupt(Live()), "wsb_server_interrupt");
        }

        /// <summary>Stops the server (every connection gets close 1001), waits for its threads and
        /// frees it; then rethrows an exception a handler left behind. Idempotent. Not allowed from
        /// the server's own handlers.</summary>
        public void Dispose()
        {
            if (PendingErrors.InCallback)
            {
                throw new WsbException(Result.Reentrant, "Dispose called from a server event handler", "wsb_server_free");
            }
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                // A thread blocked in Poll holds a reference on the handle: wake it so the free
                // (which the SafeHandle defers until that reference is released) happens now.
                NativeMethods.wsb_server_interrupt(_handle);
                _handle.Dispose();
            }
            if (_pending != null)
            {
                _pending.ThrowIfAny();
            }
        }
    }
}

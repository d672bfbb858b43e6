// Tests of the P/Invoke surface itself, part of the same mono test program as ServerTests.cs:
// every bool crosses as one byte, every entry point resolves, the struct layouts agree with the
// C compiler's.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using Wsbroker;

static partial class ServerTests
{
    static List<KeyValuePair<string, Action>> NativeTestList()
    {
        return new List<KeyValuePair<string, Action>>
        {
            T("native: every bool crosses the boundary as one byte (I1)", BoolsAreOneByte),
            T("native: every DllImport entry point resolves; one per header function", EntryPointsResolve),
            T("native: every header function is called by the binding, not only declared", EveryFunctionWrapped),
            T("native: struct sizes and offsets match the C compiler", StructLayoutsMatchC),
        };
    }

    static readonly Assembly s_binding = typeof(Server).Assembly;
    static readonly Type s_native = s_binding.GetType("Wsbroker.NativeMethods", true);

    static string HeaderPath()
    {
        string dir = Environment.GetEnvironmentVariable("WSB_INCLUDE");
        if (!string.IsNullOrEmpty(dir))
            return Path.Combine(dir, "wsbroker.h");
        // Run by hand from build/csharp: look upwards for the repository's include/.
        for (var d = new DirectoryInfo(Environment.CurrentDirectory); d != null; d = d.Parent)
        {
            string p = Path.Combine(d.FullName, "include", "wsbroker.h");
            if (File.Exists(p)) return p;
        }
        throw new Exception("include/wsbroker.h not found (set WSB_INCLUDE)");
    }

    static bool IsI1(ICustomAttributeProvider p)
    {
        object[] a = p.GetCustomAttributes(typeof(MarshalAsAttribute), false);
        return a.Length == 1 && ((MarshalAsAttribute)a[0]).Value == UnmanagedType.I1;
    }

    /// <summary>C's bool is one byte; the default marshalling of a C# bool is a 4-byte BOOL, which
    /// reads three bytes of garbage from C and leaves them undefined when returned to C.</summary>
    static void BoolsAreOneByte()
    {
        var where = new List<string>();
        var wrong = new List<string>();
        Action<string, Type, ICustomAttributeProvider> one = (name, type, attrs) =>
        {
            Type t = type.IsByRef ? type.GetElementType() : type;
            if (t != typeof(bool)) return;
            where.Add(name);
            if (!IsI1(attrs)) wrong.Add(name);
        };
        var signatures = new List<MethodInfo>();
        signatures.AddRange(s_native.GetMethods(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)
            .Where(m => m.GetCustomAttributes(typeof(DllImportAttribute), false).Length > 0));
        signatures.AddRange(s_binding.GetTypes()
            .Where(t => t.IsSubclassOf(typeof(MulticastDelegate)) && t.GetCustomAttributes(typeof(UnmanagedFunctionPointerAttribute), false).Length > 0)
            .Select(t => t.GetMethod("Invoke")));
        foreach (MethodInfo m in signatures)
        {
            string owner = m.Name == "Invoke" ? m.DeclaringType.Name : m.Name;
            one(owner + " return", m.ReturnType, m.ReturnParameter);
            foreach (ParameterInfo p in m.GetParameters())
                one(owner + "(" + p.Name + ")", p.ParameterType, p);
        }
        foreach (Type s in NativeStructs().Keys)
            foreach (FieldInfo f in s.GetFields(BindingFlags.Instance | BindingFlags.Public))
                one(s.Name + "." + f.Name, f.FieldType, f);
        Check(where.Contains("AuthCb return"), "the auth callback's bool return is among those checked");
        Check(where.Count >= 5, "bools found: " + string.Join(", ", where));
        Equal("", string.Join(", ", wrong), "bools without [MarshalAs(UnmanagedType.I1)]");
    }

    static void EntryPointsResolve()
    {
        MethodInfo[] imports = s_native.GetMethods(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)
            .Where(m => m.GetCustomAttributes(typeof(DllImportAttribute), false).Length > 0).ToArray();
        var missing = new List<string>();
        foreach (MethodInfo m in imports)
        {
            try { Marshal.Prelink(m); }
            catch (EntryPointNotFoundException) { missing.Add(m.Name); }
        }
        Equal("", string.Join(", ", missing), "entry points the loaded library lacks");
        SortedSet<string> declared = HeaderFunctions();
        var imported = new SortedSet<string>(imports.Select(m => m.Name));
        Equal(string.Join(" ", declared), string.Join(" ", imported), "DllImports vs header functions");
    }

    /// <summary>Each header function, parsed independently of the generator: each `wsb_name(`
    /// starting a declaration.</summary>
    static SortedSet<string> HeaderFunctions()
    {
        string header = Regex.Replace(File.ReadAllText(HeaderPath()), @"/\*.*?\*/", "", RegexOptions.Singleline);
        return new SortedSet<string>(Regex.Matches(header, @"^[A-Za-z_][\w\s\*]*?\b(wsb_\w+)\(", RegexOptions.Multiline)
            .Cast<Match>().Select(x => x.Groups[1].Value));
    }

    /// <summary>A C function added to the header (and so to the generated Native.g.cs) without a
    /// wrapper fails here: it lists the NativeMethods functions that no code outside NativeMethods
    /// calls or takes as a delegate, read from the compiled IL.</summary>
    static void EveryFunctionWrapped()
    {
        var used = CalledNativeMethods();
        Check(used.Contains("wsb_server_new") && used.Contains("wsb_client_config_add_header"), "calls and delegates found: " + used.Count);
        var missing = new SortedSet<string>(HeaderFunctions().Where(f => !used.Contains(f)));
        Equal("", string.Join(", ", missing), "header functions the C# binding never calls");
    }

    static readonly Dictionary<short, OpCode> s_opcodes = typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)).ToDictionary(o => o.Value);

    static int OperandSize(OpCode op, byte[] il, int at)
    {
        switch (op.OperandType)
        {
            case OperandType.InlineNone: return 0;
            case OperandType.ShortInlineBrTarget:
            case OperandType.ShortInlineI:
            case OperandType.ShortInlineVar: return 1;
            case OperandType.InlineVar: return 2;
            case OperandType.InlineI8:
            case OperandType.InlineR: return 8;
            case OperandType.InlineSwitch: return 4 + 4 * BitConverter.ToInt32(il, at);
            default: return 4;
        }
    }

    /// <summary>The names of the NativeMethods functions that methods of other types of the binding
    /// call (call) or make delegates of (ldftn).</summary>
    static SortedSet<string> CalledNativeMethods()
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var used = new SortedSet<string>();
        foreach (Type t in s_binding.GetTypes().Where(t => t != s_native))
        {
            Type[] typeArgs = t.IsGenericType ? t.GetGenericArguments() : null;
            foreach (MethodBase m in t.GetMethods(all).Cast<MethodBase>().Concat(t.GetConstructors(all)))
            {
                MethodBody body = m.GetMethodBody();
                if (body == null) continue;
                Type[] methodArgs = m.IsGenericMethod ? m.GetGenericArguments() : null;
                byte[] il = body.GetILAsByteArray();
                for (int i = 0; i < il.Length;)
                {
                    short code = il[i] == 0xFE ? unchecked((short)(0xFE00 | il[i + 1])) : il[i];
                    OpCode op = s_opcodes[code];
                    i += op.Size;
                    if (op.OperandType == OperandType.InlineMethod)
                    {
                        MethodBase target = m.Module.ResolveMethod(BitConverter.ToInt32(il, i), typeArgs, methodArgs);
                        if (target.DeclaringType == s_native) used.Add(target.Name);
                    }
                    i += OperandSize(op, il, i);
                }
            }
        }
        return used;
    }

    /// <summary>The blittable structs of Native.g.cs and their C names.</summary>
    static Dictionary<Type, string> NativeStructs()
    {
        var map = new Dictionary<Type, string>
        {
            { typeof(Stats), "wsb_stats" },
            { typeof(BrokerCounts), "wsb_broker_counts" },
            { s_binding.GetType("Wsbroker.NativeEvent", true), "wsb_event" },
            { s_binding.GetType("Wsbroker.NativeClientEvent", true), "wsb_client_event" },
            { s_binding.GetType("Wsbroker.NativeBrokerEvent", true), "wsb_broker_event" },
            { s_binding.GetType("Wsbroker.NativeAppwsClientEvent", true), "wsb_appws_client_event" },
            { s_binding.GetType("Wsbroker.NativeAppwsServiceEvent", true), "wsb_appws_service_event" },
        };
        return map;
    }

    static string Snake(string pascal)
    {
        return Regex.Replace(pascal, "(?<!^)([A-Z])", "_$1").ToLowerInvariant();
    }

    static void StructLayoutsMatchC()
    {
        string header = HeaderPath();
        Dictionary<Type, string> structs = NativeStructs();
        // Every struct with a body in the header must be in the table above.
        var inHeader = new SortedSet<string>(Regex.Matches(File.ReadAllText(header), @"^typedef struct (\w+) \{", RegexOptions.Multiline)
            .Cast<Match>().Select(m => m.Groups[1].Value));
        Equal(string.Join(" ", inHeader), string.Join(" ", new SortedSet<string>(structs.Values)), "structs covered");

        var c = new StringBuilder("#include <stddef.h>\n#include <stdio.h>\n#include \"wsbroker.h\"\nint main(void) {\n");
        var expected = new List<string>();
        foreach (var kv in structs.OrderBy(kv => kv.Value))
        {
            c.AppendFormat("printf(\"{0} %zu\\n\", sizeof(struct {0}));\n", kv.Value);
            expected.Add(kv.Value + " " + Marshal.SizeOf(kv.Key));
            foreach (FieldInfo f in kv.Key.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
            {
                string cf = Snake(f.Name);
                c.AppendFormat("printf(\"{0}.{1} %zu\\n\", offsetof(struct {0}, {1}));\n", kv.Value, cf);
                expected.Add(kv.Value + "." + cf + " " + Marshal.OffsetOf(kv.Key, f.Name).ToInt64());
            }
        }
        c.Append("return 0;\n}\n");

        string dir = Path.Combine(Path.GetTempPath(), "wsb-layout-" + Process.GetCurrentProcess().Id);
        Directory.CreateDirectory(dir);
        try
        {
            string src = Path.Combine(dir, "layout.c"), exe = Path.Combine(dir, "layout");
            File.WriteAllText(src, c.ToString());
            string cc = Environment.GetEnvironmentVariable("CC");
            Run(string.IsNullOrEmpty(cc) ? "cc" : cc, "-std=c11 -I\"" + Path.GetDirectoryName(header) + "\" \"" + src + "\" -o \"" + exe + "\"");
            string[] got = Run(exe, "").Split(new[] { '\n' }, StringSplitOptions.RemoveEmptyEntries);
            Equal(string.Join("\n", expected), string.Join("\n", got), "sizeof/offsetof (C) vs Marshal.SizeOf/OffsetOf");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    static string Run(string file, string args)
    {
        var psi = new ProcessStartInfo(file, args) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        using (Process p = Process.Start(psi))
        {
            string stderr = null;
            var errReader = new Thread(() => stderr = p.StandardError.ReadToEnd());
            errReader.Start();
            string stdout = p.StandardOutput.ReadToEnd();
            Check(p.WaitForExit(TimeoutMs), file + " finished");
            errReader.Join();
            if (p.ExitCode != 0) throw new Exception(file + " " + args + ": status " + p.ExitCode + "\n" + stderr);
            return stdout;
        }
    }
}

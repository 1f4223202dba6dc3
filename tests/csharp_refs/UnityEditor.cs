// Reference declarations: the UnityEditor API that the Unity side's editor code uses,
// from the Unity 6 (6000.0) Scripting Reference. Signatures only; bodies are stubs. Not Unity's
// code. Compiled into UnityEditor.dll by tests/unity_csharp.py; runtime scripts cannot
// reference it (as in a player build).

using System;
using UnityEngine;
using UnityEngine.SceneManagement;

namespace UnityEditor
{
    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/MenuItem.html
    [AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
    public sealed class MenuItem : Attribute
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/MenuItem-ctor.html
        public MenuItem(string itemName) { }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/InitializeOnLoadAttribute.html
    [AttributeUsage(AttributeTargets.Class)]
    public class InitializeOnLoadAttribute : Attribute
    {
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/InitializeOnLoadMethodAttribute.html
    [AttributeUsage(AttributeTargets.Method)]
    public class InitializeOnLoadMethodAttribute : Attribute
    {
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/AssetPostprocessor.html
    // (OnPostprocessAllAssets is a message Unity calls by name on subclasses: nothing to declare.)
    public class AssetPostprocessor
    {
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PlayerSettings.html
    public sealed class PlayerSettings : UnityEngine.Object
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PlayerSettings-colorSpace.html
        public static ColorSpace colorSpace { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PlayerSettings-runInBackground.html
        public static bool runInBackground { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PlayerSettings-fullScreenMode.html
        public static FullScreenMode fullScreenMode { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PlayerSettings-resizableWindow.html
        public static bool resizableWindow { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PlayerSettings-defaultScreenWidth.html
        public static int defaultScreenWidth { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PlayerSettings-defaultScreenHeight.html
        public static int defaultScreenHeight { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PlayerSettings-productName.html
        public static string productName { get { throw null; } set { } }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/BuildPlayerOptions.html
    public struct BuildPlayerOptions
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/BuildPlayerOptions-scenes.html
        public string[] scenes { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/BuildPlayerOptions-locationPathName.html
        public string locationPathName { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/BuildPlayerOptions-target.html
        public BuildTarget target { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/BuildPlayerOptions-options.html
        public BuildOptions options { get { throw null; } set { } }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/BuildTarget.html
    public enum BuildTarget
    {
        StandaloneLinux64 = 24,
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/BuildOptions.html
    [Flags]
    public enum BuildOptions
    {
        None = 0,
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/BuildPipeline.html
    public class BuildPipeline
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/BuildPipeline.BuildPlayer.html
        public static Build.Reporting.BuildReport BuildPlayer(BuildPlayerOptions buildPlayerOptions) { throw null; }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/EditorApplication.html
    public sealed class EditorApplication
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/EditorApplication.Exit.html
        public static void Exit(int returnValue) { }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/EditorApplication.CallbackFunction.html
        public delegate void CallbackFunction();

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/EditorApplication-delayCall.html
        public static CallbackFunction delayCall;
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/EditorPrefs.html
    public class EditorPrefs
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/EditorPrefs.GetString.html
        public static string GetString(string key, string defaultValue) { throw null; }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/EditorUtility.html
    public class EditorUtility
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/EditorUtility.DisplayDialog.html
        public static bool DisplayDialog(string title, string message, string ok) { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/EditorUtility.SetDirty.html
        public static void SetDirty(UnityEngine.Object target) { }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/AssetDatabase.html
    public sealed class AssetDatabase
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/AssetDatabase.Refresh.html
        public static void Refresh() { }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/AssetDatabase.LoadAssetAtPath.html
        public static T LoadAssetAtPath<T>(string assetPath) where T : UnityEngine.Object { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/AssetDatabase.FindAssets.html
        public static string[] FindAssets(string filter) { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/AssetDatabase.FindAssets.html
        public static string[] FindAssets(string filter, string[] searchInFolders) { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/AssetDatabase.GUIDToAssetPath.html
        public static string GUIDToAssetPath(string guid) { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/AssetDatabase.SaveAssets.html
        public static void SaveAssets() { }
    }
}

namespace UnityEditor.PackageManager.UI
{
    using System.Collections.Generic;

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PackageManager.UI.Sample.html
    public struct Sample
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PackageManager.UI.Sample.ImportOptions.html
        [Flags]
        public enum ImportOptions
        {
            None = 0,
            OverridePreviousImports = 1,
            HideImportWindow = 2,
        }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PackageManager.UI.Sample-displayName.html
        public string displayName { get { throw null; } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PackageManager.UI.Sample-isImported.html
        public bool isImported { get { throw null; } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PackageManager.UI.Sample.Import.html
        public bool Import(ImportOptions options = ImportOptions.None) { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PackageManager.UI.Sample.FindByPackage.html
        public static IEnumerable<Sample> FindByPackage(string packageName, string packageVersion) { throw null; }
    }
}

namespace UnityEditor.Build.Reporting
{
    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Build.Reporting.BuildReport.html
    public sealed class BuildReport : UnityEngine.Object
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Build.Reporting.BuildReport-summary.html
        public BuildSummary summary { get { throw null; } }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Build.Reporting.BuildSummary.html
    public struct BuildSummary
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Build.Reporting.BuildSummary-result.html
        public BuildResult result { get { throw null; } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Build.Reporting.BuildSummary-totalSize.html
        public ulong totalSize { get { throw null; } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Build.Reporting.BuildSummary-totalErrors.html
        public int totalErrors { get { throw null; } }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Build.Reporting.BuildResult.html
    public enum BuildResult
    {
        Succeeded = 1,
    }
}

namespace UnityEditor.SceneManagement
{
    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/SceneManagement.EditorSceneManager.html
    public sealed class EditorSceneManager
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/SceneManagement.EditorSceneManager.SaveCurrentModifiedScenesIfUserWantsTo.html
        public static bool SaveCurrentModifiedScenesIfUserWantsTo() { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/SceneManagement.EditorSceneManager.OpenScene.html
        public static Scene OpenScene(string scenePath, OpenSceneMode mode = OpenSceneMode.Single) { throw null; }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/SceneManagement.OpenSceneMode.html
    public enum OpenSceneMode
    {
        Single = 0,
    }
}

// The development project: the island lives once in the repository, as the sample of the
// embedded package (Packages/com.agentalign.personalities/Samples~/JumppadIsland). Whenever the
// editor loads, this imports the sample into Assets/Samples/ if it is missing (the Package
// Manager's sample API, as a user's "Import" button does) and applies the settings a headless
// training player needs. Build.cs does the same before every build.

using System.Linq;
using UnityEditor;
using UnityEditor.PackageManager.UI;
using UnityEngine;

namespace AgentAlign.Editor
{
    [InitializeOnLoad]
    public static class DevProject
    {
        public const string PackageName = "com.agentalign.personalities";
        // The sample scene's GUID (its .meta); the scene is found by it wherever it was imported.
        public const string SceneGuid = "934636d27051d93375a9810efdd713e5";

        static DevProject()
        {
            EditorApplication.delayCall += () =>
            {
                EnsureSampleImported(false);
                ApplyForHeadlessPlayer();
            };
        }

        /// <summary>Import the island sample unless it is there; `refresh` imports it again over
        /// the old copy (after `agentalign unity-scene` changed the package's files).</summary>
        public static bool EnsureSampleImported(bool refresh)
        {
            Sample[] samples = Sample.FindByPackage(PackageName, null).ToArray();
            if (samples.Length == 0)
            {
                Debug.LogError("AgentAlign: package " + PackageName + " has no samples; is it in Packages/?");
                return false;
            }
            Sample island = samples[0];
            if (island.isImported && !refresh)
                return true;
            bool imported = island.Import(Sample.ImportOptions.OverridePreviousImports |
                                          Sample.ImportOptions.HideImportWindow);
            if (!imported)
                Debug.LogError("AgentAlign: importing the sample " + island.displayName + " failed.");
            return imported;
        }

        /// <summary>For the command line, before a headless build (build/build_unity.sh): the
        /// sample's scripts must be compiled by one editor run before the next one builds.</summary>
        public static void ImportSample()
        {
            bool imported = EnsureSampleImported(false);
            if (Application.isBatchMode)
                EditorApplication.Exit(imported ? 0 : 1);
        }

        /// <summary>Where the imported sample's scene is, or null.</summary>
        public static string ScenePath()
        {
            string path = AssetDatabase.GUIDToAssetPath(SceneGuid);
            return string.IsNullOrEmpty(path) ? null : path;
        }

        /// <summary>Gamma (the package's setting), plus what a headless training player needs:
        /// run in background, a small resizable window, the island's product name.</summary>
        public static void ApplyForHeadlessPlayer()
        {
            PersonalityPlayerSettings.UseGammaColourSpace();
            if (!PlayerSettings.runInBackground)
                PlayerSettings.runInBackground = true;
            if (PlayerSettings.fullScreenMode != FullScreenMode.Windowed)
                PlayerSettings.fullScreenMode = FullScreenMode.Windowed;
            if (!PlayerSettings.resizableWindow)
                PlayerSettings.resizableWindow = true;
            if (PlayerSettings.defaultScreenWidth != 512)
                PlayerSettings.defaultScreenWidth = 512;
            if (PlayerSettings.defaultScreenHeight != 512)
                PlayerSettings.defaultScreenHeight = 512;
            if (PlayerSettings.productName != "JumppadIsland")
                PlayerSettings.productName = "JumppadIsland";
        }
    }
}

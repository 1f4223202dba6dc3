// Headless builds: a Linux player of the island for training with camera observations.
//   Unity -batchmode -quit -projectPath unity_project \
//         -executeMethod AgentAlign.Editor.Build.Linux -logFile -
// (build/build_unity.sh runs exactly that). The player goes to build/out/linux/ at the
// repository root unless -buildOutput <path> follows on the command line. The scene is the
// package sample's, imported first if it is missing and found by its GUID.

using System;
using UnityEditor;
using UnityEditor.Build.Reporting;
using UnityEngine;

namespace AgentAlign.Editor
{
    public static class Build
    {
        // Relative paths are relative to the project folder (unity_project/).
        public const string DefaultOutput = "../build/out/linux/JumppadIsland.x86_64";

        [MenuItem("AgentAlign/Build Linux Player")]
        public static void Linux()
        {
            string output = ArgumentAfter("-buildOutput") ?? DefaultOutput;
            DevProject.ApplyForHeadlessPlayer();
            string scene = DevProject.EnsureSampleImported(false) ? DevProject.ScenePath() : null;
            if (scene == null)
            {
                Debug.LogError("AgentAlign: the island sample's scene (GUID " + DevProject.SceneGuid +
                               ") is not in the project; the build stopped.");
                if (Application.isBatchMode)
                    EditorApplication.Exit(1);
                return;
            }
            var options = new BuildPlayerOptions();
            options.scenes = new[] { scene };
            options.locationPathName = output;
            options.target = BuildTarget.StandaloneLinux64;
            options.options = BuildOptions.None;
            BuildReport report = BuildPipeline.BuildPlayer(options);
            BuildSummary summary = report.summary;
            if (summary.result == BuildResult.Succeeded)
            {
                Debug.Log("AgentAlign: built " + output + " (" + summary.totalSize + " bytes)");
                return;
            }
            Debug.LogError("AgentAlign: the Linux build " + summary.result + " with " +
                           summary.totalErrors + " errors; see the log above.");
            if (Application.isBatchMode)
                EditorApplication.Exit(1);
        }

        static string ArgumentAfter(string name)
        {
            string[] args = Environment.GetCommandLineArgs();
            for (int i = 0; i + 1 < args.Length; i++)
            {
                if (args[i] == name)
                    return args[i + 1];
            }
            return null;
        }
    }
}

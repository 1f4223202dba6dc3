// AgentAlign > Regenerate Scene From Layout: runs the same generator as the command line
// (`agentalign unity-scene`, which writes the package's sample), so the scene, its materials and textures come out byte for byte
// as the committed ones; one generator means the two islands cannot drift apart. The Python
// interpreter is the repository's .venv if there is one, else python3 (Edit > Preferences is
// not needed: set EditorPrefs key "AgentAlign.Python" to use another).

using System.Diagnostics;
using System.IO;
using UnityEditor;
using UnityEditor.SceneManagement;
using UnityEngine;
using Debug = UnityEngine.Debug;

namespace AgentAlign.Editor
{
    public static class SceneRegeneration
    {
        const string PythonPreference = "AgentAlign.Python";

        [MenuItem("AgentAlign/Regenerate Scene From Layout")]
        public static void Regenerate()
        {
            if (!EditorSceneManager.SaveCurrentModifiedScenesIfUserWantsTo())
                return;
            string project = Path.GetFullPath(Path.Combine(Application.dataPath, ".."));
            string python = EditorPrefs.GetString(PythonPreference, DefaultPython(project));
            var start = new ProcessStartInfo(python,
                "-m agentalign.cli unity-scene --project \"" + project + "\"");
            start.UseShellExecute = false;
            start.RedirectStandardOutput = true;
            start.RedirectStandardError = true;
            start.CreateNoWindow = true;
            string output, errors;
            int exitCode;
            try
            {
                using (Process process = Process.Start(start))
                {
                    output = process.StandardOutput.ReadToEnd();
                    errors = process.StandardError.ReadToEnd();
                    process.WaitForExit();
                    exitCode = process.ExitCode;
                }
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                EditorUtility.DisplayDialog("AgentAlign", "Could not run " + python + ": " + e.Message +
                    "\nInstall agentalign (README) or set EditorPrefs \"" + PythonPreference + "\".", "OK");
                return;
            }
            if (exitCode != 0)
            {
                Debug.LogError("AgentAlign: scene generation failed:\n" + errors);
                EditorUtility.DisplayDialog("AgentAlign", "Scene generation failed:\n" + errors, "OK");
                return;
            }
            Debug.Log("AgentAlign: " + output);
            AssetDatabase.Refresh();
            // The generator wrote the package's sample; the project plays its imported copy.
            DevProject.EnsureSampleImported(true);
            string scene = DevProject.ScenePath();
            if (scene != null)
                EditorSceneManager.OpenScene(scene);
        }

        static string DefaultPython(string project)
        {
            string repository = Path.GetFullPath(Path.Combine(project, ".."));
            string[] candidates =
            {
                Path.Combine(repository, ".venv", "bin", "python"),
                Path.Combine(repository, ".venv", "Scripts", "python.exe"),
            };
            foreach (string candidate in candidates)
            {
                if (File.Exists(candidate))
                    return candidate;
            }
            return "python3";
        }
    }
}

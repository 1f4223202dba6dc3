// Fills every Personality Library from the folder it sits in: each ONNX model there becomes a
// personality, with the card of the same name beside it (<name>.onnx + <name>.json, as
// `agentalign export` writes them). It runs when models or libraries are imported (a sample
// import, a file dropped in), once after the editor loads, and from the menu. References are
// made by loading the assets by path, so they never depend on the ONNX importer's file ids.

using System.Collections.Generic;
using System.IO;
using Unity.InferenceEngine;
using UnityEditor;
using UnityEngine;

namespace AgentAlign.Editor
{
    public sealed class PersonalityLibraryFiller : AssetPostprocessor
    {
        static void OnPostprocessAllAssets(string[] importedAssets, string[] deletedAssets,
                                           string[] movedAssets, string[] movedFromAssetPaths)
        {
            var folders = new HashSet<string>();
            foreach (string[] paths in new[] { importedAssets, deletedAssets, movedAssets, movedFromAssetPaths })
            {
                foreach (string path in paths)
                {
                    string extension = Path.GetExtension(path).ToLowerInvariant();
                    if (extension == ".onnx" || extension == ".json" || extension == ".asset")
                        folders.Add(Folder(path));
                }
            }
            if (folders.Count > 0)
                FillLibraries(folders, false);
        }

        [InitializeOnLoadMethod]
        static void FillOnLoad()
        {
            // After the first import of a project the asset database is ready one tick later.
            EditorApplication.delayCall += () => FillLibraries(null, true);
        }

        [MenuItem("AgentAlign/Fill Personality Libraries")]
        public static void FillAll()
        {
            int filled = FillLibraries(null, false);
            Debug.Log("AgentAlign: " + filled + " personality libraries changed (filled from their folders).");
        }

        /// <summary>Fill the libraries in `folders` (all when null); with `onlyIncomplete`, only
        /// those with an entry that has no model. Returns how many changed.</summary>
        public static int FillLibraries(ICollection<string> folders, bool onlyIncomplete)
        {
            int filled = 0;
            foreach (string guid in AssetDatabase.FindAssets("t:PersonalityLibrary"))
            {
                string path = AssetDatabase.GUIDToAssetPath(guid);
                if (folders != null && !folders.Contains(Folder(path)))
                    continue;
                var library = AssetDatabase.LoadAssetAtPath<PersonalityLibrary>(path);
                if (library == null || (onlyIncomplete && !library.NeedsFilling))
                    continue;
                if (Fill(library, Folder(path)))
                    filled++;
            }
            if (filled > 0)
                AssetDatabase.SaveAssets();
            return filled;
        }

        /// <summary>One entry per model in `folder`, by file name; a name a designer typed into an
        /// entry is kept. False, and the asset untouched, when nothing changes: saving the
        /// library re-imports it, which must not fill it again and again.</summary>
        public static bool Fill(PersonalityLibrary library, string folder)
        {
            var names = new Dictionary<string, string>();
            foreach (Personality old in library.personalities)
            {
                if (old.model != null && !string.IsNullOrEmpty(old.name))
                    names[old.model.name] = old.name;
            }
            var entries = new List<Personality>();
            var paths = new List<string>();
            foreach (string guid in AssetDatabase.FindAssets("t:ModelAsset", new[] { folder }))
            {
                string path = AssetDatabase.GUIDToAssetPath(guid);
                if (Folder(path) == folder)  // not the models of sub-folders: they have their own
                    paths.Add(path);
            }
            paths.Sort(System.StringComparer.Ordinal);
            foreach (string path in paths)
            {
                var personality = new Personality();
                personality.model = AssetDatabase.LoadAssetAtPath<ModelAsset>(path);
                if (personality.model == null)
                    continue;
                string name;
                personality.name = names.TryGetValue(personality.model.name, out name) ? name : "";
                personality.card = AssetDatabase.LoadAssetAtPath<TextAsset>(Path.ChangeExtension(path, ".json"));
                entries.Add(personality);
            }
            if (Same(library.personalities, entries))
                return false;
            library.personalities = entries;
            EditorUtility.SetDirty(library);
            return true;
        }

        static bool Same(List<Personality> a, List<Personality> b)
        {
            if (a.Count != b.Count)
                return false;
            for (int i = 0; i < a.Count; i++)
            {
                if (a[i].model != b[i].model || a[i].card != b[i].card || (a[i].name ?? "") != b[i].name)
                    return false;
            }
            return true;
        }

        static string Folder(string assetPath)
        {
            return Path.GetDirectoryName(assetPath).Replace('\\', '/');
        }
    }
}
